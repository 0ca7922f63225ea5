"""Topic-level configuration: which keys a topic accepts, their defaults and their meaning.

The names are Kafka's (``retention.ms``, ``cleanup.policy`` ...) because that is the
vocabulary topics are administered in; values are kept as strings, as Kafka does, and
validated here. Defaults come from the broker's settings, so DescribeConfigs shows
the values really in force.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from portask.config import Settings
from portask.storage.log import LogConfig


class InvalidTopicConfig(ValueError):
    """A topic config name or value was refused; the message says which and why."""


def _long(minimum: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            number = int(value)
        except ValueError:
            raise InvalidTopicConfig(f"must be an integer, got {value!r}") from None
        if number < minimum:
            raise InvalidTopicConfig(f"must be at least {minimum}, got {number}")
        return str(number)

    return check


def _choice(*allowed: str, not_yet: tuple[str, ...] = ()) -> Callable[[str], str]:
    def check(value: str) -> str:
        normalized = ",".join(part.strip() for part in value.split(",")) if "," in value else value
        if normalized in not_yet:
            raise InvalidTopicConfig(f"{value!r} is not supported by this broker yet")
        if normalized not in allowed:
            raise InvalidTopicConfig(f"must be one of {', '.join(allowed)}, got {value!r}")
        return normalized

    return check


@dataclass(frozen=True)
class ConfigKey:
    name: str
    validate: Callable[[str], str]
    doc: str


KEYS: dict[str, ConfigKey] = {
    k.name: k
    for k in (
        ConfigKey("retention.ms", _long(-1), "Delete segments older than this; -1 keeps them."),
        ConfigKey(
            "retention.bytes", _long(-1), "Delete oldest segments past this size; -1 = no limit."
        ),
        ConfigKey("segment.bytes", _long(4096), "Roll a segment at this size."),
        ConfigKey("segment.ms", _long(1), "Roll a segment at this age."),
        ConfigKey(
            "cleanup.policy",
            _choice("delete", "compact", "compact,delete", "delete,compact"),
            "delete: retention removes old segments; compact: keep the latest record per key.",
        ),
        ConfigKey("max.message.bytes", _long(0), "Largest record batch accepted."),
        ConfigKey(
            "delete.retention.ms", _long(0),
            "How long compaction keeps a tombstone (a null value) before removing it.",
        ),
        ConfigKey(
            "message.timestamp.type",
            _choice("CreateTime", "LogAppendTime"),
            "LogAppendTime: the broker stamps batches with its clock.",
        ),
        ConfigKey(
            "compression.type",
            _choice("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
            "producer keeps batches as the producer compressed them; a codec name "
            "recompresses batches that use another.",
        ),
    )
}


def defaults(settings: Settings) -> dict[str, str]:
    s = settings.storage
    return {
        "retention.ms": str(-1 if s.retention_ms is None else int(s.retention_ms)),
        "retention.bytes": str(-1 if s.retention_bytes is None else int(s.retention_bytes)),
        "segment.bytes": str(int(s.segment_bytes)),
        "segment.ms": str(2**63 - 1 if s.segment_ms is None else int(s.segment_ms)),
        "cleanup.policy": "delete",
        "delete.retention.ms": "86400000",
        "max.message.bytes": str(int(settings.kafka.max_message_bytes)),
        "message.timestamp.type": "CreateTime",
        "compression.type": "producer",
    }


def validate(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check names and values; returns the normalized overrides (None removes a key)."""
    out: dict[str, str] = {}
    for name, value in configs.items():
        key = KEYS.get(name)
        if key is None:
            raise InvalidTopicConfig(f"unknown topic config {name!r}; supported: {', '.join(KEYS)}")
        if value is None:
            raise InvalidTopicConfig(f"{name}: a value is required")
        try:
            out[name] = key.validate(value)
        except InvalidTopicConfig as exc:
            raise InvalidTopicConfig(f"{name}: {exc}") from None
    return out


def log_config(base: LogConfig, effective: Mapping[str, str]) -> LogConfig:
    """The storage settings a partition's log runs with under these topic configs."""
    retention_ms = int(effective["retention.ms"])
    retention_bytes = int(effective["retention.bytes"])
    if "delete" not in effective["cleanup.policy"]:
        # A compact-only topic keeps every key's latest record however old or large.
        retention_ms = retention_bytes = -1
    segment_ms = int(effective["segment.ms"])
    return dataclasses.replace(
        base,
        segment_bytes=int(effective["segment.bytes"]),
        segment_ms=None if segment_ms >= 2**63 - 1 else segment_ms,
        retention_ms=None if retention_ms < 0 else retention_ms,
        retention_bytes=None if retention_bytes < 0 else retention_bytes,
    )
