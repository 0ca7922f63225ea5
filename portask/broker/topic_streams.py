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
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from portask.broker.amqp.message_store import Message, QueueStorage
from portask.broker.amqp.queues import RecordMessages, TopicStreamQueue
from portask.broker.amqp.vhosts.vhost import VirtualHost
from portask.broker.kafka.record_codec import RecordCodec
from portask.broker.kafka.topics import Topic, Topics
from portask.broker.log import kafka_batch
from portask.broker.log.record_log import Record, RecordLog

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
        partition = self._topic.partitions[self.index]
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
