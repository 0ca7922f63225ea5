"""HTTP endpoints on the broker's event loop: /health for probes, /metrics for Prometheus.

A small HTTP/1.1 server on ``asyncio.Protocol`` rather than a web framework: the
endpoints are a handful of GETs, and aiohttp alone cost ~10 MB of resident memory and
~150 ms of start-up, both of which the broker's budgets (idle RSS < 60 MB, ports
accepting in < 0.3 s) cannot spare. Requests with a body, other methods and malformed
requests get the proper 4xx/5xx status and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from portask import __version__
from portask.listeners import Listener

log = logging.getLogger("portask.http")

# The states /health reports; probes treat anything but "ok" as not ready.
STARTING, OK, STOPPING = "starting", "ok", "stopping"
MAX_HEADER_BYTES = 16 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}


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


Reply = tuple[int, str, bytes]


class Routes:
    """Path -> handler returning (status, content type, body)."""

    def __init__(self, health: HealthState) -> None:
        self.health = health
        self.get: dict[str, Callable[[], Reply]] = {
            "/health": self._health,
            "/metrics": self._metrics,
        }

    def _health(self) -> Reply:
        report = self.health.report()
        status = 200 if report["status"] == OK else 503
        return status, "application/json", json.dumps(report).encode()

    def _metrics(self) -> Reply:
        return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)


class HttpConnection(asyncio.Protocol):
    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self.transport is not None and not self.transport.is_closing():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._reply(431, "text/plain", b"request headers too large\n", close=True)
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            self._handle(head)

    def _handle(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._reply(400, "text/plain", b"malformed request line\n", close=True)
            return
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._reply(400, "text/plain", b"malformed header\n", close=True)
                return
            headers[name.strip().lower()] = value.strip()
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            self._reply(413, "text/plain", b"request bodies are not accepted\n", close=True)
            return
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        path = target.split("?", 1)[0]
        handler = self.routes.get.get(path)
        if handler is None:
            self._reply(404, "text/plain", b"not found\n", close=close)
        elif method not in ("GET", "HEAD"):
            self._reply(405, "text/plain", b"only GET and HEAD\n", close=close,
                        extra="Allow: GET, HEAD\r\n")
        else:
            try:
                status, ctype, body = handler()
            except Exception:
                log.exception("HTTP handler failed", extra={"fields": {"path": path}})
                status, ctype, body = 500, "text/plain", b"internal error\n"
            self._reply(status, ctype, body, close=close, head_only=method == "HEAD")

    def _reply(self, status: int, ctype: str, body: bytes, *, close: bool,
               head_only: bool = False, extra: str = "") -> None:
        assert self.transport is not None
        header = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        ).encode("latin-1")
        self.transport.write(header if head_only else header + body)
        if close:
            self.transport.close()


class HttpServer:
    def __init__(self, listener: Listener, health: HealthState) -> None:
        self.listener = listener
        self.routes = Routes(health)

    async def start(self) -> None:
        await self.listener.serve(lambda: HttpConnection(self.routes))

    async def close(self) -> None:
        await self.listener.close()
