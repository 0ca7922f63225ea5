"""One AMQP 0-9-1 connection: an asyncio.Protocol that parses frames in data_received.

Shape: bytes accumulate in one bytearray; every complete frame is handled in order;
replies (and deliveries pushed to this connection by other connections' publishes)
collect in a list that is written with one ``writelines`` per read batch or, for
cross-connection deliveries, once per event-loop turn. Publisher confirms are
folded into one multiple-ack per channel per batch.

Back-pressure: when the transport's write buffer passes the high-water mark the
connection stops reading (a client that does not read replies cannot keep publishing)
and its consumers report "not ready", so undelivered messages stay in their queues.

Resource alarms (``broker.alarms``), as RabbitMQ applies them: while a memory or disk
alarm is set, a connection that sends publish content stops being read right after
that frame (the rest of what it sent waits, unparsed, in its buffer and the socket),
and gets Connection.Blocked if it advertised the ``connection.blocked`` capability.
Connections that do not publish keep working, so consumers can drain queues. When
every alarm has cleared, blocked connections get Connection.Unblocked (if they were
sent Blocked) and are read again. Missed heartbeats are not held against a connection
while it is not being read.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import struct
import time
from typing import TYPE_CHECKING, Any

from pamqp import commands, decode
from pamqp.base import Frame as PamqpMethod

from portask import __version__, metrics
from portask.broker.amqp_errors import BrokerError
from portask.broker.clients import ConnectionView
from portask.listeners import configure_accepted
from portask.protocols.amqp import frames
from portask.protocols.amqp.channel import Channel
from portask.protocols.amqp.constants import (
    ACCESS_REFUSED,
    BASIC_ACK,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    CHANNEL_ERROR_CODES,
    COMMAND_INVALID,
    CONNECTION_ERROR_CODES,
    CONNECTION_FORCED,
    FRAME_BODY,
    FRAME_END,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    FRAME_OVERHEAD,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PROTOCOL_HEADER,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    reply_text,
)
from portask.protocols.amqp.errors import AmqpError, ChannelClose, ConnectionClose

if TYPE_CHECKING:
    from portask.protocols.amqp.server import AmqpServer

log = logging.getLogger("portask.amqp")

AWAIT_HEADER, AWAIT_START_OK, AWAIT_TUNE_OK, AWAIT_OPEN, OPEN, CLOSING, CLOSED = range(7)
HANDSHAKE_TIMEOUT_S = 10.0
CLOSE_OK_TIMEOUT_S = 3.0
_FRAME_HEAD = frames.FRAME_HEAD
_METHOD_INDEX = struct.Struct(">I")
_CHANNEL_OPEN = commands.Channel.Open.index
_CHANNEL_CLOSE = commands.Channel.Close.index
_CHANNEL_CLOSE_OK = commands.Channel.CloseOk.index

SERVER_CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "per_consumer_qos": True,
    "authentication_failure_close": True,
    "connection.blocked": True,
}


def server_properties() -> dict[str, Any]:
    return {
        "product": "Portask",
        "version": __version__,
        "platform": f"Python {platform.python_version()}",
        "information": "AMQP 0-9-1 in the RabbitMQ dialect; see the Portask README",
        "capabilities": SERVER_CAPABILITIES,
    }


class AmqpConnection(asyncio.Protocol):
    def __init__(self, server: AmqpServer) -> None:
        self.server = server
        settings = server.settings
        self._loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self._state = AWAIT_HEADER
        self._header = b""
        self._buf = bytearray()
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._confirming: list[Channel] = []
        self.channels: dict[int, Channel] = {}
        self.frame_max = int(settings.frame_max)
        self._max_payload = self.frame_max - FRAME_OVERHEAD
        self.channel_max = settings.channel_max
        self.heartbeat = 0
        self.max_message_bytes = int(settings.max_message_bytes)
        self.writing_paused = False
        self.vhost: Any = None
        self.user = ""
        self.client_properties: dict[str, Any] = {}
        self._last_recv = 0.0
        self._last_send = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._broken_framing = False
        self.peer = ""
        # A resource alarm is set: the next publish content frame blocks this connection.
        self.alarm = bool(server.alarms)
        # Not read from because of an alarm; whether Connection.Blocked was sent.
        self.blocked = False
        self._blocked_sent = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        high = int(self.server.network.write_buffer_high_bytes)
        self.transport.set_write_buffer_limits(high=high, low=high // 4)  # type: ignore[union-attr]
        configure_accepted(transport, self.server.network)
        self.peer = str(transport.get_extra_info("peername"))
        self._sockname = transport.get_extra_info("sockname")
        self._peername = transport.get_extra_info("peername")
        self.connected_at_ms = int(time.time() * 1000)
        metrics.CONNECTIONS_TOTAL.labels("amqp").inc()
        metrics.CONNECTIONS_ACTIVE.labels("amqp").inc()
        self.server.connections.add(self)
        self.server.clients.opened(self)
        self._last_recv = self._last_send = self._loop.time()
        self._timers.append(self._loop.call_later(HANDSHAKE_TIMEOUT_S, self._handshake_timeout))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == CLOSED:
            return
        self._state = CLOSED
        self.server.connections.discard(self)
        self.server.clients.closed(self)
        metrics.CONNECTIONS_ACTIVE.labels("amqp").dec()
        for timer in self._timers:
            timer.cancel()
        self._release_channels()
        if self.vhost is not None:
            self.vhost.connection_closed(self)
        self.transport = None

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()
        for channel in list(self.channels.values()):
            channel.dispatch_all()

    def _update_reading(self) -> None:
        """Read unless the client is not reading our replies or an alarm blocks it."""
        transport = self.transport
        if transport is None or self._state == CLOSED:
            return
        if self.writing_paused or self.blocked:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._last_recv = self._loop.time()
        state = self._state
        if state == CLOSED or self._broken_framing:
            return
        if self.blocked:
            self._buf += data  # arrived before pause_reading took effect: parsed on unblock
            return
        if state == AWAIT_HEADER:
            data = self._protocol_header(data)
            if not data:
                return
        self._flush_scheduled = True  # replies go out in one write at the end of this batch
        try:
            self._parse(data)
        except Exception:
            log.exception("internal error on AMQP connection", extra={"fields": {
                "peer": self.peer}})
            self._close_connection(ConnectionClose(INTERNAL_ERROR, "internal error"))
        finally:
            self._flush()

    def describe(self) -> ConnectionView:
        """The broker's read-only view of this connection (``broker.clients``)."""
        peer = self._peername if isinstance(self._peername, tuple) else ("", 0)
        local = self._sockname if isinstance(self._sockname, tuple) else ("", 0)
        peer_host, peer_port = str(peer[0]), int(peer[1])
        host, port = str(local[0]), int(local[1])
        state = {OPEN: "running", CLOSING: "closing", CLOSED: "closed"}.get(
            self._state, "starting")
        if self.blocked:
            state = "blocked"
        return ConnectionView(
            name=f"{peer_host}:{peer_port} -> {host}:{port}", protocol="AMQP 0-9-1",
            peer_host=peer_host, peer_port=peer_port, host=host, port=port,
            user=self.user, vhost=self.vhost.name if self.vhost is not None else "",
            connected_at_ms=self.connected_at_ms, state=state,
            channel_max=self.channel_max, frame_max=self.frame_max,
            heartbeat_s=self.heartbeat, client_properties=self.client_properties,
            channels=[channel.describe() for channel in list(self.channels.values())],
        )

    # -- framing --------------------------------------------------------------------------

    def _protocol_header(self, data: bytes) -> bytes:
        need = 8 - len(self._header)
        self._header += data[:need]
        rest = data[need:]
        if not PROTOCOL_HEADER.startswith(self._header[:len(PROTOCOL_HEADER)]):
            self._refuse_header()
            return b""
        if len(self._header) < 8:
            return b""
        self._state = AWAIT_START_OK
        self.send(frames.method_frame(0, commands.Connection.Start(
            version_major=0, version_minor=9, server_properties=server_properties(),
            mechanisms="PLAIN AMQPLAIN", locales="en_US",
        )))
        self._flush()
        return rest

    def _refuse_header(self) -> None:
        """The spec's answer to a header we do not speak: our header, then close."""
        metrics.CONNECTION_ERRORS.labels("amqp", "protocol_header").inc()
        self._state = CLOSED
        assert self.transport is not None
        self.transport.write(PROTOCOL_HEADER)
        self.transport.close()

    def _parse(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        unpack = _FRAME_HEAD.unpack_from
        try:
            while n - pos >= 7:
                ftype, channel, size = unpack(buf, pos)
                if size > self._max_payload:
                    raise ConnectionClose(
                        FRAME_ERROR,
                        f"frame of {size + FRAME_OVERHEAD} bytes exceeds frame_max "
                        f"{self._max_payload + FRAME_OVERHEAD}",
                    )
                end = pos + 7 + size
                if end >= n:
                    break
                if buf[end] != FRAME_END:
                    raise ConnectionClose(
                        FRAME_ERROR, f"frame end byte 0x{buf[end]:02x} is not 0xce"
                    )
                payload = bytes(buf[pos + 7 : end])
                pos = end + 1
                self._frame(ftype, channel, payload)
                if self._state == CLOSED or self._broken_framing:
                    pos = n
                    break
                # RabbitMQ's rule: publishing during an alarm blocks the connection once
                # this content frame is taken; what follows stays unread.
                if self.alarm and ftype in (FRAME_HEADER, FRAME_BODY) and self._state == OPEN:
                    self.block()
                    break
        except ConnectionClose as err:
            if err.code == FRAME_ERROR:
                self._broken_framing = True  # the stream is out of sync: read no further
            pos = n
            self._close_connection(err)
        del buf[:pos]

    def _frame(self, ftype: int, number: int, payload: bytes) -> None:
        if ftype == FRAME_METHOD:
            if number == 0:
                self._connection_method(payload)
                return
            if self._state != OPEN:
                if self._state == CLOSING:
                    return
                raise ConnectionClose(COMMAND_INVALID, "channel method before connection.open")
            channel = self.channels.get(number)
            if channel is None:
                self._channel_open(number, payload)
                return
            if channel.closing:
                self._closing_channel_method(channel, payload)
                return
            if channel.awaiting_content:
                raise ConnectionClose(UNEXPECTED_FRAME,
                                      f"method frame on channel {number} in the middle of content")
            try:
                index = _METHOD_INDEX.unpack_from(payload)[0] if len(payload) >= 4 else -1
                if index == BASIC_PUBLISH:
                    channel.on_publish(payload)
                elif index == BASIC_ACK:
                    channel.on_ack(payload)
                else:
                    self._channel_method(channel, self._decode(payload))
            except BrokerError as err:
                self._broker_error(channel, err, payload)
            except ChannelClose as err:
                self._close_channel(channel, err)
            return
        if ftype in (FRAME_HEADER, FRAME_BODY):
            if self._state == CLOSING:
                return
            channel = self.channels.get(number) if self._state == OPEN else None
            if channel is None:
                raise ConnectionClose(CHANNEL_ERROR if self._state == OPEN else UNEXPECTED_FRAME,
                                      f"content frame on channel {number}, which is not open")
            if channel.closing:
                return
            try:
                if ftype == FRAME_HEADER:
                    channel.on_content_header(payload)
                else:
                    channel.on_content_body(payload)
            except BrokerError as err:
                self._broker_error(channel, err, b"\x00\x3c\x00\x28")
            return
        if ftype == FRAME_HEARTBEAT:
            if number != 0:
                raise ConnectionClose(FRAME_ERROR, "heartbeat frame on a non-zero channel")
            return
        raise ConnectionClose(FRAME_ERROR, f"unknown frame type {ftype}")

    def _decode(self, payload: bytes) -> PamqpMethod:
        try:
            return frames.decode_method(payload)
        except frames.FrameSyntaxError as err:
            raise ConnectionClose(SYNTAX_ERROR, str(err), *_ids(payload)) from None
        except LookupError as err:
            raise ConnectionClose(NOT_IMPLEMENTED, str(err), *_ids(payload)) from None

    # -- connection class (channel 0) -------------------------------------------------------

    def _connection_method(self, payload: bytes) -> None:
        method = self._decode(payload)
        state = self._state
        if state == CLOSING:
            if isinstance(method, commands.Connection.Close):
                self.send(frames.method_frame(0, commands.Connection.CloseOk()))
                self._flush()
                self._finish()
            elif isinstance(method, commands.Connection.CloseOk):
                self._finish()
            return
        expected = {
            AWAIT_START_OK: commands.Connection.StartOk,
            AWAIT_TUNE_OK: commands.Connection.TuneOk,
            AWAIT_OPEN: commands.Connection.Open,
        }.get(state)
        if expected is not None:
            if not isinstance(method, expected):
                raise ConnectionClose(COMMAND_INVALID,
                                      f"expected {expected.name}, got {method.name}",
                                      *_ids(payload))
            getattr(self, f"_on_{expected.__name__.lower()}")(method)
            return
        if isinstance(method, commands.Connection.Close):
            self.send(frames.method_frame(0, commands.Connection.CloseOk()))
            self._flush()
            self._finish()
        elif isinstance(method, commands.Connection.CloseOk):
            self._finish()
        else:
            raise ConnectionClose(COMMAND_INVALID, f"unexpected method {method.name}",
                                  *_ids(payload))

    def _on_startok(self, m: commands.Connection.StartOk) -> None:
        self.client_properties = dict(m.client_properties or {})
        user, password = self._credentials(m.mechanism, m.response)
        settings = self.server.settings
        if user != settings.default_user or password != settings.default_password:
            metrics.CONNECTION_ERRORS.labels("amqp", "auth").inc()
            raise ConnectionClose(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {m.mechanism}.",
            )
        self.user = user
        self._state = AWAIT_TUNE_OK
        self.send(frames.method_frame(0, commands.Connection.Tune(
            channel_max=self.channel_max, frame_max=self.frame_max,
            heartbeat=settings.heartbeat_s,
        )))

    def _credentials(self, mechanism: str, response: Any) -> tuple[str, str]:
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")
        if mechanism == "PLAIN":
            parts = raw.split(b"\x00")
            if len(parts) != 3:
                raise ConnectionClose(ACCESS_REFUSED, "malformed PLAIN response")
            return parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
        if mechanism == "AMQPLAIN":
            try:
                _used, table = decode.field_table(struct.pack(">I", len(raw)) + raw)
            except (ValueError, struct.error, IndexError, UnicodeDecodeError):
                raise ConnectionClose(ACCESS_REFUSED, "malformed AMQPLAIN response") from None
            return str(table.get("LOGIN", "")), str(table.get("PASSWORD", ""))
        raise ConnectionClose(ACCESS_REFUSED, f"unsupported authentication mechanism "
                              f"'{mechanism}'; offered PLAIN AMQPLAIN")

    def _on_tuneok(self, m: commands.Connection.TuneOk) -> None:
        # RabbitMQ's rule: the client may lower the offered limits, never raise them or
        # ask for "unlimited" (0) when the server has a limit.
        for name, value, server_max, minimum in (
            ("frame_max", m.frame_max, self.frame_max, FRAME_MIN_SIZE),
            ("channel_max", m.channel_max, self.channel_max, 1),
        ):
            if value == 0 or value > server_max:
                raise ConnectionClose(NOT_ALLOWED, f"negotiated {name} = {value} is higher "
                                      f"than the maximum allowed value ({server_max})")
            if value < minimum:
                raise ConnectionClose(NOT_ALLOWED, f"negotiated {name} = {value} is lower "
                                      f"than the minimum allowed value ({minimum})")
        self.frame_max = m.frame_max
        self._max_payload = m.frame_max - FRAME_OVERHEAD
        self.channel_max = m.channel_max
        self.heartbeat = m.heartbeat
        self._state = AWAIT_OPEN
        if self.heartbeat:
            self._timers.append(self._loop.call_later(self.heartbeat / 2, self._heartbeat_tick))

    def _on_open(self, m: commands.Connection.Open) -> None:
        vhost = self.server.vhosts.get(m.virtual_host)
        if vhost is None:
            raise ConnectionClose(NOT_ALLOWED, f"vhost {m.virtual_host} not found")
        self.vhost = vhost
        self._state = OPEN
        self.send(frames.method_frame(0, commands.Connection.OpenOk()))

    # -- resource alarms -------------------------------------------------------------------

    def block(self) -> None:
        self.blocked = True
        self._update_reading()
        if self.client_capability("connection.blocked"):
            self._blocked_sent = True
            self.send(frames.method_frame(0, commands.Connection.Blocked(
                reason=self.server.blocked_reason)))
        log.info("AMQP connection blocked by a resource alarm", extra={"fields": {
            "peer": self.peer, "reason": self.server.blocked_reason}})

    def unblock(self) -> None:
        """Every alarm cleared: say so (if we said Blocked), then parse what waited."""
        if not self.blocked or self._state == CLOSED:
            return
        self.blocked = False
        if self._blocked_sent:
            self._blocked_sent = False
            self.send(frames.method_frame(0, commands.Connection.Unblocked()))
        self._update_reading()
        # Parse what waited; this also restarts the missed-heartbeat clock, which was
        # stopped while we did not read (as in RabbitMQ).
        self.data_received(b"")

    def client_capability(self, name: str) -> bool:
        caps = self.client_properties.get("capabilities") or {}
        return bool(caps.get(name)) if isinstance(caps, dict) else False

    # -- channels ---------------------------------------------------------------------------

    def _channel_open(self, number: int, payload: bytes) -> None:
        index = _METHOD_INDEX.unpack_from(payload)[0] if len(payload) >= 4 else -1
        if index != _CHANNEL_OPEN:
            raise ConnectionClose(CHANNEL_ERROR, f"expected 'channel.open' on channel {number}",
                                  *_ids(payload))
        if number > self.channel_max:
            raise ConnectionClose(NOT_ALLOWED, f"channel {number} is above the negotiated "
                                  f"channel_max ({self.channel_max})", *_ids(payload))
        self.channels[number] = Channel(self, number, self.vhost)
        self.send(frames.method_frame(number, commands.Channel.OpenOk()))

    def _channel_method(self, channel: Channel, method: PamqpMethod) -> None:
        if isinstance(method, commands.Channel.Close):
            self._confirm_now(channel)
            channel.close()
            self._drop_channel(channel)
            self.send(frames.method_frame(channel.number, commands.Channel.CloseOk()))
        elif isinstance(method, commands.Channel.Open):
            raise ConnectionClose(CHANNEL_ERROR, "second 'channel.open' seen",
                                  *divmod(method.index, 0x10000))
        elif isinstance(method, commands.Channel.CloseOk):
            raise ConnectionClose(COMMAND_INVALID, "unexpected channel.close-ok",
                                  *divmod(method.index, 0x10000))
        else:
            channel.on_method(method)

    def _closing_channel_method(self, channel: Channel, payload: bytes) -> None:
        """After we sent Channel.Close, only Close and CloseOk mean anything (spec)."""
        index = _METHOD_INDEX.unpack_from(payload)[0] if len(payload) >= 4 else -1
        if index == _CHANNEL_CLOSE_OK:
            self._drop_channel(channel)
        elif index == _CHANNEL_CLOSE:
            self._drop_channel(channel)
            self.send(frames.method_frame(channel.number, commands.Channel.CloseOk()))

    def _drop_channel(self, channel: Channel) -> None:
        if self.channels.pop(channel.number, None) is not None:
            channel.released()

    def _broker_error(self, channel: Channel, err: BrokerError, payload: bytes) -> None:
        code = CHANNEL_ERROR_CODES.get(type(err))
        if code is not None:
            self._close_channel(channel, ChannelClose(code, err.text, *_ids(payload)))
            return
        raise ConnectionClose(CONNECTION_ERROR_CODES.get(type(err), INTERNAL_ERROR), err.text,
                              *_ids(payload))

    def _close_channel(self, channel: Channel, err: AmqpError) -> None:
        self._confirm_now(channel)
        self.send(frames.method_frame(channel.number, commands.Channel.Close(
            reply_code=err.code, reply_text=reply_text(err.code, err.text),
            class_id=err.class_id, method_id=err.method_id,
        )))
        channel.close()

    # -- output -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_many(self, parts: list[bytes]) -> None:
        self._out += parts
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def confirms_pending(self, channel: Channel) -> None:
        if channel not in self._confirming:
            self._confirming.append(channel)

    def _confirm_now(self, channel: Channel) -> None:
        if channel in self._confirming:
            self._confirming.remove(channel)
            channel.emit_confirms()

    def _flush(self) -> None:
        self._flush_scheduled = False
        # The commit point: messages published so far reach their queue logs (and with
        # fsync: always, the disk) before any confirm or delivery of them is written.
        stored = self.server.vhosts.commit()
        if self._confirming:
            confirming, self._confirming = self._confirming, []
            for channel in confirming:
                channel.emit_confirms(stored)
        out = self._out
        if out:
            self._out = []
            if self.transport is not None and self._state != CLOSED:
                # One join beats writelines here: uvloop walks a list of small pieces slowly.
                self.transport.write(b"".join(out))
                self._last_send = self._loop.time()

    # -- closing ----------------------------------------------------------------------------

    def _close_connection(self, err: AmqpError) -> None:
        if self._state >= CLOSING:
            return
        metrics.CONNECTION_ERRORS.labels("amqp", str(err.code)).inc()
        log.info("closing AMQP connection", extra={"fields": {
            "peer": self.peer, "code": err.code, "reason": err.text}})
        for channel in list(self.channels.values()):
            self._confirm_now(channel)
        self._release_channels()
        self.send(frames.method_frame(0, commands.Connection.Close(
            reply_code=err.code, reply_text=reply_text(err.code, err.text),
            class_id=err.class_id, method_id=err.method_id,
        )))
        self._state = CLOSING
        self._timers.append(self._loop.call_later(CLOSE_OK_TIMEOUT_S, self._finish))

    def _release_channels(self) -> None:
        channels = list(self.channels.values())
        self.channels.clear()
        for channel in channels:
            channel.close()
            channel.released()

    def _finish(self) -> None:
        """Close the socket after what is queued has been written."""
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _handshake_timeout(self) -> None:
        if self._state < OPEN and self.transport is not None:
            metrics.CONNECTION_ERRORS.labels("amqp", "handshake_timeout").inc()
            self.transport.abort()

    def _heartbeat_tick(self) -> None:
        if self._state == CLOSED or self.transport is None:
            return
        now = self._loop.time()
        if self.blocked:
            self._last_recv = now  # not reading is our doing, not a sign of a dead peer
        elif now - self._last_recv > 2 * self.heartbeat:
            metrics.CONNECTION_ERRORS.labels("amqp", "missed_heartbeats").inc()
            log.info("missed heartbeats from client, closing", extra={"fields": {
                "peer": self.peer, "timeout_s": 2 * self.heartbeat}})
            self.transport.abort()
            return
        if now - self._last_send >= self.heartbeat / 2:
            self.send(frames.HEARTBEAT_FRAME)
        self._timers = [t for t in self._timers if not t.cancelled()][-4:]
        self._timers.append(self._loop.call_later(self.heartbeat / 2, self._heartbeat_tick))

    def close_gracefully(self) -> None:
        """Broker shutdown: tell the client why, then close the socket.

        Once closing, frames still arriving are ignored, so nothing is published after
        this; the flush runs the commit point and confirms what was already taken.
        """
        if self._state == OPEN:
            self._close_connection(ConnectionClose(CONNECTION_FORCED, "broker shutdown"))
        self._finish()


def _ids(payload: bytes) -> tuple[int, int]:
    if len(payload) >= 4:
        return struct.unpack_from(">HH", payload)  # type: ignore[return-value]
    return 0, 0

