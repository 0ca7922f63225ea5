"""What the broker core asks of Kafka's formats when someone other than a Kafka client
reads or writes a topic (the HTTP API and the web console).

The core stores record batches opaquely; decoding a batch into records, building one
from a key and a value, or reading a consumer group's assignment needs the wire
formats, which belong to ``protocols/kafka``. The composition root installs an
implementation on ``Topics.codec`` when the Kafka protocol is served, as it installs
the compactor; readers here see only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    timestamp: int
    timestamp_type: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchRecords:
    """The records of one stored batch; ``error`` says why they could not be read."""

    base_offset: int
    next_offset: int
    records: list[Record]
    error: str | None = None


class RecordRefused(ValueError):
    """A record the topic does not take; ``field`` names the part at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class Partition(Protocol):
    """What a codec's append needs of a partition (``topics.Partition``, which installs
    no codec itself: naming it here would make topics and this module a loop)."""

    topic: Any  # topics.Topic: its name and effective configs

    @property
    def high_watermark(self) -> int: ...

    def append(self, payload: bytes | bytearray | memoryview, count: int = 1,
               timestamp: int | None = None, prefix: bytes = b"") -> int: ...


class RecordCodec(Protocol):
    def batch_records(self, offset: int, payload: memoryview) -> BatchRecords:
        """The data records of a stored batch (control batches give none)."""

    def append(self, partition: Partition, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes | None]], timestamp_ms: int) -> int:
        """Append one record as the topic's configs require; returns its offset.

        RecordRefused for a record the topic refuses; OSError if the disk does.
        """

    def encode_record(self, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes | None]]) -> bytes:
        """A record's key, value and headers as ``append_records`` takes them (its place
        in a batch, deltas and length, is written by the batch)."""

    def check(self, partition: Partition, key: bytes | None, size: int) -> None:
        """RecordRefused if the topic would refuse a record (``size``: its encoded bytes)."""

    def append_records(self, partition: Partition, encoded: list[tuple[bytes, int]]) -> int:
        """Append ``encode_record`` bytes with their timestamps (ms) as few batches as the
        topic's max.message.bytes allows, each as its configs require (compression,
        timestamp type); returns the first offset. Every record passed ``check``.
        OSError if the disk refuses (batches before it stay written).
        """

    def partition_for(self, key: bytes | None, partitions: int) -> int:
        """The partition a Kafka client's default partitioner picks for ``key``."""

    def assignment(self, protocol_type: str | None, data: bytes) -> list[tuple[str, list[int]]]:
        """A member's assigned partitions, for the consumer protocol; [] otherwise."""

    def subscription(self, protocol_type: str | None, data: bytes) -> list[str]:
        """The topics a member subscribes to, for the consumer protocol; [] otherwise."""
