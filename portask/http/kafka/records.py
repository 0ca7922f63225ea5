"""Records: read a topic's partitions (or an AMQP stream queue) by offset, timestamp or
the last N, decoded from any codec; and produce one record."""

from __future__ import annotations

from typing import Any

from portask.http.kafka.api import (
    DEFAULT_RECORDS,
    MAX_RECORDS,
    Call,
    body_int,
    invalid,
    payload,
    shown,
)
from portask.http.kafka.view import KafkaView, Position, Record
from portask.http.management.api import Router

FORMATS = ("auto", "text", "json", "base64")
# Keys and values one read returns, past its first record.
DEFAULT_MAX_BYTES = 1 << 20
MAX_MAX_BYTES = 16 << 20
_INT64_MAX = 2**63 - 1


def position(call: Call) -> Position:
    given = [name for name in ("offset", "timestamp", "last") if call.query.get(name)]
    if len(given) > 1:
        raise invalid(given[1], "give one of offset, timestamp and last, not "
                      + " and ".join(given))
    offset = call.int_query("offset", minimum=0, maximum=_INT64_MAX)
    timestamp = call.int_query("timestamp", minimum=0, maximum=_INT64_MAX)
    last = call.int_query("last", minimum=1, maximum=MAX_RECORDS)
    if not given:
        return Position(offset=0)
    return Position(offset=offset, timestamp=timestamp, last=last)


def read_options(call: Call) -> tuple[int, int, str]:
    limit = call.int_query("limit", DEFAULT_RECORDS, minimum=1, maximum=MAX_RECORDS)
    max_bytes = call.int_query("max_bytes", DEFAULT_MAX_BYTES, minimum=1, maximum=MAX_MAX_BYTES)
    fmt = call.query.get("format") or "auto"
    if fmt not in FORMATS:
        raise invalid("format", f"format must be one of {', '.join(FORMATS)}")
    assert limit is not None and max_bytes is not None
    return limit, max_bytes, fmt


def record_item(partition: int, record: Record, fmt: str) -> dict[str, Any]:
    key, key_encoding = shown(record.key, fmt)
    value, value_encoding = shown(record.value, fmt)
    headers = []
    for name, data in record.headers:
        header_value, header_encoding = shown(data, "text" if fmt == "auto" else fmt)
        headers.append({"key": name, "value": header_value, "value_encoding": header_encoding})
    return {"partition": partition, "offset": record.offset, "timestamp": record.timestamp,
            "timestamp_type": record.timestamp_type, "key": key, "key_encoding": key_encoding,
            "value": value, "value_encoding": value_encoding, "headers": headers,
            "size": len(record.key or b"") + len(record.value or b"")}


def _headers(body: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    raw = body.get("headers") or []
    if isinstance(raw, dict):
        raw = [{"key": k, "value": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise invalid("headers", "headers must be an object or a list of {key, value}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise invalid("headers", "each header needs a string key")
        out.append((item["key"], payload(item.get("value"), item.get("value_encoding"),
                                         "headers.value")))
    return out


def register(router: Router, view: KafkaView) -> None:
    def read(call: Call) -> Any:
        topic = view.topic(call.params["name"])
        where = position(call)
        limit, max_bytes, fmt = read_options(call)
        index = call.int_query("partition", minimum=0, maximum=len(topic.partitions) - 1)
        indexes = [index] if index is not None else range(len(topic.partitions))
        items: list[dict[str, Any]] = []
        problems: list[dict[str, Any]] = []
        budget = max_bytes  # shared by the partitions: one answer holds at most this much
        for i in indexes:
            if budget <= 0:
                break
            partition = view.partition(topic, i)
            found, bad, used = view.read(partition, where, limit, budget)
            budget -= used
            items.extend(record_item(i, r, fmt) for r in found)
            problems.extend({"partition": i, **p} for p in bad)
        if index is None and len(indexes) > 1:
            items.sort(key=lambda r: (r["timestamp"], r["partition"], r["offset"]))
            # Across partitions: the newest for "last", else the first from the position.
            items = items[-limit:] if where.last is not None else items[:limit]
        answer: dict[str, Any] = {"topic": topic.name, "records": items}
        if problems:
            answer["unreadable"] = problems
        return answer

    def produce(call: Call) -> Any:
        topic = view.topic(call.params["name"])
        body = call.body()
        index = body_int(body, "partition", minimum=0, maximum=len(topic.partitions) - 1)
        timestamp = body_int(body, "timestamp", minimum=0, maximum=_INT64_MAX)
        key = payload(body.get("key"), body.get("key_encoding"), "key")
        value = payload(body.get("value"), body.get("value_encoding"), "value")
        partition, offset = view.produce(topic, index, key, value, _headers(body), timestamp)
        return {"topic": topic.name, "partition": partition, "offset": offset}

    def stream(call: Call) -> Any:
        where = position(call)
        limit, max_bytes, fmt = read_options(call)
        vhost, name = call.params["vhost"], call.params["name"]
        out = []
        for m in view.read_stream(vhost, name, where, limit, max_bytes):
            value, encoding = shown(m.body, fmt)
            out.append({"offset": m.offset, "timestamp": m.timestamp, "exchange": m.exchange,
                        "routing_key": m.routing_key, "properties": m.properties,
                        "value": value, "value_encoding": encoding, "size": len(m.body)})
        return {"vhost": vhost, "queue": name, "records": out}

    router.add("GET", "topics/{name}/records", read)
    router.add("POST", "topics/{name}/records", produce)
    router.add("GET", "streams/{vhost}/{name}/records", stream)
