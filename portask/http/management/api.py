"""Routing, authentication and errors of the management API, shaped like RabbitMQ's.

RabbitMQ 3.10's ``rabbitmq_management`` is the reference: errors are
``{"error": ..., "reason": ...}`` with its statuses (``Object Not Found`` 404,
``bad_request`` 400, ``not_authorised`` 401), path segments are percent-decoded one
by one (the vhost ``/`` is ``%2F``), and request bodies are JSON objects whose
booleans and integers may arrive as strings (rabbitmqadmin sends ``"true"``, ``"1"``).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from portask.http.server import Request, Response

log = logging.getLogger("portask.http")

REALM = 'Basic realm="RabbitMQ Management"'


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


@dataclass(slots=True)
class Call:
    """One request after routing and authentication."""

    request: Request
    params: dict[str, str]
    query: dict[str, str]
    user: str
    _body: Any = field(default=None)

    def body(self) -> dict[str, Any]:
        """The JSON object sent; an empty body is an empty object, as RabbitMQ reads it."""
        if self._body is None:
            raw = self.request.body
            if not raw.strip():
                self._body = {}
            else:
                try:
                    self._body = json.loads(raw)
                except (ValueError, UnicodeDecodeError, RecursionError):
                    # RecursionError: arrays nested deeper than the parser goes.
                    raise bad_request("Bad JSON in request body") from None
            if not isinstance(self._body, dict):
                raise bad_request("Expected a JSON object in request body")
        return self._body  # type: ignore[no-any-return]


Handler = Callable[[Call], Any]


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    """RabbitMQ's rabbit_mgmt_util:parse_bool: true/false as JSON or as text."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise bad_request(f"{name} must be a boolean, got {json.dumps(value, default=str)}")


def parse_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise bad_request(f"{name} must be an integer, got {json.dumps(value, default=str)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return base64.b64encode(data).decode()
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# Answers are trees built per request, never cyclic, so the encoder's cycle check is
# only cost; and UTF-8 out, as RabbitMQ writes it, encodes a thousand-queue list in
# about half the time of \u escapes.
_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"),
                            check_circular=False, ensure_ascii=False)
_ASCII_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"),
                                  check_circular=False)


def to_json(value: Any) -> bytes:
    try:
        return _ENCODER.encode(value).encode()
    except UnicodeEncodeError:
        # A lone surrogate (a name that was not valid UTF-8) has no UTF-8 form: escape it.
        return _ASCII_ENCODER.encode(value).encode()


def error_response(err: ApiError, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(err.status, to_json({"error": err.error, "reason": err.reason}),
                    headers=headers or [])


_SEGMENT = re.compile(r"^\{(\w+)\}$")


class Router:
    """Routes by method and path segments; ``{name}`` segments become parameters."""

    def __init__(self) -> None:
        self._routes: dict[int, list[tuple[tuple[str, ...], dict[str, Handler]]]] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        parts = tuple(p for p in pattern.strip("/").split("/") if p)
        bucket = self._routes.setdefault(len(parts), [])
        for existing, handlers in bucket:
            if existing == parts:
                if method in handlers:
                    raise ValueError(f"route registered twice: {method} {pattern}")
                handlers[method] = handler
                return
        bucket.append((parts, {method: handler}))

    def match(self, segments: list[str]) -> tuple[dict[str, Handler], dict[str, str]] | None:
        for parts, handlers in self._routes.get(len(segments), ()):
            params: dict[str, str] = {}
            for part, segment in zip(parts, segments, strict=True):
                m = _SEGMENT.match(part)
                if m:
                    params[m.group(1)] = segment
                elif part != segment:
                    break
            else:
                return handlers, params
        return None


Authenticate = Callable[[str, str], bool]
# (user, method, path segments) -> the refusal, or None when the user may do it.
Authorize = Callable[[str, str, list[str]], "ApiError | None"]


class Api:
    """The HTTP handler of the management listener."""

    def __init__(self, router: Router, authenticate: Authenticate,
                 authorize: Authorize | None = None) -> None:
        self.router = router
        self.authenticate = authenticate
        self.authorize = authorize

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path in ("", "/"):
            return Response(200, b"Portask: RabbitMQ-compatible management API under /api/\n",
                            "text/plain")
        if not path.startswith("/api/") and path != "/api":
            return error_response(not_found())
        segments = [unquote(s) for s in path[len("/api/"):].split("/")]
        if segments and segments[-1] == "":
            segments.pop()
        found = self.router.match(segments)
        if found is None:
            return error_response(not_found())
        handlers, params = found
        method = "GET" if request.method == "HEAD" else request.method
        handler = handlers.get(method)
        if handler is None:
            allowed = ", ".join(sorted(handlers))
            return Response(405, to_json({"error": "Method Not Allowed",
                                          "reason": f"allowed: {allowed}"}),
                            headers=[("Allow", allowed)])
        user = self._user(request)
        if user is None:
            return error_response(ApiError(401, "not_authorised", "Login failed"),
                                  [("WWW-Authenticate", REALM)])
        refused = self.authorize(user, method, segments) if self.authorize else None
        if refused is not None:
            return error_response(refused)
        query = dict(parse_qsl(request.query, keep_blank_values=True))
        call = Call(request, params, query, user)
        try:
            result = handler(call)
        except ApiError as err:
            return error_response(err)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(204)
        return Response(200, to_json(result))

    def _user(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep or not self.authenticate(user, password):
            log.warning("HTTP access denied", extra={"fields": {"user": user}})
            return None
        return user
