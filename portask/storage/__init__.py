"""Storage: an append-only, memory-mapped segment log of opaque payloads.

Knows nothing about Kafka or AMQP; see ``Log`` for the API.
"""

from portask.storage.log import FlushTicket, Log, LogConfig, TimestampAndOffset
from portask.storage.segment import CorruptLogError, LogRecord, OffsetOutOfRange, StorageError

__all__ = [
    "CorruptLogError",
    "FlushTicket",
    "Log",
    "LogConfig",
    "LogRecord",
    "OffsetOutOfRange",
    "StorageError",
    "TimestampAndOffset",
]
