# Over 500 lines: the listener, its connections and their framing share one buffer discipline.
"""The Kafka listener: size-prefixed framing, dispatch, and strictly ordered replies.

One ``asyncio.BufferedProtocol`` per connection. Requests are parsed in
``buffer_updated``; a handler answers at once or with an awaitable (a long-polling
Fetch). Kafka clients pipeline requests and match replies by order, so a reply that is
ready waits behind any earlier one still pending. Replies produced during one read are
written with a single ``writelines`` call.

Memory a connection can hold, bounded by settings:

- the read buffer grows with the bytes that arrive, never with the size a request
  announces (up to ``kafka.socket_request_max_bytes``), so announcing 100 MiB and
  sending 256 KiB costs at most twice 256 KiB;
- answers: once more than ``network.write_buffer_high_bytes`` is queued to send (the
  transport's buffer plus the answers of this read), or ``kafka.max_in_flight_requests``
  requests are unanswered, the requests already read wait in the buffer and the socket
  is not read until the client takes its answers. A long-polling Fetch answer is
  bounded by its own ``max_bytes`` (zero-copy slices of the segment maps).

A connection that stops in the middle of a request is closed after
``kafka.incomplete_request_timeout_ms``; one with no traffic and nothing to answer after
``kafka.connections_max_idle_ms`` (Kafka's ``connections.max.idle.ms``). Both are
checked by one lazy timer per connection, not per read.

This module knows no API: handlers come from the registry, which the API modules fill
when the composition root (portask/app.py) imports them, and they see the server and
the connection through the protocols in context.py.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from portask import metrics
from portask.broker.kafka.acls import Authorizer
from portask.broker.kafka.principals import (
    ANONYMOUS,
    USER,
    NoMatchingRule,
    parse_rules,
    principal_from_subject,
)
from portask.broker.users import Users
from portask.kafka_listeners import WILDCARD_HOSTS
from portask.listeners import Listener, configure_accepted
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.wire import (
    INT32,
    MalformedRequest,
    parse_request_header,
    response_header,
)
from portask.protocols.scram import ScramServer
from portask.tls import peer_subject

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.config import Settings

log = logging.getLogger("portask.kafka")
# Kafka's default connection.failed.authentication.delay.ms.
FAILED_AUTHENTICATION_CLOSE_DELAY_S = 0.1

_READ_BUFFER = 256 * 1024
_MIN_READ = 64 * 1024
# ApiVersions, SaslHandshake, SaslAuthenticate: all a client may send before logging in.
_BEFORE_AUTHENTICATION = frozenset(
    (ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)
)


class KafkaServer:
    """State shared by every Kafka connection: the broker core and how to reach us."""

    def __init__(self, broker: Broker, settings: Settings, listeners: list[Listener]) -> None:
        if not registry.APIS:
            raise RuntimeError("no Kafka API is registered: import portask.protocols.kafka.apis")
        self.broker = broker
        self.settings = settings
        self.listeners = listeners
        self.connections: set[KafkaConnection] = set()
        self.users = Users(settings.auth.users)
        self.sasl_mechanisms = tuple(settings.kafka.sasl_mechanisms.split(","))
        self.principal_rules = parse_rules(settings.kafka.ssl_principal_mapping_rules)
        k = settings.kafka
        self.acls = broker.kafka_acls
        self.authorizer: Authorizer | None = None
        if k.authorizer:
            self.authorizer = Authorizer(
                self.acls, filter(None, (u.strip() for u in k.super_users.split(";"))),
                allow_if_no_acl=k.allow_everyone_if_no_acl_found)

    def protocol_factory(self, listener: Listener) -> Callable[[], KafkaConnection]:
        """Connections that know the listener they came through (what they advertise)."""
        return lambda: KafkaConnection(self, listener)

    def advertised_address(self, listener: Listener,
                           local: tuple[str, int] | None) -> tuple[str, int]:
        """Where clients of ``listener`` should connect: its advertised address, else its
        own, else (bound to a wildcard) the address the client used. Each listener answers
        with its own, as Kafka does: a client is sent back to the network it came from,
        and a TLS client to TLS."""
        spec = listener.kafka
        host = spec.advertised_host if spec is not None else None
        if host is None:
            listen_host = listener.host
            host = local[0] if (listen_host in WILDCARD_HOSTS and local) else listen_host
        port = spec.advertised_port if spec is not None else None
        return host, port or listener.port

    def listener_addresses(self, local: tuple[str, int] | None
                           ) -> list[tuple[str, str, str, int, str, int]]:
        """(name, security protocol, bound host, bound port, advertised host, advertised
        port) of every listener, for the broker's listeners and advertised.listeners."""
        out = []
        for listener in self.listeners:
            spec = listener.kafka
            name = spec.name if spec is not None else listener.name.upper()
            protocol = spec.security_protocol if spec is not None else "PLAINTEXT"
            host, port = self.advertised_address(listener, local)
            out.append((name, protocol, listener.host, listener.port, host, port))
        return out

    def close_all(self) -> int:
        connections = list(self.connections)
        for conn in connections:
            conn.close()
        return len(connections)


class _Slot:
    """A reply position in the connection's order; filled when its handler finishes."""

    __slots__ = ("buffers", "done")

    def __init__(self) -> None:
        self.done = False
        self.buffers: list[Any] = []


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, server: KafkaServer, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        kafka = server.settings.kafka
        spec = listener.kafka
        # A SASL listener, or kafka.sasl_required for every listener.
        self._sasl_required = kafka.sasl_required or (spec is not None and spec.sasl)
        self.max_request = int(kafka.socket_request_max_bytes)
        self._max_in_flight = kafka.max_in_flight_requests
        self._idle_s = kafka.connections_max_idle_ms / 1000
        self._incomplete_s = kafka.incomplete_request_timeout_ms / 1000
        self._high = int(server.settings.network.write_buffer_high_bytes)
        self._loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.local: tuple[str, int] | None = None
        # The socket reads straight into this buffer; requests are parsed between
        # _start and _end. See get_buffer for how it is reused and grown.
        self._buf = bytearray(_READ_BUFFER)
        self._start = 0
        self._end = 0
        self._pending: collections.deque[_Slot] = collections.deque()
        self._out: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # The client is not reading our answers (the transport paused us).
        self._reading_paused = False
        # Requests already read wait in the buffer: too much is queued to send.
        self._held = False
        self._resume_scheduled = False
        # Bytes of answers produced in this read, not yet handed to the transport.
        self._out_bytes = 0
        self._last_recv = self._last_send = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self._close_after_flush = False
        # SASL state: the mechanism chosen by SaslHandshake, a SCRAM exchange in
        # progress, and who the connection authenticated as.
        self.sasl_mechanism: str | None = None
        self.scram: ScramServer | None = None
        self.authenticated_user: str | None = None
        # Between a SaslHandshake v0 and the end of its exchange, frames are raw tokens.
        self.raw_sasl: Callable[[bytes], bytes | None] | None = None
        # From a verified client certificate on the TLS listener (ssl.principal.mapping).
        self.tls_principal: str | None = None
        self.host = ""
        self._control = server.broker.control

    def advertised_address(self) -> tuple[str, int]:
        return self.server.advertised_address(self.listener, self.local)

    @property
    def principal(self) -> str:
        """Who the authorizer sees: SASL's user, else the certificate's, else ANONYMOUS."""
        if self.authenticated_user is not None:
            return f"{USER}:{self.authenticated_user}"
        return self.tls_principal or ANONYMOUS

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        self.host = str(self.peer[0]) if isinstance(self.peer, tuple) and self.peer else ""
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1])) if sockname else None
        network = self.server.settings.network
        configure_accepted(transport, network)
        self.transport.set_write_buffer_limits(high=int(network.write_buffer_high_bytes))
        self.server.connections.add(self)
        metrics.CONNECTIONS_TOTAL.labels("kafka").inc()
        metrics.CONNECTIONS_ACTIVE.labels("kafka").inc()
        self._last_recv = self._last_send = self._loop.time()
        self._watchdog = self._loop.call_later(
            min(self._idle_s, self._incomplete_s), self._check_stalled)
        subject = peer_subject(transport)
        if subject is not None:
            try:
                self.tls_principal = principal_from_subject(subject,
                                                            self.server.principal_rules)
            except NoMatchingRule as exc:
                # Kafka fails the TLS authentication of such a client.
                metrics.CONNECTION_ERRORS.labels("kafka", "tls principal").inc()
                log.warning("TLS client refused; closing the connection",
                            extra={"fields": {"peer": self.peer, "detail": str(exc)}})
                self._closed = True
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.connections.discard(self)
        metrics.CONNECTIONS_ACTIVE.labels("kafka").dec()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in self._tasks:
            task.cancel()

    def pause_writing(self) -> None:
        # The client is not reading replies: stop reading its requests until it does.
        self._reading_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._reading_paused = False
        self._last_send = self._loop.time()  # the client took answers: not idle
        if self._held:
            self._schedule_resume()
        else:
            self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        if self._reading_paused or self._held:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        buf = self._buf
        if len(buf) - self._end < _MIN_READ:
            pending = self._end - self._start
            if pending + _MIN_READ > len(buf):
                # Grow with what has arrived, never with the size a request announces:
                # doubling keeps the copies linear, and a client that announces 100 MiB
                # and sends 256 KiB costs at most 512 KiB.
                grown = bytearray(max(pending + _MIN_READ, 2 * len(buf)))
                grown[:pending] = buf[self._start : self._end]
                self._buf = buf = grown
            else:
                # Equal-length slice assignment never resizes, so it is allowed even
                # while the transport still holds the previous read's view.
                buf[:pending] = buf[self._start : self._end]
            self._start, self._end = 0, pending
        return memoryview(buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        self._last_recv = self._loop.time()
        if self._held:
            return  # read before pause_reading took effect: handled on resume
        self._process()

    def _process(self) -> None:
        # Requests are handled as memoryview slices of the read buffer, with no copy.
        # Handlers decode what they need before returning (kio copies out), so the
        # buffer can be reused for the next read once this returns.
        buf = self._buf
        view = memoryview(buf).toreadonly()  # kio reads only read-only buffers
        pos, end = self._start, self._end
        while end - pos >= 4:
            size = INT32.unpack_from(buf, pos)[0]
            if size < 0 or size > self.max_request:
                self._protocol_error("request size out of range", size=size, limit=self.max_request)
                return
            if end - pos - 4 < size:
                break
            if self._over_budget():
                # Leave the rest unread until the client takes its answers.
                self._held = True
                self._update_reading()
                break
            if self.raw_sasl is None:
                self._handle(view[pos + 4 : pos + 4 + size])
            else:
                self._raw_sasl_token(bytes(view[pos + 4 : pos + 4 + size]))
            pos += 4 + size
            if self._closed:
                return
        view.release()
        if pos == end:
            self._start = self._end = 0
            if len(buf) > _READ_BUFFER * 16:
                self._buf = bytearray(_READ_BUFFER)  # give back memory a large request took
        else:
            self._start = pos
        self._flush()

    def _over_budget(self) -> bool:
        """Too much answered and not yet taken by the client, or too many requests
        unanswered: read no further (checked per request, not per message)."""
        if self._reading_paused or len(self._pending) >= self._max_in_flight:
            return True
        transport = self.transport
        queued = self._out_bytes + (transport.get_write_buffer_size() if transport else 0)
        return queued > self._high

    def _schedule_resume(self) -> None:
        if not self._resume_scheduled:
            self._resume_scheduled = True
            self._loop.call_soon(self._resume_held)

    def _resume_held(self) -> None:
        """Answers went out: handle the requests that waited, then read again."""
        self._resume_scheduled = False
        if self._closed or not self._held or self._over_budget():
            return
        self._held = False
        self._process()
        self._update_reading()

    # -- timeouts ----------------------------------------------------------------------

    def _check_stalled(self) -> None:
        """The lazy watchdog: close a connection stalled mid-request or idle too long,
        then sleep until the earliest moment either could next be true."""
        self._watchdog = None
        if self._closed or self.transport is None:
            return
        now = self._loop.time()
        incomplete = self._end > self._start and not (self._held or self._reading_paused)
        if incomplete and now - self._last_recv >= self._incomplete_s:
            self._stalled_close("request incomplete", now - self._last_recv)
            return
        busy = self._pending or self._held
        last = max(self._last_recv, self._last_send)
        if not busy and now - last >= self._idle_s:
            self._stalled_close("idle connection", now - last)
            return
        wake = self._incomplete_s
        if incomplete:
            wake = self._last_recv + self._incomplete_s - now
        elif not busy:
            wake = min(wake, last + self._idle_s - now)
        self._watchdog = self._loop.call_later(max(wake, 0.01), self._check_stalled)

    def _stalled_close(self, why: str, silent_s: float) -> None:
        metrics.CONNECTION_ERRORS.labels("kafka", why).inc()
        level = logging.WARNING if why == "request incomplete" else logging.INFO
        log.log(level, f"{why} for {silent_s:.1f} s; closing the connection",
                extra={"fields": {"peer": self.peer, "buffered_bytes": self._end - self._start}})
        self._closed = True
        assert self.transport is not None
        self.transport.abort()  # drop what is buffered either way: the peer is gone

    # -- request handling ------------------------------------------------------------

    def _handle(self, frame: memoryview) -> None:
        if len(frame) < 8:
            self._protocol_error("request header truncated", size=len(frame))
            return
        api_key = int.from_bytes(frame[0:2], "big", signed=True)
        version = int.from_bytes(frame[2:4], "big", signed=True)
        api = registry.APIS.get(api_key)
        if api is None:
            self._protocol_error("unknown API key", api_key=api_key, api_version=version)
            return
        if (
            self._sasl_required
            and self.authenticated_user is None
            and self.tls_principal is None
            and api_key not in _BEFORE_AUTHENTICATION
        ):
            self._protocol_error("request before SASL authentication", api=api.schema)
            return
        supported = api.min_version <= version <= api.max_version
        if not supported and api_key != ApiKey.API_VERSIONS:
            self._protocol_error(
                "unsupported API version",
                api=api.schema,
                api_version=version,
                supported=f"{api.min_version}-{api.max_version}",
            )
            return
        try:
            if supported:
                schema = registry.schema(api_key, version)
                flexible = schema.request_flexible
            else:
                schema = None
                flexible = version >= 3  # ApiVersions v3+ uses request header v2 (KIP-511)
            _, _, correlation_id, client_id, body_at = parse_request_header(frame, flexible)
            request = registry.decode(schema, frame, body_at) if schema is not None else None
        except MalformedRequest as exc:
            self._protocol_error(
                "malformed request", api=api.schema, api_version=version, detail=str(exc)
            )
            return
        ctx = RequestContext(self.server, self, api_key, version, correlation_id, client_id)
        started = time.perf_counter()
        try:
            # One attribute read while no fault rule is installed and the request log is
            # off (the control API); the hook module loads the first time it is needed.
            if self._control.kafka_hooked:
                from portask.protocols.kafka import faults

                result = faults.handle(ctx, api, request, len(frame))
            else:
                result = api.handler(ctx, request)
            if not inspect.isawaitable(result):
                buffers = self._encode(ctx, schema, result)
        except Exception as exc:
            self._handler_failed(ctx, api.schema, exc)
            return
        if inspect.isawaitable(result):
            slot = _Slot()
            self._pending.append(slot)
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(
                lambda t: self._finished(t, slot, ctx, schema, api.schema, started)
            )
            return
        _observe(api.schema, started)
        for piece in buffers:
            self._out_bytes += len(piece)
        if self._pending:
            slot = _Slot()
            slot.buffers, slot.done = buffers, True
            self._pending.append(slot)
        else:
            self._out.extend(buffers)

    def _raw_sasl_token(self, token: bytes) -> None:
        """A SASL token outside Kafka's request framing (after SaslHandshake v0): the
        answer is the bare size-prefixed token; a failed login closes the connection
        without one, as Kafka does before SaslAuthenticate existed."""
        assert self.raw_sasl is not None
        reply = self.raw_sasl(token)
        if reply is None:
            metrics.CONNECTION_ERRORS.labels("kafka", "SASL authentication failed").inc()
            self.close()
            return
        buffers = [INT32.pack(len(reply)) + reply]
        self._out_bytes += len(buffers[0])
        if self._pending:
            slot = _Slot()
            slot.buffers, slot.done = buffers, True
            self._pending.append(slot)
        else:
            self._out.extend(buffers)

    def _finished(
        self,
        task: asyncio.Task[Any],
        slot: _Slot,
        ctx: RequestContext,
        schema: registry.Schema | None,
        label: str,
        started: float,
    ) -> None:
        self._tasks.discard(task)
        if self._closed or task.cancelled():
            return
        try:
            slot.buffers = self._encode(ctx, schema, task.result())
        except Exception as exc:
            self._handler_failed(ctx, label, exc)
            return
        slot.done = True
        _observe(label, started)
        self._flush()

    def _encode(
        self, ctx: RequestContext, schema: registry.Schema | None, result: Any
    ) -> list[Any]:
        if result is None:
            return []
        if schema is None:  # an ApiVersions answer to an unsupported version is v0
            schema = registry.schema(ctx.api_key, 0)
        header = response_header(ctx.correlation_id, schema.response_flexible)
        if isinstance(result, list):
            size = len(header) + sum(len(b) for b in result)
            return [INT32.pack(size) + header, *result]
        body = registry.encode(schema, result)
        return [INT32.pack(len(header) + len(body)) + header + body]

    def _flush(self) -> None:
        pending = self._pending
        out = self._out
        while pending and pending[0].done:
            out.extend(pending.popleft().buffers)
        if out and self.transport is not None and not self._closed:
            self.transport.writelines(out)
            self._last_send = self._loop.time()
        out.clear()
        self._out_bytes = 0
        if self._close_after_flush and not pending:
            self._close_after_flush = False
            # Kafka's connection.failed.authentication.delay.ms (100 by default): the
            # refusal is read before the socket goes, and a client that retries at once
            # is slowed down. Nothing more is read meanwhile.
            if self.transport is not None:
                self.transport.pause_reading()
            self._loop.call_later(FAILED_AUTHENTICATION_CLOSE_DELAY_S, self.close)
        elif self._held and not self._resume_scheduled:
            self._schedule_resume()

    def close_after_reply(self) -> None:
        """Close once the replies queued so far are written (failed authentication)."""
        self._close_after_flush = True

    # -- errors and closing ----------------------------------------------------------

    def _handler_failed(self, ctx: RequestContext, label: str, exc: Exception) -> None:
        # A request that passed decoding but broke a handler is a Portask bug: the
        # traceback is what a bug report needs. Only this connection is closed.
        log.error(
            "request handler failed; closing the connection",
            exc_info=exc,
            extra={"fields": {"api": label, "api_version": ctx.api_version}},
        )
        self.close()

    def _protocol_error(self, message: str, **fields: Any) -> None:
        # Kafka closes the connection on requests it cannot parse; so do we.
        metrics.CONNECTION_ERRORS.labels("kafka", message).inc()
        log.warning(
            f"{message}; closing the connection", extra={"fields": {"peer": self.peer, **fields}}
        )
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flush_before_close()
        if self.transport is not None:
            self.transport.close()

    def _flush_before_close(self) -> None:
        out = self._out
        while self._pending and self._pending[0].done:
            out.extend(self._pending.popleft().buffers)
        if out and self.transport is not None:
            self.transport.writelines(out)
        out.clear()


_REQUEST_DURATION: dict[str, Any] = {}


def _observe(label: str, started: float) -> None:
    child = _REQUEST_DURATION.get(label)
    if child is None:
        child = _REQUEST_DURATION[label] = metrics.REQUEST_DURATION.labels("kafka", label)
    child.observe(time.perf_counter() - started)
