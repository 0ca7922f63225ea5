"""``GET /_portask/peek/queues/{vhost}/{queue}``: a queue's messages without consuming them.

Nothing about the queue changes: no delivery, no redelivered flag set, no ack, the order
kept; it works while consumers hold unacked messages (those are not shown: they are no
longer in the queue). Streams are read from any offset, as a consumer would.

Query: ``offset`` (the position to start at: 0 is the head; in a stream, the offset),
``limit`` (messages returned, default 100), and filters that a message must all pass:
``routing_key`` (a shell-style pattern, ``order.*``), ``header`` (``name:value``, or
``name`` for present; several separated by ``,``), ``body`` (a substring of the body as
UTF-8), ``encoding`` (``auto``: text when the body is UTF-8, else base64; ``base64``).
"""

from __future__ import annotations

import base64
import fnmatch
from typing import TYPE_CHECKING, Any

from portask.http.kafka.api import MAX_RECORDS, Call, invalid, not_found
from portask.http.management.api import Router

if TYPE_CHECKING:
    from portask.http.control.view import ControlView

DEFAULT_LIMIT = 100


def register_peek(router: Router, view: ControlView) -> None:
    def peek_queue(call: Call) -> Any:
        vhost_name, name = call.params["vhost"], call.params["queue"]
        amqp = view.broker.amqp
        vhost = amqp.get(vhost_name) if amqp is not None else None
        if vhost is None:
            raise not_found(f"no vhost {vhost_name!r}")
        queue = vhost.queues.get(name)
        if queue is None:
            raise not_found(f"no queue {name!r} in vhost {vhost_name!r}")
        offset = call.int_query("offset", 0, minimum=0)
        limit = call.int_query("limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_RECORDS)
        assert offset is not None and limit is not None
        encoding = call.query.get("encoding") or "auto"
        if encoding not in ("auto", "base64"):
            raise invalid("encoding", "encoding must be auto or base64")
        routing_key = call.query.get("routing_key") or None
        body = call.query.get("body")
        needle = body.encode() if body else None
        headers = _header_filter(call.query.get("header") or "")
        codec = vhost.codec
        found: list[dict[str, Any]] = []
        scanned = 0
        if limit:
            for position, message, redelivered in queue.peek(offset):
                scanned += 1
                if routing_key is not None and not fnmatch.fnmatchcase(
                        message.routing_key, routing_key):
                    continue
                payload = bytes(message.body)
                if needle is not None and needle not in payload:
                    continue
                properties = codec.to_plain(message.properties) if codec is not None else {}
                if headers and not _headers_match(properties.get("headers") or {}, headers):
                    continue
                found.append(_item(position, message.exchange, message.routing_key,
                                   redelivered, properties, payload, encoding))
                if len(found) >= limit:
                    break
        return {"vhost": vhost_name, "queue": name, "ready": queue.message_count,
                "scanned": scanned, "messages": found}

    router.add("GET", "peek/queues/{vhost}/{queue}", peek_queue)


def _header_filter(raw: str) -> list[tuple[str, str | None]]:
    wanted: list[tuple[str, str | None]] = []
    for part in raw.split(","):
        if not part:
            continue
        name, sep, value = part.partition(":")
        wanted.append((name, value if sep else None))
    return wanted


def _headers_match(headers: dict[str, Any], wanted: list[tuple[str, str | None]]) -> bool:
    for name, value in wanted:
        if name not in headers:
            return False
        if value is not None and _text(headers[name]) != value:
            return False
    return True


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(errors="replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _item(position: int, exchange: str, routing_key: str, redelivered: bool,
          properties: dict[str, Any], payload: bytes, encoding: str) -> dict[str, Any]:
    item: dict[str, Any] = {"position": position, "exchange": exchange,
                            "routing_key": routing_key, "redelivered": redelivered,
                            "properties": properties, "payload_bytes": len(payload)}
    text = None
    if encoding == "auto":
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            text = None
    if text is not None:
        item.update(payload=text, payload_encoding="string")
    else:
        item.update(payload=base64.b64encode(payload).decode(), payload_encoding="base64")
    return item
