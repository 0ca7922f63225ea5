"""Kafka topics as AMQP stream queues: the one place that sees both models.

Every partition of every topic appears in one vhost (``amqp.kafka_topics_vhost``) as a
stream queue: partition 0 under the topic's own name, partition N > 0 as
``<topic>.p<N>``. The queue is the partition (``queues.TopicStreamQueue``): its offsets
are the Kafka offsets, retention and DeleteRecords are the topic's, and nothing is
copied. A name an AMQP queue already holds stays that queue's (logged once).

Reads stop at the partition's last stable offset and leave out aborted transactions
and control batches (read_committed). A publish routed to one of these queues is
written as a one-record batch with the topic's compression.type through the Kafka
record codec; through the partition-0 queue of a multi-partition topic it goes where a
Kafka producer's default partitioner would put its key, through ``<topic>.p<N>`` to N.

``TopicFeeds`` routes a topic's committed records into every exchange declared with
``x-kafka-topic: <topic>`` in that vhost, from a durable position per partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from portask.broker.amqp.exchanges import Exchange, HeadersSource
from portask.broker.amqp.message_store import Message, QueueStorage
from portask.broker.amqp.queues import RecordMessages, TopicStreamQueue
from portask.broker.amqp.vhosts.vhost import VirtualHost
from portask.broker.definitions import TOPIC_FEEDS, Definitions
from portask.broker.kafka.record_codec import RecordCodec
from portask.broker.kafka.topics import Partition, Topic, Topics
from portask.broker.log import kafka_batch
from portask.broker.log.errors import UnreadableRecords
from portask.broker.log.record_log import Record, RecordLog
from portask.storage.log import OffsetOutOfRange

# How far a feed decompresses one stored batch (larger ones are refused at produce).
_DECOMPRESS_LIMIT = 64 << 20

log = logging.getLogger("portask.amqp")

# (key, value, headers, timestamp ms) of the record an AMQP message becomes.
ToRecord = Callable[[Message], tuple[bytes | None, bytes | None,
                                     list[tuple[str, bytes | None]], int]]


def stream_name(topic: str, index: int) -> str:
    return topic if index == 0 else f"{topic}.p{index}"


class KafkaTopicPartition:
    """``queues.TopicPartition`` over a Kafka partition."""

    def __init__(self, topic: Topic, index: int, codec: RecordCodec,
                 to_record: ToRecord) -> None:
        self._topic = topic
        self.topic = topic.name
        self.index = index
        self._codec = codec
        self._to_record = to_record

    @property
    def log(self) -> RecordLog:
        return self._topic.partitions[self.index]

    def read(self, offset: int, max_bytes: int, limit: int) -> tuple[list[Record], int]:
        return read_committed(self._topic.partitions[self.index], offset, max_bytes, limit)

    def append(self, message: Message) -> RecordLog | None:
        topic = self._topic
        try:
            key, value, headers, timestamp = self._to_record(message)
            index = self.index
            if index == 0 and len(topic.partitions) > 1:
                index = self._codec.partition_for(key, len(topic.partitions))
            partition = topic.partitions[index]
            self._codec.append(partition, key, value, headers, timestamp)
        except (ValueError, OSError):
            # Refused by the topic (max.message.bytes, a null key on a compacted
            # topic, undecodable properties) or by the disk: the publisher is nacked.
            return None
        return partition


def read_committed(partition: Partition, offset: int, max_bytes: int, limit: int
                   ) -> tuple[list[Record], int]:
    """Committed data records from ``offset`` (up to the last stable offset, aborted
    transactions and markers left out) and the offset to read from next."""
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
                 messages: RecordMessages, to_record: ToRecord) -> None:
        self.topics = topics
        self.vhost = vhost
        self.storage = storage
        self.messages = messages
        self.to_record = to_record
        self._names: dict[str, list[str]] = {}  # topic -> the stream names it holds

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
            del self._names[name]
            return []
        codec = self.topics.codec
        if codec is None:
            return []
        added: list[str] = []
        for index in range(len(held), len(topic.partitions)):
            stream = stream_name(name, index)
            held.append(stream)
            if stream in vhost.queues:
                log.warning("topic partition not shown as a stream: the name is taken",
                            extra={"fields": {"vhost": vhost.name, "queue": stream,
                                              "topic": name, "partition": index}})
                continue
            partition = KafkaTopicPartition(topic, index, codec, self.to_record)
            vhost.attach_queue(TopicStreamQueue(
                stream, vhost=vhost.name, partition=partition, messages=self.messages,
                storage=self.storage))
            added.append(stream)
        return added


# The exchange argument that makes an exchange a feed of a topic's records.
FEED_ARGUMENT = "x-kafka-topic"
# Records one feed routes per partition before the commit point and its position write:
# bounds the work one turn of the event loop does, and what a crash may route twice.
_FEED_BATCH_BYTES = 256 * 1024
_FEED_RESCAN_S = 1.0


class TopicFeeds:
    """Exchanges declared with ``x-kafka-topic: <topic>`` get that topic's committed
    records, in offset order per partition, as if published to them (key as routing key,
    the README's mapping), from a position kept in the definitions store.

    The position is written after the commit point has written what the records were
    routed to: a crash in between routes that last batch again (at least once), never
    loses one. Exchanges are found by a rescan every second, so a feed starts within a
    second of its declare.
    """

    def __init__(self, topics: Topics, vhost: VirtualHost, messages: RecordMessages,
                 commit: Callable[[], bool], definitions: Definitions) -> None:
        self.topics = topics
        self.vhost = vhost
        self.messages = messages
        self.commit = commit
        self.definitions = definitions
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

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
                records, next_offset = _committed(partition, start)
                for record in records:
                    self._route(exchange, record, topic.name)
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

    def _route(self, exchange: Exchange, record: Record, topic: str) -> None:
        message = self.messages.message(record, topic)
        message.exchange = exchange.name
        codec = self.vhost.codec
        headers: HeadersSource = (
            (lambda: codec.headers(message.properties)) if codec is not None
            else (lambda: None))
        self.vhost.publish(exchange, message, headers)


def _committed(partition: Partition, offset: int) -> tuple[list[Record], int]:
    """One read's worth of a partition's committed records for a feed. A stored batch
    the record view cannot read is skipped, as a stream consumer skips it."""
    try:
        return read_committed(partition, offset, _FEED_BATCH_BYTES, _DECOMPRESS_LIMIT)
    except OffsetOutOfRange:
        return [], partition.log_start_offset
    except UnreadableRecords:
        entries = partition.read(offset, 1)
        return [], entries[0].offset + entries[0].count if entries else offset
