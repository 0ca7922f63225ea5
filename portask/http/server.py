"""HTTP on the broker's event loop: /health and /metrics, and the transport under the
RabbitMQ-compatible management API (``portask.http.management``).

A small HTTP/1.1 server on ``asyncio.Protocol`` rather than a web framework: the
endpoints are simple request/response JSON, and aiohttp alone cost ~10 MB of resident
memory and ~150 ms of start-up, both of which the broker's budgets (idle RSS < 60 MB,
ports accepting in < 0.3 s) cannot spare. Each listener gets a handler (a function of
a ``Request``); request bodies are read only where the handler accepts them, up to a
bound, and malformed requests get the proper 4xx and the connection is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from portask import __version__
from portask.listeners import Listener

log = logging.getLogger("portask.http")

# The states /health reports; probes treat anything but "ok" as not ready.
STARTING, OK, STOPPING = "starting", "ok", "stopping"
MAX_HEADER_BYTES = 16 * 1024
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
            408: "Request Timeout", 415: "Unsupported Media Type",
            431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable"}


@dataclass(slots=True)
class Request:
    method: str
    path: str  # as sent: still percent-encoded, so "%2F" (the vhost "/") stays one segment
    query: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


# A handler answers at once, or with an awaitable (the control API's waits): the
# connection reads no further request until that answer is written.
Handler = Callable[[Request], Response | Awaitable[Response]]


class HealthState:
    def __init__(self, listeners: Callable[[], list[Listener]]) -> None:
        self.status = STARTING
        self.started_at = time.monotonic()
        self._listeners = listeners

    def report(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "listeners": {
                lst.name: {"address": lst.address, "state": lst.state}
                for lst in self._listeners()
            },
        }


# Request bodies the operations listener takes (the console's API calls; RabbitMQ's
# management API has the same bound): larger ones get 413 before they are buffered.
SITE_MAX_BODY_BYTES = 10 << 20


class Routes:
    """The operations listener: GET/HEAD /health and /metrics; every other path goes to
    ``site`` (the web console and its APIs) when there is one."""

    def __init__(self, health: HealthState, site: Handler | None = None) -> None:
        self.health = health
        self.site = site
        self.get: dict[str, Callable[[], Response]] = {
            "/health": self._health,
            "/metrics": self._metrics,
        }

    def __call__(self, request: Request) -> Response:
        handler = self.get.get(request.path)
        if handler is None:
            if self.site is not None:
                return self.site(request)
            return Response(404, b"not found\n", "text/plain")
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", "text/plain",
                            [("Allow", "GET, HEAD")])
        return handler()

    def _health(self) -> Response:
        report = self.health.report()
        status = 200 if report["status"] == OK else 503
        return Response(status, json.dumps(report).encode())

    def _metrics(self) -> Response:
        return Response(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)


class HttpConnection(asyncio.Protocol):
    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        # A request whose head is parsed and whose body is still arriving.
        self._pending: tuple[Request, int, bool] | None = None
        self._answering: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._answering is not None:
            self._answering.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (self.transport is not None and not self.transport.is_closing()
               and self._answering is None):
            if self._pending is not None:
                request, length, close = self._pending
                if len(self._buffer) < length:
                    return
                request.body = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._pending = None
                self._dispatch(request, close)
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._reply(Response(431, b"request headers too large\n", "text/plain"),
                                close=True)
                return
            if end > MAX_HEADER_BYTES:
                self._reply(Response(431, b"request headers too large\n", "text/plain"),
                            close=True)
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            self._head(head)

    def _head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._reply(Response(400, b"malformed request line\n", "text/plain"), close=True)
            return
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._reply(Response(400, b"malformed header\n", "text/plain"), close=True)
                return
            headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        if "transfer-encoding" in headers:
            self._reply(Response(411, b"send a Content-Length, not a chunked body\n",
                                 "text/plain"), close=True)
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._reply(Response(400, b"bad Content-Length\n", "text/plain"), close=True)
            return
        if length > self.max_body:
            message = (b"request bodies are not accepted\n" if not self.max_body
                       else b"request body too large\n")
            self._reply(Response(413, message, "text/plain"), close=True)
            return
        path, _, query = target.partition("?")
        request = Request(method, path, query, headers)
        if length:
            self._pending = (request, length, close)
        else:
            self._dispatch(request, close)

    def _dispatch(self, request: Request, close: bool) -> None:
        try:
            response = self.handler(request)
        except Exception:
            log.exception("HTTP handler failed", extra={"fields": {"path": request.path}})
            response = Response(500, b"internal error\n", "text/plain")
        if inspect.isawaitable(response):
            answering = self._answering = asyncio.ensure_future(response)
            answering.add_done_callback(lambda task: self._answered(task, request, close))
            return
        self._reply(response, close=close, head_only=request.method == "HEAD")

    def _answered(self, task: asyncio.Future[Response], request: Request, close: bool) -> None:
        self._answering = None
        if task.cancelled() or self.transport is None or self.transport.is_closing():
            return
        exc = task.exception()
        if exc is not None:
            log.error("HTTP handler failed", exc_info=exc,
                      extra={"fields": {"path": request.path}})
            response = Response(500, b"internal error\n", "text/plain")
        else:
            response = task.result()
        self._reply(response, close=close, head_only=request.method == "HEAD")
        self.data_received(b"")  # requests pipelined behind this one

    def _reply(self, response: Response, *, close: bool, head_only: bool = False) -> None:
        assert self.transport is not None
        status = response.status
        extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
        body = response.body
        header = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        ).encode("latin-1")
        if head_only or not body:
            self.transport.write(header)
        else:
            self.transport.writelines((header, body))  # no copy of a large body
        if close:
            self.transport.close()


class HttpServer:
    """One HTTP listener; ``max_body`` 0 refuses request bodies (413)."""

    def __init__(self, listener: Listener, handler: Handler, *, max_body: int = 0) -> None:
        self.listener = listener
        self.handler = handler
        self.max_body = max_body

    async def start(self) -> None:
        await self.listener.serve(lambda: HttpConnection(self.handler, self.max_body))

    async def close(self) -> None:
        await self.listener.close()
