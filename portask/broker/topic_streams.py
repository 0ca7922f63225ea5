"""Kafka topics as AMQP stream queues: the one place that sees both models.

Every partition of every topic appears in one vhost (``amqp.kafka_topics_vhost``) as a
stream queue: partition 0 under the topic's own name, partition N > 0 as
``<topic>.p<N>``. The queue is the partition (``queues.TopicStreamQueue``): its offsets
are the Kafka offsets, retention and DeleteRecords are the topic's, and nothing is
copied. A name an AMQP queue already holds stays that queue's (logged once).

Reads stop at the partition's last stable offset and leave out aborted transactions
and control batches (read_committed). A publish routed to one of these queues becomes a
Kafka record (``PartitionWriters``): the commit point writes a read's records as one
batch per partition with the topic's compression.type through the Kafka record codec.
Through the partition-0 queue of a multi-partition topic a record goes where a Kafka
producer's default partitioner would put its key, through ``<topic>.p<N>`` to N.

``TopicFeeds`` routes a topic's committed records into every exchange declared with
``x-kafka-topic: <topic>`` in that vhost, from a durable position per partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from portask.broker.amqp.exchanges import Exchange, HeadersSource
from portask.broker.amqp.message_store import Message, Publisher, QueueStorage
from portask.broker.amqp.queues import Queue, RecordMessages, TopicStreamQueue
from portask.broker.amqp.vhosts.vhost import VirtualHost
from portask.broker.definitions import TOPIC_FEEDS, TOPIC_FEEDS_RUNNING, Definitions
from portask.broker.kafka.record_codec import RecordCodec
from portask.broker.kafka.topics import Partition, Topic, Topics
from portask.broker.log import kafka_batch
from portask.broker.log.errors import UnreadableRecords
from portask.broker.log.record_log import Record, RecordLog
from portask.storage.log import OffsetOutOfRange, StorageError

# How far a feed decompresses one stored batch (larger ones are refused at produce).
_DECOMPRESS_LIMIT = 64 << 20

log = logging.getLogger("portask.amqp")

# After a restart, a partition's open and aborted transactions are known only once
# they are rebuilt from its markers (Kafka's record format: the composition root passes
# the function that reads them). Kafka's own requests do it on first use; so must we.
Rebuild = Callable[[Partition], None]
# (key, value, headers, timestamp ms) of the record an AMQP message becomes.
ToRecord = Callable[[Message], tuple[bytes | None, bytes | None,
                                     list[tuple[str, bytes | None]], int]]


def stream_name(topic: str, index: int) -> str:
    return topic if index == 0 else f"{topic}.p{index}"


class KafkaTopicPartition:
    """``queues.TopicPartition`` over a Kafka partition."""

    def __init__(self, topic: Topic, index: int, writers: PartitionWriters,
                 to_record: ToRecord, rebuild: Rebuild) -> None:
        self._topic = topic
        self.topic = topic.name
        self.index = index
        self._writers = writers
        self._to_record = to_record
        self._rebuild = rebuild

    @property
    def log(self) -> RecordLog:
        return self._topic.partitions[self.index]

    def read(self, offset: int, max_bytes: int, limit: int) -> tuple[list[Record], int]:
        return read_committed(self._topic.partitions[self.index], offset, max_bytes, limit,
                              self._rebuild)

    def append(self, message: Message) -> RecordLog | None:
        topic = self._topic
        writers = self._writers
        codec = writers.codec
        try:
            key, value, headers, timestamp = self._to_record(message)
            index = self.index
            if index == 0 and len(topic.partitions) > 1:
                index = codec.partition_for(key, len(topic.partitions))
            partition = topic.partitions[index]
            encoded = codec.encode_record(key, value, headers)
            codec.check(partition, key, len(encoded))
        except ValueError:
            # Refused by the topic (max.message.bytes, a null key on a compacted
            # topic) or undecodable properties: the publisher is nacked.
            return None
        writers.take(partition, encoded, timestamp)
        return partition


class PartitionWriters:
    """Records published over AMQP wait here until the commit point, which appends them
    as one batch per partition (split at max.message.bytes): a Kafka batch costs a
    header, a CRC and a log append, paid once per read of publishes instead of once per
    message. Confirms follow the commit point, so a confirm still means "appended"; a
    failed append nacks the publishes it carried, as a queue lane's does."""

    def __init__(self, codec: RecordCodec, storage: QueueStorage) -> None:
        self.codec = codec
        self.storage = storage
        self._pending: dict[int, _PendingRecords] = {}

    def take(self, partition: Partition, encoded: bytes, timestamp: int) -> None:
        pending = self._pending.get(id(partition))
        if pending is None or pending.partition is not partition:
            pending = self._pending[id(partition)] = _PendingRecords(self, partition)
        if not pending.records:
            self.storage.dirty(pending)
        pending.records.append((encoded, timestamp))
        publisher = self.storage.publisher
        if publisher is not pending.last_publisher and publisher is not None:
            # Once per run of publishes from one publisher, not once per message.
            pending.last_publisher = publisher
            pending.publishers.append((publisher, publisher.publish_seq))

    def forget(self, topic: str) -> None:
        """A topic went away: its partitions are no longer kept alive here."""
        self._pending = {key: pending for key, pending in self._pending.items()
                         if pending.partition.topic.name != topic}


class _PendingRecords:
    __slots__ = ("last_publisher", "name", "partition", "publishers", "records", "writers")

    def __init__(self, writers: PartitionWriters, partition: Partition) -> None:
        self.writers = writers
        self.partition = partition
        # A name no queue directory starts with (QueueStorage.remove_queue filters by it).
        self.name = f" kafka {partition.topic.name} {partition.index}"
        self.records: list[tuple[bytes, int]] = []
        self.publishers: list[tuple[Publisher, int]] = []
        self.last_publisher: Publisher | None = None

    def commit(self) -> None:
        records, self.records = self.records, []
        publishers, self.publishers = self.publishers, []
        self.last_publisher = None
        if not records:
            return
        try:
            self.writers.codec.append_records(self.partition, records)
        except (ValueError, OSError, StorageError) as exc:
            log.error("records published to a Kafka topic not written: nacked",
                      extra={"fields": {"topic": self.partition.topic.name,
                                        "partition": self.partition.index,
                                        "records": len(records), "error": str(exc)}})
            first: dict[Publisher, int] = {}
            for publisher, seq in publishers:
                first.setdefault(publisher, seq)
            for publisher, seq in first.items():
                publisher.write_failed(seq)


def read_committed(partition: Partition, offset: int, max_bytes: int, limit: int,
                   rebuild: Rebuild) -> tuple[list[Record], int]:
    """Committed data records from ``offset`` (up to the last stable offset, aborted
    transactions and markers left out) and the offset to read from next."""
    if not partition.transactions.rebuilt:
        rebuild(partition)
    stable = partition.transactions.last_stable_offset(partition.high_watermark)
    if offset >= stable:
        return [], offset
    aborted = partition.transactions.aborted
    out: list[Record] = []
    next_offset = offset
    for entry in partition.read(offset, max_bytes):
        if entry.offset >= stable:
            break
        next_offset = entry.offset + entry.count
        if aborted and _aborted(entry.payload, entry.offset, aborted):
            continue
        for record in partition.records(entry, limit):
            if record.offset >= offset:
                out.append(record)
    return out, next_offset


def _aborted(payload: memoryview, offset: int,
             aborted: list[tuple[int, int, int]]) -> bool:
    head = kafka_batch.HEADER.unpack_from(payload, 0)
    if not head[5] & kafka_batch.TRANSACTIONAL:
        return False
    producer_id = head[9]
    return any(pid == producer_id and first <= offset < marker
               for pid, first, marker in aborted)


class TopicStreams:
    """Keeps the vhost's topic streams in step with the topics (created, deleted,
    partitions added)."""

    def __init__(self, topics: Topics, vhost: VirtualHost, storage: QueueStorage,
                 messages: RecordMessages, to_record: ToRecord, rebuild: Rebuild) -> None:
        self.topics = topics
        self.rebuild = rebuild
        self.vhost = vhost
        self.storage = storage
        self.messages = messages
        self.to_record = to_record
        self._names: dict[str, list[str]] = {}  # topic -> the stream names it holds
        self._writers: PartitionWriters | None = None

    def attach(self) -> list[str]:
        """Add every topic's streams; called once both protocols' models are open.
        Returns the stream names added (for the bindings to restore)."""
        added: list[str] = []
        for topic in self.topics:
            added += self.changed(topic.name)
        self.topics.watchers.append(self.changed)
        return added

    def changed(self, name: str) -> list[str]:
        topic = self.topics.get(name)
        held = self._names.setdefault(name, [])
        vhost = self.vhost
        if topic is None:
            for stream in held:
                queue = vhost.queues.get(stream)
                if isinstance(queue, TopicStreamQueue):
                    vhost.remove_queue(queue)
            if self._writers is not None:
                self._writers.forget(name)
            del self._names[name]
            return []
        codec = self.topics.codec
        if codec is None:
            return []
        if self._writers is None:
            self._writers = PartitionWriters(codec, self.storage)
        added: list[str] = []
        for index in range(len(held), len(topic.partitions)):
            stream = stream_name(name, index)
            held.append(stream)
            if stream in vhost.queues:
                log.warning("topic partition not shown as a stream: the name is taken",
                            extra={"fields": {"vhost": vhost.name, "queue": stream,
                                              "topic": name, "partition": index}})
                continue
            partition = KafkaTopicPartition(topic, index, self._writers, self.to_record,
                                            self.rebuild)
            vhost.attach_queue(TopicStreamQueue(
                stream, vhost=vhost.name, partition=partition, messages=self.messages,
                storage=self.storage))
            added.append(stream)
        return added


# The exchange argument that makes an exchange a feed of a topic's records.
FEED_ARGUMENT = "x-kafka-topic"
# The header naming the partition of a record a feed routed (its offset is in
# x-stream-offset): the mapping module writes it, recovery reads it back.
PARTITION_HEADER = "x-kafka-partition"
# Records one feed routes per partition before the commit point and its position write:
# bounds the work one turn of the event loop does, and what recovery after a crash
# finds in the queues.
_FEED_BATCH_BYTES = 256 * 1024
_FEED_RESCAN_S = 1.0


class TopicFeeds:
    """Exchanges declared with ``x-kafka-topic: <topic>`` get that topic's committed
    records, in offset order per partition, as if published to them (key as routing key,
    the README's mapping, plus ``x-kafka-partition``), from a position kept in the
    definitions store.

    Exactly once into durable queues, across crashes: a batch is routed, the commit
    point writes it to the queue logs, then the position moves past it, all in one
    turn of the event loop, so nothing of a batch is delivered (let alone acked) before
    its position is on disk. A crash can land between the queue writes and the
    position write, leaving the batch in some of the queues. The next start sees that
    the feeds did not stop cleanly, reads the messages the durable queues hold, and
    routes the records from the position on to every queue except those already
    holding that record (exchange, partition, offset). Exchanges are found by a rescan
    every second, so a feed starts within a second of its declare.
    """

    def __init__(self, topics: Topics, vhost: VirtualHost, messages: RecordMessages,
                 commit: Callable[[], bool], definitions: Definitions,
                 rebuild: Rebuild) -> None:
        self.topics = topics
        self.rebuild = rebuild
        self.vhost = vhost
        self.messages = messages
        self.commit = commit
        self.definitions = definitions
        self._task: asyncio.Task[None] | None = None
        # After a crash: (exchange, partition, offset) of records at or past the feed's
        # position that durable queues already hold -> the ids of those queues.
        self._routed: dict[tuple[str, int, int], set[int]] = {}

    def start(self) -> None:
        name = self.vhost.name
        if self.definitions.get(TOPIC_FEEDS_RUNNING, name):
            self._routed = self._already_routed()
        self.definitions.put(TOPIC_FEEDS_RUNNING, name, True)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            # Every batch routed so far has its position written (route_once does both
            # in one call): the next start need not look into the queues.
            self.definitions.put(TOPIC_FEEDS_RUNNING, self.vhost.name, False)

    def _already_routed(self) -> dict[tuple[str, int, int], set[int]]:
        """What the last batch before a crash left in the durable queues."""
        codec = self.vhost.codec
        positions = {exchange.name: self.definitions.get(
                         TOPIC_FEEDS, (self.vhost.name, exchange.name)) or {}
                     for exchange, _topic in self._feeds()}
        found: dict[tuple[str, int, int], set[int]] = {}
        if codec is None or not positions:
            return found
        for queue in list(self.vhost.queues.values()):
            if not isinstance(queue, Queue):
                continue
            for message in queue.store.logged():
                position = positions.get(message.exchange)
                if position is None:
                    continue
                headers = codec.headers(message.properties) or {}
                index, offset = headers.get(PARTITION_HEADER), headers.get("x-stream-offset")
                if (isinstance(index, int) and isinstance(offset, int)
                        and offset >= int(position.get(str(index), 0))):
                    found.setdefault((message.exchange, index, offset), set()).add(id(queue))
        if found:
            log.warning("topic feeds resume after a crash: records already in queues are "
                        "not routed to them again",
                        extra={"fields": {"vhost": self.vhost.name, "records": len(found)}})
        return found

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.route_once():
                await asyncio.sleep(0)  # let the connections run between batches
                continue
            watched: list[tuple[Partition, asyncio.Future[None]]] = []
            for partition in self._fed_partitions():
                waiter: asyncio.Future[None] = loop.create_future()
                partition.watch(waiter)
                watched.append((partition, waiter))
            try:
                if watched:
                    await asyncio.wait([w for _p, w in watched], timeout=_FEED_RESCAN_S)
                else:
                    await asyncio.sleep(_FEED_RESCAN_S)
            finally:
                for partition, waiter in watched:
                    partition.unwatch(waiter)

    def _feeds(self) -> list[tuple[Exchange, Topic]]:
        out = []
        for exchange in list(self.vhost.exchanges.values()):
            name = exchange.arguments.get(FEED_ARGUMENT)
            topic = self.topics.get(name) if isinstance(name, str) else None
            if topic is not None:
                out.append((exchange, topic))
        return out

    def _fed_partitions(self) -> list[Partition]:
        return [p for _exchange, topic in self._feeds() for p in topic.partitions]

    def route_once(self) -> bool:
        """Route what each feed has not routed yet (a batch per partition); returns
        whether any feed moved on."""
        moved: list[tuple[tuple[str, str], dict[str, int]]] = []
        for exchange, topic in self._feeds():
            key = (self.vhost.name, exchange.name)
            positions = dict(self.definitions.get(TOPIC_FEEDS, key) or {})
            changed = False
            for partition in topic.partitions:
                index = str(partition.index)
                start = max(int(positions.get(index, 0)), partition.log_start_offset)
                records, next_offset = _committed(partition, start, self.rebuild)
                for record in records:
                    self._route(exchange, record, topic.name, partition.index)
                if next_offset != positions.get(index):
                    positions[index] = next_offset
                    changed = True
            if changed:
                moved.append((key, positions))
        if not moved:
            return False
        if not self.commit():
            # Not written (a full disk): the positions stay, the batch is routed again
            # once the feed next wakes, not at once in a loop.
            return False
        for key, positions in moved:
            self.definitions.put(TOPIC_FEEDS, key, positions)
        return True

    def _route(self, exchange: Exchange, record: Record, topic: str, index: int) -> None:
        message = self.messages.message(record, topic, index)
        message.exchange = exchange.name
        codec = self.vhost.codec
        headers: HeadersSource = (
            (lambda: codec.headers(message.properties)) if codec is not None
            else (lambda: None))
        held = self._routed.pop((exchange.name, index, record.offset), None) \
            if self._routed else None
        if held is None:
            self.vhost.publish(exchange, message, headers)
            return
        storage = self.vhost.storage
        if storage is not None:
            storage.publisher = None  # the feed confirms to nobody
        for queue in self.vhost.route(exchange, message.routing_key, headers):
            if id(queue) not in held:
                queue.publish(message)


def _committed(partition: Partition, offset: int, rebuild: Rebuild
               ) -> tuple[list[Record], int]:
    """One read's worth of a partition's committed records for a feed. A stored batch
    the record view cannot read is skipped, as a stream consumer skips it."""
    try:
        return read_committed(partition, offset, _FEED_BATCH_BYTES, _DECOMPRESS_LIMIT,
                              rebuild)
    except OffsetOutOfRange:
        return [], partition.log_start_offset
    except UnreadableRecords:
        entries = partition.read(offset, 1)
        return [], entries[0].offset + entries[0].count if entries else offset
