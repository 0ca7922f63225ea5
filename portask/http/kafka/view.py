"""What the Kafka HTTP API knows of the broker, in one place.

The only module of ``portask.http.kafka`` that imports from ``portask.broker``: the
endpoint modules ask this view for topics, records and groups and get plain values or
``KafkaApiError`` back. Record formats come from ``Topics.codec``, which the Kafka
protocol installs, so nothing here imports a protocol.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portask import metrics
from portask.broker.amqp.message_store import decode_record
from portask.broker.kafka import topic_configs
from portask.broker.kafka.groups import DEAD, EMPTY, Group, GroupError, OffsetEntry
from portask.broker.kafka.record_codec import Record, RecordCodec, RecordRefused
from portask.broker.kafka.topics import (
    InvalidPartitionCount,
    InvalidTopicName,
    Partition,
    Topic,
    TopicExists,
    UnknownTopic,
)
from portask.broker.log.record_log import StoredFormat
from portask.http.kafka.api import KafkaApiError, conflict, invalid, not_found
from portask.storage.log import Log, OffsetOutOfRange

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.http.management.view import BrokerView

__all__ = ["Group", "KafkaView", "Partition", "Position", "Record", "Topic"]

# How much stored data one step of a read takes from the log.
_READ_CHUNK = 1 << 20
# What a record costs a read's byte budget besides its key and value, so that a read of
# many empty records is bounded too.
RECORD_OVERHEAD = 64


@dataclass(frozen=True, slots=True)
class Position:
    """Where a read starts: an offset, the first record at or after a timestamp, or
    the last N records (exactly one is set)."""

    offset: int | None = None
    timestamp: int | None = None
    last: int | None = None


@dataclass(slots=True)
class StreamMessage:
    offset: int
    timestamp: int
    exchange: str
    routing_key: str
    properties: dict[str, Any]
    body: bytes


class KafkaView:
    def __init__(self, broker: Broker, management: BrokerView) -> None:
        self.broker = broker
        self.management = management

    # -- topics --------------------------------------------------------------------------

    def topics(self) -> list[Topic]:
        return sorted(self.broker.topics, key=lambda t: t.name)

    def topic(self, name: str) -> Topic:
        topic = self.broker.topics.get(name)
        if topic is None:
            raise not_found(f"topic {name!r} does not exist")
        return topic

    def partition(self, topic: Topic, index: int) -> Partition:
        if not 0 <= index < len(topic.partitions):
            raise invalid("partition", f"topic {topic.name!r} has partitions 0 to "
                          f"{len(topic.partitions) - 1}, not {index}")
        return topic.partitions[index]

    def existing_partition(self, topic: str, index: int) -> Partition | None:
        return self.broker.topics.partition(topic, index)

    @staticmethod
    def size_bytes(partition: Partition) -> int:
        return partition.log.size_bytes

    @staticmethod
    def segments(partition: Partition) -> int:
        return partition.log.segment_count

    def config_defaults(self) -> dict[str, str]:
        return topic_configs.defaults(self.broker.settings)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        try:
            return self.broker.topics.create(name, partitions, configs)
        except TopicExists as exc:
            raise conflict("topic_exists", str(exc)) from None
        except InvalidTopicName as exc:
            raise invalid("name", str(exc)) from None
        except InvalidPartitionCount as exc:
            raise invalid("partitions", str(exc)) from None
        except topic_configs.InvalidTopicConfig as exc:
            raise invalid("configs", str(exc)) from None

    def delete_topic(self, name: str) -> None:
        try:
            self.broker.topics.delete(name)
        except UnknownTopic as exc:
            raise not_found(str(exc)) from None

    def alter_configs(self, topic: Topic, changes: dict[str, str | None]) -> None:
        """As IncrementalAlterConfigs: set the given keys, and a null resets one to its
        default; the other overrides stay."""
        merged = dict(topic.configs)
        for name, value in changes.items():
            if name not in topic_configs.KEYS:
                raise invalid("configs", f"unknown topic config {name!r}; supported: "
                              f"{', '.join(topic_configs.KEYS)}")
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        try:
            validated = topic_configs.validate(merged)
        except topic_configs.InvalidTopicConfig as exc:
            raise invalid("configs", str(exc)) from None
        self.broker.topics.alter_configs(topic.name, validated)

    # -- records -------------------------------------------------------------------------

    def _codec(self) -> RecordCodec:
        codec = self.broker.topics.codec
        if codec is None:
            raise KafkaApiError(503, "kafka_not_served",
                                "the Kafka listener is off, so records cannot be read or "
                                "written here")
        return codec

    def read(self, partition: Partition, position: Position, limit: int,
             max_bytes: int) -> tuple[list[Record], list[dict[str, Any]], int]:
        """Records from ``position`` on: at most ``limit``, and past the first, at most
        ``max_bytes`` of keys and values (plus RECORD_OVERHEAD each). Batches that cannot
        be read are listed apart. Returns the records, those problems and the bytes used."""
        codec = self._codec()
        start, end = partition.log_start_offset, partition.high_watermark
        if position.last is not None:
            offset = max(start, end - position.last)
        elif position.timestamp is not None:
            offset = self.offset_for_timestamp(partition, position.timestamp)
        else:
            offset = min(max(position.offset or 0, start), end)
        out: list[Record] = []
        problems: list[dict[str, Any]] = []
        size = 0
        for entry in partition.entries(offset, end, _READ_CHUNK):
            if len(out) >= limit or (size >= max_bytes and out):
                break
            batch = codec.batch_records(entry.offset, entry.payload)
            if batch.error is not None:
                problems.append({"offset": entry.offset, "error": batch.error})
            for record in batch.records:
                if record.offset < offset or len(out) >= limit or (size >= max_bytes and out):
                    continue
                out.append(record)
                size += RECORD_OVERHEAD + len(record.key or b"") + len(record.value or b"")
        return out, problems, size

    def offset_for_timestamp(self, partition: Partition, timestamp: int) -> int:
        """The first offset whose record's timestamp is at or after ``timestamp`` (the
        high watermark if none is), as ListOffsets answers it."""
        codec = self._codec()
        log = partition.log
        found = log.offset_for_timestamp(timestamp)
        if found is None:
            return partition.high_watermark
        try:
            entries = partition.read(found, 1, min_one=True)
        except OffsetOutOfRange:
            return partition.log_start_offset
        for entry in entries[:1]:
            for record in codec.batch_records(entry.offset, entry.payload).records:
                if record.timestamp >= timestamp and record.offset >= found:
                    return record.offset
        return found

    def produce(self, topic: Topic, index: int | None, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes | None]],
                timestamp: int | None) -> tuple[int, int]:
        codec = self._codec()
        if index is None:
            index = codec.partition_for(key, len(topic.partitions))
        partition = self.partition(topic, index)
        when = int(time.time() * 1000) if timestamp is None else timestamp
        try:
            return index, codec.append(partition, key, value, headers, when)
        except RecordRefused as exc:
            raise invalid(exc.field, str(exc)) from None
        except OSError as exc:
            raise KafkaApiError(507, "storage_error",
                                f"the partition log refused the write: {exc}") from None

    # -- consumer groups -----------------------------------------------------------------

    def groups(self) -> list[Group]:
        return sorted(self.broker.groups, key=lambda g: g.group_id)

    def group(self, group_id: str) -> Group:
        group = self.broker.groups.get(group_id)
        if group is None or group.state is DEAD:
            raise not_found(f"group {group_id!r} does not exist")
        return group

    def committed(self, group_id: str) -> dict[tuple[str, int], int]:
        return {tp: entry.offset for tp, entry in self.broker.groups.committed(group_id).items()
                if entry is not None}

    def assignment(self, group: Group, assignment: bytes) -> list[tuple[str, list[int]]]:
        codec = self.broker.topics.codec
        return codec.assignment(group.protocol_type, assignment) if codec else []

    def subscription(self, group: Group, metadata: bytes) -> list[str]:
        codec = self.broker.topics.codec
        return codec.subscription(group.protocol_type, metadata) if codec else []

    def delete_group(self, group_id: str) -> None:
        error = self.broker.groups.delete([group_id])[group_id]
        if error is GroupError.GROUP_NOT_FOUND:
            raise not_found(f"group {group_id!r} does not exist")
        if error is GroupError.NON_EMPTY_GROUP:
            raise conflict("group_not_empty", f"group {group_id!r} has members; only an "
                           "empty group can be deleted")

    def reset_offsets(self, group_id: str, offsets: dict[tuple[str, int], int]) -> None:
        """Commit ``offsets`` for an empty group, as kafka-consumer-groups --reset-offsets."""
        group = self.broker.groups.get(group_id)
        if group is not None and group.state not in (EMPTY, DEAD):
            raise self._not_empty(group)
        now = int(time.time() * 1000)
        error = self.broker.groups.commit_offsets(
            group_id, "", None, -1,
            {tp: OffsetEntry(offset, -1, "", now) for tp, offset in offsets.items()})
        if error is not None:
            found = self.broker.groups.get(group_id)
            if found is not None and found.state is not EMPTY:
                raise self._not_empty(found)
            raise conflict("offsets_refused", f"the coordinator refused the commit: {error.name}")

    @staticmethod
    def _not_empty(group: Group) -> KafkaApiError:
        return conflict("group_not_empty",
                        f"group {group.group_id!r} is {group.state.value} with "
                        f"{len(group.members)} members; offsets can be reset only when it "
                        "is Empty (stop its consumers first), as Kafka requires")

    # -- AMQP stream queues --------------------------------------------------------------

    def stream_log(self, vhost: str, name: str) -> Log:
        amqp = self.broker.amqp
        found = amqp.get(vhost) if amqp is not None else None
        if found is None:
            raise not_found(f"vhost {vhost!r} does not exist")
        queue = found.queues.get(name)
        if queue is None:
            raise not_found(f"queue {name!r} does not exist in vhost {vhost!r}")
        if not queue.is_stream:
            raise invalid("queue", f"queue {name!r} is not a stream queue "
                          "(x-queue-type: stream); read other queues with POST "
                          "/api/queues/{vhost}/{name}/get")
        stream = queue.log  # type: ignore[union-attr]
        if stream.format is not StoredFormat.AMQP_MESSAGE:
            # A Kafka topic's partition shown as a stream (amqp.kafka_topics_vhost): its
            # batches are read by the topic endpoints, not as AMQP messages.
            raise invalid("queue", f"queue {name!r} is a Kafka topic's partition; read "
                          "it with GET /kafka/v1/topics/{topic}/records")
        return stream  # type: ignore[no-any-return]

    def read_stream(self, vhost: str, name: str, position: Position, limit: int,
                    max_bytes: int) -> list[StreamMessage]:
        log = self.stream_log(vhost, name)
        codec = self.broker.amqp.get(vhost).codec  # type: ignore[union-attr]
        start, end = log.start_offset, log.end_offset
        if position.last is not None:
            offset = max(start, end - position.last)
        elif position.timestamp is not None:
            found = log.offset_for_timestamp(position.timestamp)
            offset = end if found is None else found
        else:
            offset = min(max(position.offset or 0, start), end)
        out: list[StreamMessage] = []
        size = 0
        for entry in log.entries(offset, end, _READ_CHUNK):
            if len(out) >= limit or (size >= max_bytes and out):
                break
            message, _deadline = decode_record(entry.payload)
            properties = codec.to_plain(message.properties) if codec is not None else {}
            body = bytes(message.body)
            out.append(StreamMessage(entry.offset, entry.timestamp, message.exchange,
                                     message.routing_key, properties, body))
            size += len(body)
        return out

    # -- the cluster ---------------------------------------------------------------------

    def cluster_id(self) -> str:
        return self.broker.cluster_id

    def kafka_served(self) -> bool:
        return self.broker.topics.codec is not None

    @staticmethod
    def message_totals() -> dict[str, dict[str, int]]:
        """Messages in and out per protocol since start, from the metrics counters."""
        out: dict[str, dict[str, int]] = {}
        for direction, counter in (("in", metrics.MESSAGES_PRODUCED),
                                   ("out", metrics.MESSAGES_CONSUMED)):
            for family in counter.collect():
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        totals = out.setdefault(sample.labels["protocol"], {"in": 0, "out": 0})
                        totals[direction] += int(sample.value)
        return out

    @staticmethod
    def connection_counts() -> dict[str, int]:
        """Open client connections per protocol, from the metrics gauge."""
        counts: dict[str, int] = {}
        for family in metrics.CONNECTIONS_ACTIVE.collect():
            for sample in family.samples:
                counts[sample.labels["protocol"]] = int(sample.value)
        return counts
