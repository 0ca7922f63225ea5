"""Routing, request parsing and errors of the Kafka HTTP API (``/kafka/v1/...``).

Every refusal is JSON, ``{"error": code, "message": text}``, plus ``"field"`` naming
the parameter or body field at fault when there is one, so that a script or the
console can point at it. Numbers in the query string and the body are checked here,
before anything reaches the broker: a bad offset is a 400, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from portask.http.management.api import Router, to_json
from portask.http.server import Request, Response

PREFIX = "/kafka/v1"
# The largest body this API reads (a record to produce, with its headers): Kafka's
# default max.message.bytes is 1 MiB, and base64 adds a third.
MAX_BODY_BYTES = 2 << 20
# The most records one read returns, and the default.
MAX_RECORDS = 1000
DEFAULT_RECORDS = 50
ENCODINGS = ("text", "json", "base64")
# Control characters other than tab and line ends: UTF-8 that holds them is shown as
# base64, since it is binary data that happens to decode.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class KafkaApiError(Exception):
    def __init__(self, status: int, error: str, message: str,
                 field_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field_name

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return Response(self.status, to_json(body))


def invalid(field_name: str, message: str) -> KafkaApiError:
    return KafkaApiError(400, "invalid_request", message, field_name)


def not_found(what: str) -> KafkaApiError:
    return KafkaApiError(404, "not_found", what)


def conflict(error: str, message: str) -> KafkaApiError:
    return KafkaApiError(409, error, message)


@dataclass(slots=True)
class Call:
    request: Request
    params: dict[str, str]
    query: dict[str, str]
    _body: dict[str, Any] | None = field(default=None)

    def body(self) -> dict[str, Any]:
        if self._body is None:
            raw = self.request.body
            if len(raw) > MAX_BODY_BYTES:
                raise KafkaApiError(413, "body_too_large",
                                    f"request body of {len(raw)} bytes; at most {MAX_BODY_BYTES}")
            try:
                parsed = json.loads(raw, parse_constant=_no_constant) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise invalid("body", f"the body is not JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise invalid("body", "the body must be a JSON object")
            self._body = parsed
        return self._body

    def int_query(self, name: str, default: int | None = None, *, minimum: int | None = None,
                  maximum: int | None = None) -> int | None:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise invalid(name, f"{name} must be an integer, got {raw!r}") from None
        return bounded(name, value, minimum, maximum)


def bounded(name: str, value: int, minimum: int | None, maximum: int | None) -> int:
    if minimum is not None and value < minimum:
        raise invalid(name, f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise invalid(name, f"{name} must be at most {maximum}, got {value}")
    return value


def body_int(body: dict[str, Any], name: str, default: int | None = None, *,
             minimum: int | None = None, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"{name} must be an integer, got {json.dumps(value)[:64]}")
    return bounded(name, value, minimum, maximum)


def body_str(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(name, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(name, f"{name} must be a string")
    return value


def payload(value: Any, encoding: Any, name: str) -> bytes | None:
    """A key, value or header value sent as text, JSON or base64 (null stays null)."""
    if value is None:
        return None
    if encoding is None:
        encoding = "text" if isinstance(value, str) else "json"
    if encoding not in ENCODINGS:
        raise invalid(f"{name}_encoding", f"{name}_encoding must be one of {', '.join(ENCODINGS)}")
    if encoding == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if not isinstance(value, str):
        raise invalid(name, f"{name} must be a string when {name}_encoding is {encoding}")
    if encoding == "text":
        try:
            return value.encode()
        except UnicodeEncodeError:
            raise invalid(name, f"{name} is not valid Unicode text") from None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(name, f"{name} is not valid base64") from None


def _no_constant(name: str) -> Any:
    """NaN and Infinity parse in Python but are not JSON: an answer must not carry them."""
    raise ValueError(f"{name} is not JSON")


def shown(data: bytes | None, fmt: str) -> tuple[Any, str | None]:
    """Stored bytes for a reader: (value, encoding) in the format asked for.

    ``auto`` gives JSON when the bytes parse as a JSON object or array, else UTF-8
    text, else base64; ``json`` and ``text`` fall back the same way when the bytes
    are not that; ``base64`` always gives base64. Text with control characters
    counts as binary.
    """
    if data is None:
        return None, None
    if fmt != "base64":
        try:
            text: str | None = data.decode()
        except UnicodeDecodeError:
            text = None
        if text is not None and not _CONTROL.search(text):
            if fmt == "json" or (fmt == "auto" and text[:1] in ("{", "[")):
                try:
                    return json.loads(text, parse_constant=_no_constant), "json"
                except (ValueError, RecursionError):
                    pass  # not JSON, or nested past what can be shown as JSON
            return text, "text"
    return base64.b64encode(data).decode(), "base64"


Handler = Callable[[Call], Any]


def route(router: Router, request: Request, prefix: str) -> Response | tuple[Handler, Call]:
    """The handler and call for a JSON API request under ``prefix``, or the 404 / 405
    answer (in the API's error form) when no route serves it."""
    segments = [unquote(s) for s in request.path[len(prefix):].strip("/").split("/") if s]
    found = router.match(segments)
    if found is None:
        return KafkaApiError(404, "not_found", f"no such endpoint: {request.path}").response()
    handlers, params = found
    handler = handlers.get("GET" if request.method == "HEAD" else request.method)
    if handler is None:
        allowed = ", ".join(sorted(handlers))
        response = KafkaApiError(405, "method_not_allowed",
                                 f"{request.method} is not served here; allowed: {allowed}"
                                 ).response()
        response.headers.append(("Allow", allowed))
        return response
    return handler, Call(request, params, dict(parse_qsl(request.query, keep_blank_values=True)))


class KafkaApi:
    """The handler for paths under ``/kafka/v1`` (the caller has authenticated)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def __call__(self, request: Request) -> Response:
        routed = route(self.router, request, PREFIX)
        if isinstance(routed, Response):
            return routed
        handler, call = routed
        try:
            result = handler(call)
        except KafkaApiError as err:
            return err.response()
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(204)
        return Response(200, to_json(result))
