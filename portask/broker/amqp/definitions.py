"""How AMQP definitions are written to the durable ``Definitions`` store.

Keys and values are msgpack-able data. Durable exchanges, durable non-exclusive
queues and the bindings between durable ends are recorded when declared and removed
when deleted; ``VirtualHosts.open`` replays them at start-up. Argument tables may hold
values msgpack has no type for (decimals, timestamps, nested tables); those are
tagged so that a redeclare after a restart compares equal to the original.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

_TAG = "$amqp"


def to_plain(value: Any) -> Any:
    """A field-table value as msgpack-able data (tables and unusual types tagged)."""
    if isinstance(value, dict):
        return {_TAG: "table", "v": {str(k): to_plain(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, datetime.datetime):
        return {_TAG: "timestamp", "v": value.timestamp()}
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        tag = value.get(_TAG)
        if tag == "table":
            return {k: from_plain(v) for k, v in value["v"].items()}
        if tag == "decimal":
            return decimal.Decimal(value["v"])
        if tag == "timestamp":
            return datetime.datetime.fromtimestamp(value["v"], tz=datetime.UTC)
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_plain(v) for v in value]
    return value


def table_to_plain(table: dict[str, Any]) -> dict[str, Any]:
    return {str(k): to_plain(v) for k, v in table.items()}


def table_from_plain(table: Any) -> dict[str, Any]:
    return {str(k): from_plain(v) for k, v in dict(table or {}).items()}
