# Over 500 lines: the frame loop, its handlers and the dispatch tables read as one (client.cr).
"""One AMQP 0-9-1 connection: an asyncio.Protocol that parses frames in data_received.

Shape: bytes accumulate in one bytearray; every complete frame is handled in order;
replies (and deliveries pushed to this connection by other connections' publishes)
collect in a list that is written with one ``writelines`` per read batch or, for
cross-connection deliveries, once per event-loop turn. Publisher confirms are
folded into one multiple-ack per channel per batch.

Dispatch, as LavinMQ's ``client.cr`` does it from one ``case``: every method a client
may send is a row in the tables at the end of this module, one table per AMQP class,
naming its handler. Handlers of the connection and channel classes are
``on_<class>_<method>`` methods of this class (the connection owns its channels); the
other classes' are ``on_<class>_<method>`` methods of ``Channel``. The fast path is
Basic.Publish with the content header and body frames that follow it, and Basic.Ack:
they are taken from the raw payload (``frames.parse_*``) before anything is decoded;
every other method is decoded by pamqp first.

Back-pressure, which bounds what a client that does not read can make the broker hold
(``network.write_buffer_high_bytes``, as RabbitMQ's queues stop sending to a channel
with too many unsent messages): when the transport's write buffer passes the high-water
mark the connection stops reading (a client that does not read replies cannot keep
publishing) and its consumers report "not ready", so undelivered messages stay in their
queues. Deliveries made within one event-loop turn are counted too, so one dispatch
cannot pile a whole queue into the pending write.

A connection that stops in the middle of a frame, or of a message's content, is closed
after ``amqp.incomplete_frame_timeout_ms`` whatever its heartbeat (a heartbeat of 0
would otherwise let it hold its partial frame forever).

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
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from pamqp import commands
from pamqp.base import Frame as PamqpMethod

from portask import metrics
from portask.broker.amqp.errors import BrokerError
from portask.broker.clients import ConnectionView
from portask.broker.user_store import FULL, Permission
from portask.listeners import configure_accepted
from portask.protocols.amqp import faults as amqp_faults
from portask.protocols.amqp import frames, octets
from portask.protocols.amqp.channel import EXPECTED_METHOD, Channel
from portask.protocols.amqp.constants import (
    ACCESS_REFUSED,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    CHANNEL_ERROR_CODES,
    CLASS_BASIC,
    CLASS_CHANNEL,
    CLASS_CONFIRM,
    CLASS_CONNECTION,
    CLASS_EXCHANGE,
    CLASS_QUEUE,
    CLASS_TX,
    COMMAND_INVALID,
    CONNECTION_ERROR_CODES,
    CONNECTION_FORCED,
    FRAME_BODY,
    FRAME_END,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PROTOCOL_HEADER,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    reply_text,
)
from portask.protocols.amqp.context import AmqpContext
from portask.protocols.amqp.errors import AmqpError, ChannelClose, ConnectionClose
from portask.protocols.amqp.handshake import check_tune_ok, connection_start, credentials
from portask.tls import peer_common_name

log = logging.getLogger("portask.amqp")

AWAIT_HEADER, AWAIT_START_OK, AWAIT_TUNE_OK, AWAIT_OPEN, OPEN, CLOSING, CLOSED = range(7)
HANDSHAKE_TIMEOUT_S = 10.0
CLOSE_OK_TIMEOUT_S = 3.0
_FRAME_HEAD = frames.FRAME_HEAD
_CONTENT_FRAMES = frozenset((FRAME_HEADER, FRAME_BODY))
_METHOD_INDEX = struct.Struct(">I")
_BASIC_PUBLISH_ID = _METHOD_INDEX.pack(commands.Basic.Publish.index)
# A content header frame's head and fixed fields: type, channel, size, class, weight,
# body size.
_HEADER_FRAME = struct.Struct(">BHIHHQ")
_CHANNEL_OPEN = commands.Channel.Open.index
_CHANNEL_CLOSE = commands.Channel.Close.index
_CHANNEL_CLOSE_OK = commands.Channel.CloseOk.index
SECOND_OPEN = "second 'channel.open' seen"


class AmqpConnection(asyncio.Protocol):
    def __init__(self, context: AmqpContext) -> None:
        self.context = context
        self._faults = context.faults
        self._requests = context.requests
        settings = context.settings
        self._loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self._state = AWAIT_HEADER
        self._header = b""
        self._buf = bytearray()
        # How long _buf must grow before the frame it holds the start of can be complete.
        self._need = 0
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._confirming: list[Channel] = []
        self.channels: dict[int, Channel] = {}
        self.frame_max = int(settings.frame_max)
        # RabbitMQ lets a frame's payload reach frame_max (the 8 bytes of framing as
        # slack), because clients get that off by 8; some send body frames that size.
        self._max_payload = self.frame_max
        self.channel_max = settings.channel_max
        self.heartbeat = 0
        self.max_message_bytes = int(settings.max_message_bytes)
        # Deliveries stop while set: the transport is paused or this turn queued enough.
        self.writing_paused = False
        self._transport_paused = False
        # What is left of the send budget (network.write_buffer_high_bytes) after the
        # transport's buffer at the last write and the deliveries queued in _out since;
        # Channel.deliver subtracts.
        self._queued_limit = int(context.network.write_buffer_high_bytes)
        self.queued_room = self._queued_limit
        self._incomplete_s = settings.incomplete_frame_timeout_ms / 1000
        self._watchdog: asyncio.TimerHandle | None = None
        self.vhost: Any = None
        self.user = ""
        self.client_properties: dict[str, Any] = {}
        self._last_recv = 0.0
        self._last_send = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._broken_framing = False
        self.peer = ""
        # The CN of a verified client certificate (AMQPS with tls.client_auth), for EXTERNAL.
        self.tls_common_name: str | None = None
        # The user's permissions on the vhost; None when it may do everything.
        self.permission: Permission | None = None
        # A resource alarm is set: the next publish content frame blocks this connection.
        self.alarm = bool(context.alarms)
        # Not read from because of an alarm; whether Connection.Blocked was sent.
        self.blocked = False
        self._blocked_sent = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        high = int(self.context.network.write_buffer_high_bytes)
        self.transport.set_write_buffer_limits(high=high, low=high // 4)  # type: ignore[union-attr]
        configure_accepted(transport, self.context.network)
        self.peer = str(transport.get_extra_info("peername"))
        self.tls_common_name = peer_common_name(transport)
        self._sockname = transport.get_extra_info("sockname")
        self._peername = transport.get_extra_info("peername")
        self.connected_at_ms = int(time.time() * 1000)
        metrics.CONNECTIONS_TOTAL.labels("amqp").inc()
        metrics.CONNECTIONS_ACTIVE.labels("amqp").inc()
        self.context.connections.add(self)
        self.context.clients.opened(self)
        self._last_recv = self._last_send = self._loop.time()
        self._timers.append(self._loop.call_later(HANDSHAKE_TIMEOUT_S, self._handshake_timeout))
        self._watchdog = self._loop.call_later(self._incomplete_s, self._check_stalled)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == CLOSED:
            return
        self._state = CLOSED
        self.context.connections.discard(self)
        self.context.clients.closed(self)
        metrics.CONNECTIONS_ACTIVE.labels("amqp").dec()
        for timer in self._timers:
            timer.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._release_channels()
        if self.vhost is not None:
            self.vhost.connection_closed(self)
        self.transport = None

    def pause_writing(self) -> None:
        self._transport_paused = self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._transport_paused = self.writing_paused = False
        self._update_reading()
        self._dispatch_consumers()

    def _dispatch_consumers(self) -> None:
        for channel in list(self.channels.values()):
            channel.dispatch_all()

    def _update_reading(self) -> None:
        """Read unless the client is not reading our replies or an alarm blocks it."""
        transport = self.transport
        if transport is None or self._state == CLOSED:
            return
        if self._transport_paused or self.blocked:
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
        self.send(frames.method_frame(0, connection_start(self.tls_common_name is not None)))
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
        # Frames are sliced out of one immutable bytes object: one copy per frame. Only a
        # partial frame at the end of a read waits in _buf (appended to until complete,
        # so a large frame arriving in many reads is copied once). When the next read
        # completes it, only that frame is joined and taken; the rest of the read is
        # parsed in place, not copied whole twice (a read of a fast publisher is
        # hundreds of KiB, and it nearly always ends inside a frame).
        buf = self._buf
        start = 0
        if buf:
            missing = self._need - len(buf)
            if missing > len(data):
                buf += data
                return
            if self._need > 7 and missing > 0:  # _buf holds exactly one frame's start
                buf += memoryview(data)[:missing]
                start = missing
                first = bytes(buf)
                buf.clear()
                if not self._take(first, 0) or self._state == CLOSED:
                    return
                if self.blocked:  # an alarm: the rest waits, unread, for unblock
                    buf += memoryview(data)[start:]
                    return
            else:  # a frame head cut short, or frames left by an alarm's block
                buf += data
                data = bytes(buf)
                buf.clear()
        self._take(data, start)

    def _take(self, data: bytes, start: int) -> bool:
        """Every complete frame in ``data`` from ``start``; the rest waits in _buf.
        False when a frame's error closed the connection: what follows is not read."""
        n = len(data)
        try:
            pos, self._need = self._frames(data, n, start)
        except ConnectionClose as err:
            if err.code == FRAME_ERROR:
                self._broken_framing = True  # the stream is out of sync: read no further
            self._need = 0
            self._close_connection(err)
            return False
        if pos < n:
            self._buf += memoryview(data)[pos:]
        return not self._broken_framing

    # -- frames to handlers -----------------------------------------------------------------

    def _frames(self, data: bytes, n: int, pos: int) -> tuple[int, int]:
        """Take every complete frame in ``data`` from ``pos``: (where the rest starts, the least
        length the rest must reach to hold its next frame).

        A whole publish (Basic.Publish, content header, one body frame: what a publisher
        sends) goes to ``_whole_publish`` in one step; an open channel's other method
        frames go to ``_channel_method``, its content frames to ``_content_frame``, every
        other frame to ``_other_frame``."""
        unpack = _FRAME_HEAD.unpack_from
        channels = self.channels  # only an open connection has channels
        # The control API's hooks see each frame: no whole publishes while they are on.
        whole = not self._faults.amqp_hooked and not self._requests.enabled
        while n - pos >= 7:
            ftype, number, size = unpack(data, pos)
            if size > self._max_payload:
                raise _too_large(ftype, size, self.frame_max)
            end = pos + 7 + size
            if end >= n:
                return pos, end + 1 - pos
            if data[end] != FRAME_END:
                raise _bad_frame_end(ftype, data[pos + 7:end], data[end])
            payload = data[pos + 7 : end]
            pos = end + 1
            channel = channels.get(number)
            if channel is None or channel.closing:
                self._other_frame(ftype, number, channel, payload)
            elif ftype == FRAME_METHOD:
                if (whole and n - pos >= 19 and not self.alarm
                        and data.startswith(_BASIC_PUBLISH_ID, end - size, end)):
                    taken = self._whole_publish(channel, number, payload, data, pos, n)
                    if taken != pos:
                        pos = taken
                        ftype = FRAME_BODY  # for the alarm's rule below
                else:
                    self._channel_method(channel, payload)
            elif ftype in _CONTENT_FRAMES:
                self._content_frame(channel, ftype, payload)
            else:
                self._other_frame(ftype, number, channel, payload)
            if self._state == CLOSED or self._broken_framing:
                return n, 0
            # RabbitMQ's rule: publishing during an alarm blocks the connection once
            # this content frame is taken; what follows stays unread.
            if self.alarm and ftype in _CONTENT_FRAMES and self._state == OPEN:
                self.block()
                return pos, 0
        return pos, 7

    def _content_frame(self, channel: Channel, ftype: int, payload: bytes) -> None:
        """A content header or body frame on an open channel, taken on its own: a body
        in several frames, a publish cut by the end of a read, or while the control
        API's hooks or an alarm apply (``_whole_publish`` takes the rest)."""
        try:
            if ftype == FRAME_BODY:
                channel.on_content_body(payload)
            elif len(payload) < frames.CONTENT_HEADER_MIN:
                raise _unknown_frame(ftype, payload)
            else:
                if self._requests.enabled:  # the request log: the publish's size
                    amqp_faults.content_header(channel, payload)
                channel.on_content_header(payload)
        except BrokerError as err:
            self._broker_error(channel, err, CLASS_BASIC, BASIC_PUBLISH)
        except frames.FrameSyntaxError as err:
            raise ConnectionClose(SYNTAX_ERROR, str(err), CLASS_BASIC, BASIC_PUBLISH) from None

    def _whole_publish(self, channel: Channel, number: int, payload: bytes, data: bytes,
                       pos: int, n: int) -> int:
        """Basic.Publish ``payload`` and, when ``data`` holds them from ``pos`` on, its
        content header and one body frame (well-formed and in bounds), taken in one step
        rather than three trips through ``_frames``: where the frames after these start.
        The publishes that follow repeating its frames byte for byte up to the body (what
        a publisher sends over and over) are taken with it, as one run. Anything else (a
        body in several frames, a frame that is cut or wrong) goes frame by frame from
        the method on, with the same answers."""
        start = pos - len(payload) - 8  # the method frame's
        repeat = channel.repeat
        if (repeat is not None and data.startswith(repeat[0], start)
                and (most := channel.repeatable())):
            head, body_size = repeat
            skip = len(head)
            step = skip + body_size + 1
            bodies = []
            end = start
            last = min(n, start + most * step)  # the run's end at the most
            while (end + step <= last and data.startswith(head, end)
                   and data[end + step - 1] == FRAME_END):
                bodies.append(data[end + skip : end + step - 1])
                end += step
            if bodies:
                try:
                    # Fewer taken: an alarm went off, and the frame loop blocks here.
                    end = start + channel.publish_bodies(bodies) * step
                except BrokerError as err:
                    # The channel is closing: the rest of the run would be dropped.
                    self._broker_error(channel, err, CLASS_BASIC, BASIC_PUBLISH)
                except frames.FrameSyntaxError as err:
                    raise ConnectionClose(SYNTAX_ERROR, str(err), CLASS_BASIC,
                                          BASIC_PUBLISH) from None
                return end
        htype, hnum, hsize, _class, _weight, body_size = _HEADER_FRAME.unpack_from(data, pos)
        hend = pos + 7 + hsize
        bstart = hend + 8
        bend = bstart + body_size
        if (htype != FRAME_HEADER or hnum != number or bend >= n
                or not frames.CONTENT_HEADER_MIN <= hsize <= self._max_payload
                or not 0 < body_size <= self._max_payload
                or data[hend] != FRAME_END or data[bend] != FRAME_END
                or _FRAME_HEAD.unpack_from(data, hend + 1) != (FRAME_BODY, number, body_size)
                or channel.awaiting_content):
            self._channel_method(channel, payload)
            return pos
        try:
            channel.on_basic_publish(payload)
        except BrokerError as err:
            self._broker_error(channel, err, CLASS_BASIC, BASIC_PUBLISH)
            return pos  # the content frames go to the closing channel, which drops them
        except ChannelClose as err:
            self._close_channel(channel, err)
            return pos
        except frames.FrameSyntaxError as err:
            raise _undecodable(payload, err) from None
        # The content frames' errors are answered as _content_frame answers them.
        try:
            channel.on_content_header(data[pos + 7 : hend], data[bstart:bend])
        except BrokerError as err:
            self._broker_error(channel, err, CLASS_BASIC, BASIC_PUBLISH)
        except frames.FrameSyntaxError as err:
            raise ConnectionClose(SYNTAX_ERROR, str(err), CLASS_BASIC, BASIC_PUBLISH) from None
        else:
            channel.remember_whole(data[start:bstart])
        return bend + 1

    def _channel_method(self, channel: Channel, payload: bytes) -> None:
        """A method on an open channel. Basic.Publish and Basic.Ack, most of what
        arrives, go to their handlers with the raw payload (``_FAST_PATH``)."""
        if len(payload) < 4:
            raise _unknown_frame(FRAME_METHOD, payload)
        if channel.awaiting_content:
            raise ConnectionClose(UNEXPECTED_FRAME, channel.content_expected(),
                                  CLASS_BASIC, BASIC_PUBLISH)
        index = _METHOD_INDEX.unpack_from(payload)[0]
        try:
            if self._faults.amqp_hooked:  # the control API: one read while unused
                amqp_faults.hooked_method(self, self._faults, self._requests, channel,
                                          index, payload)
            else:
                fast = _FAST_PATH.get(index)
                if fast is not None:
                    fast(channel, payload)
                else:
                    self._decoded_channel_method(channel, index, payload)
        except BrokerError as err:
            self._broker_error(channel, err, *_ids(payload))
        except ChannelClose as err:
            self._close_channel(channel, err)
        except frames.FrameSyntaxError as err:  # the fast-path parsers' refusals
            raise _undecodable(payload, err) from None

    def dispatch_method(self, channel: Channel, index: int, payload: bytes) -> None:
        """A channel's method to its handler (what ``_channel_method`` does inline when
        the control API's hooks are off)."""
        fast = _FAST_PATH.get(index)
        if fast is not None:
            fast(channel, payload)
        else:
            self._decoded_channel_method(channel, index, payload)

    def _other_frame(self, ftype: int, number: int, channel: Channel | None,
                     payload: bytes) -> None:
        """Every frame but an open channel's method and content frames: heartbeats, the
        connection class on channel 0, and a channel's lifecycle (not open, or closing).
        The codes and texts are RabbitMQ's reader's (rabbit_reader:handle_frame)."""
        if self._state == CLOSING:
            # Once we sent Connection.Close only channel 0's close and close-ok count.
            if ftype == FRAME_METHOD and number == 0 and len(payload) >= 4:
                self._connection_method(payload)
            return
        if (ftype not in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT)
                or (ftype == FRAME_HEARTBEAT and payload)
                or (ftype == FRAME_METHOD and len(payload) < 4)
                or (ftype == FRAME_HEADER and len(payload) < frames.CONTENT_HEADER_MIN)):
            raise _unknown_frame(ftype, payload)
        if number == 0:
            if ftype == FRAME_METHOD:
                self._connection_method(payload)
            elif ftype != FRAME_HEARTBEAT:
                raise ConnectionClose(UNEXPECTED_FRAME, octets.frame_octets(ftype, payload))
        elif self._state != OPEN or ftype == FRAME_HEARTBEAT:
            raise ConnectionClose(UNEXPECTED_FRAME, octets.frame_octets(ftype, payload))
        elif ftype == FRAME_METHOD:
            self._channel_lifecycle_method(number, channel, payload)
        elif channel is None:
            raise ConnectionClose(UNEXPECTED_FRAME, EXPECTED_METHOD)
        # else content for a channel we are closing: dropped

    def _channel_lifecycle_method(self, number: int, channel: Channel | None,
                                  payload: bytes) -> None:
        """A method on a channel that is not open (only Channel.Open opens it) or that we
        are closing (rabbit_channel's ``closing`` state: Close gets Close-Ok, Close-Ok
        releases the number, a second Open is an error, the rest is dropped). Like
        RabbitMQ's reader we decode them all and refuse malformed ones (501)."""
        index = self._decode(payload).index
        if channel is None:
            if index != _CHANNEL_OPEN:
                raise ConnectionClose(CHANNEL_ERROR, "expected 'channel.open'", *_ids(payload))
            self.on_channel_open(number, payload)
        elif index == _CHANNEL_OPEN:
            raise ConnectionClose(CHANNEL_ERROR, SECOND_OPEN, *_split(index))
        elif index == _CHANNEL_CLOSE:
            self.send(frames.method_frame(number, commands.Channel.CloseOk()))
        elif index == _CHANNEL_CLOSE_OK:
            self._drop_channel(channel)

    def _decoded_channel_method(self, channel: Channel, index: int, payload: bytes) -> None:
        method = self._decode(payload)
        own = _CHANNEL_CLASS_HANDLERS.get(index)
        if own is not None:
            own(self, channel, method)
            return
        handler = _CHANNEL_HANDLERS.get(index)
        if handler is None:  # the server's to send (Basic.Deliver ...), or Close-Ok unasked
            raise ConnectionClose(COMMAND_INVALID, "unimplemented method", *_ids(payload))
        handler(channel, method)

    def _decode(self, payload: bytes) -> PamqpMethod:
        try:
            return frames.decode_method(payload)
        except frames.FrameSyntaxError as err:
            raise _undecodable(payload, err) from None
        except LookupError as err:
            # RabbitMQ drops the connection without a Close here; 540 says why.
            raise ConnectionClose(NOT_IMPLEMENTED, str(err), *_ids(payload)) from None

    # -- connection class (channel 0) -------------------------------------------------------

    def _connection_method(self, payload: bytes) -> None:
        method = self._decode(payload)
        state = self._state
        handler = CONNECTION_METHODS.get(state, {}).get(type(method))
        if handler is not None:
            handler(self, method)
        elif state != CLOSING:  # once we sent Close, anything but close / close-ok is dropped
            raise ConnectionClose(CHANNEL_ERROR, f"unexpected method in connection state "
                                  f"{_STATE_NAMES[state]}", *_ids(payload))

    def on_connection_start_ok(self, m: commands.Connection.StartOk) -> None:
        self.client_properties = dict(m.client_properties or {})
        if m.mechanism == "EXTERNAL" and self.tls_common_name is not None:
            # The certificate's CN names the user; the TLS handshake verified it.
            user, accepted = self.tls_common_name, self.context.accepts_user(
                self.tls_common_name)
        else:
            user, password = credentials(m.mechanism, m.response)
            accepted = self.context.accepts_login(user, password)
        if not accepted:
            metrics.CONNECTION_ERRORS.labels("amqp", "auth").inc()
            raise ConnectionClose(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {m.mechanism}.",
            )
        self.user = user
        self._state = AWAIT_TUNE_OK
        self.send(frames.method_frame(0, commands.Connection.Tune(
            channel_max=self.channel_max, frame_max=self.frame_max,
            heartbeat=self.context.settings.heartbeat_s,
        )))

    def on_connection_tune_ok(self, m: commands.Connection.TuneOk) -> None:
        check_tune_ok(m, self.frame_max, self.channel_max)
        self.frame_max = m.frame_max
        self._max_payload = m.frame_max
        self.channel_max = m.channel_max
        self.heartbeat = m.heartbeat
        self._state = AWAIT_OPEN
        if self.heartbeat:
            self._timers.append(self._loop.call_later(self.heartbeat / 2, self._heartbeat_tick))

    def on_connection_open(self, m: commands.Connection.Open) -> None:
        vhost = self.context.vhosts.get(m.virtual_host)
        if vhost is None:
            raise ConnectionClose(NOT_ALLOWED, f"vhost {m.virtual_host} not found")
        permission = self.context.permission(self.user, vhost.name)
        if permission is None:
            raise ConnectionClose(NOT_ALLOWED, f"access to vhost '{vhost.name}' refused for "
                                  f"user '{self.user}'")
        # None for users allowed everything: the channels then check nothing at all.
        self.permission = None if permission is FULL else permission
        self.vhost = vhost
        self._state = OPEN
        self.send(frames.method_frame(0, commands.Connection.OpenOk()))

    def on_connection_close(self, m: commands.Connection.Close) -> None:
        """The client closes, or answers our Close with its own: Close-Ok, then the socket."""
        self.send(frames.method_frame(0, commands.Connection.CloseOk()))
        self._flush()
        self._finish()

    def on_connection_close_crossing(self, m: commands.Connection.Close) -> None:
        """The client's Close crossed ours: Close-Ok, and we still wait for its Close-Ok
        (RabbitMQ keeps the socket open until then)."""
        self.send(frames.method_frame(0, commands.Connection.CloseOk()))

    def on_connection_close_ok(self, m: commands.Connection.CloseOk) -> None:
        self._finish()

    def on_connection_update_secret(self, m: commands.Connection.UpdateSecret) -> None:
        """RabbitMQ's extension for refreshing credentials (OAuth tokens). Logins are
        checked once, at Start-Ok, against the configured users, so a new secret has
        nothing to re-check: accepted, as RabbitMQ's internal backend accepts it."""
        log.info("client updated its secret", extra={"fields": {
            "peer": self.peer, "user": self.user, "reason": m.reason}})
        self.send(frames.method_frame(0, commands.Connection.UpdateSecretOk()))

    # -- channel class: the connection opens, closes and forgets its channels ---------------

    def on_channel_open(self, number: int, payload: bytes) -> None:
        """Channel.Open on a channel that is not open (decoded already; its one field is
        reserved). Like RabbitMQ, channel_max limits how many channels are open at once
        (closing ones count until their Close-Ok), not which numbers they have."""
        if self.channel_max and len(self.channels) >= self.channel_max:
            raise ConnectionClose(NOT_ALLOWED, f"number of channels opened "
                                  f"({len(self.channels)}) has reached the negotiated "
                                  f"channel_max ({self.channel_max})")
        self.channels[number] = Channel(self, number, self.vhost)
        self.send(frames.method_frame(number, commands.Channel.OpenOk()))

    def on_channel_open_again(self, channel: Channel, m: commands.Channel.Open) -> None:
        raise ConnectionClose(CHANNEL_ERROR, SECOND_OPEN, *_split(m.index))

    def on_channel_flow(self, channel: Channel, m: commands.Channel.Flow) -> None:
        """RabbitMQ 3.x serves only flow(active=true), and closes the connection with 540
        on active=false; so does Portask, so no client learns to rely on it here."""
        if not m.active:
            raise ConnectionClose(NOT_IMPLEMENTED, "active=false", *_split(m.index))
        channel.reply(commands.Channel.FlowOk(active=True))

    def on_channel_close(self, channel: Channel, m: commands.Channel.Close) -> None:
        """The client closes an open channel: what it holds is settled, then Close-Ok."""
        self._confirm_now(channel)
        channel.close()
        self._drop_channel(channel)
        self.send(frames.method_frame(channel.number, commands.Channel.CloseOk()))

    def _drop_channel(self, channel: Channel) -> None:
        if self.channels.pop(channel.number, None) is not None:
            channel.released()

    def _broker_error(self, channel: Channel, err: BrokerError, class_id: int,
                      method_id: int) -> None:
        code = CHANNEL_ERROR_CODES.get(type(err))
        if code is not None:
            self._close_channel(channel, ChannelClose(code, err.text, class_id, method_id))
            return
        raise ConnectionClose(CONNECTION_ERROR_CODES.get(type(err), INTERNAL_ERROR), err.text,
                              class_id, method_id)

    def _close_channel(self, channel: Channel, err: AmqpError) -> None:
        self._confirm_now(channel)
        self.send(frames.method_frame(channel.number, commands.Channel.Close(
            reply_code=err.code, reply_text=reply_text(err.code, err.text),
            class_id=err.class_id, method_id=err.method_id,
        )))
        channel.close()

    # -- resource alarms -------------------------------------------------------------------

    def block(self) -> None:
        self.blocked = True
        self._update_reading()
        if self.client_capability("connection.blocked"):
            self._blocked_sent = True
            self.send(frames.method_frame(0, commands.Connection.Blocked(
                reason=self.context.blocked_reason)))
        log.info("AMQP connection blocked by a resource alarm", extra={"fields": {
            "peer": self.peer, "reason": self.context.blocked_reason}})

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

    # -- output -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_many(self, parts: list[bytes | memoryview]) -> None:
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
        stored = self.context.vhosts.commit()
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
        # The next turn's deliveries may add only what the transport's buffer leaves of
        # the budget, so a client that does not read costs at most the high-water mark
        # plus one message.
        transport = self.transport
        self.queued_room = self._queued_limit - (
            transport.get_write_buffer_size() if transport is not None else 0)
        if self.writing_paused and not self._transport_paused:
            # Deliveries stopped for this turn's budget and the transport took them:
            # go on in the next turn (not from here, which may be inside a dispatch).
            self.writing_paused = False
            self._loop.call_soon(self._dispatch_consumers)

    # -- closing ----------------------------------------------------------------------------

    def _close_connection(self, err: AmqpError) -> None:
        if self._state >= CLOSING:
            return
        metrics.CONNECTION_ERRORS.labels("amqp", str(err.code)).inc()
        # Frames that break the protocol (501-505) are hostile or broken input: one
        # warning line each. Refusals of well-formed requests stay at info.
        level = logging.WARNING if FRAME_ERROR <= err.code <= UNEXPECTED_FRAME else logging.INFO
        log.log(level, "closing AMQP connection", extra={"fields": {
            "peer": self.peer, "code": err.code, "reason": err.text}})
        if self._closes_silently(err):
            self._state = CLOSING
            self._broken_framing = True  # read nothing more from it
            self._finish()
            return
        for channel in list(self.channels.values()):
            self._confirm_now(channel)
        self._release_channels()
        self.send(frames.method_frame(0, commands.Connection.Close(
            reply_code=err.code, reply_text=reply_text(err.code, err.text),
            class_id=err.class_id, method_id=err.method_id,
        )))
        self._state = CLOSING
        self._timers.append(self._loop.call_later(CLOSE_OK_TIMEOUT_S, self._finish))

    def _closes_silently(self, err: AmqpError) -> bool:
        """RabbitMQ answers an error before Tune-Ok by closing the socket without a
        Connection.Close (rabbit_reader's handshake_error; it first waits 3 s to slow down
        password guessing, which a broker for tests does not), except a refused login for
        a client with the ``authentication_failure_close`` capability and a refused Tune-Ok."""
        if self._state == AWAIT_START_OK:
            return not (err.code == ACCESS_REFUSED
                        and self.client_capability("authentication_failure_close"))
        return self._state == AWAIT_TUNE_OK and err.code != NOT_ALLOWED

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

    def _check_stalled(self) -> None:
        """Close a connection silent in the middle of a frame or of a message's content;
        then sleep until the earliest moment that could next be true."""
        if self._state == CLOSED or self.transport is None:
            return
        now = self._loop.time()
        # Not reading it is our doing while blocked by an alarm or by a full transport.
        held = self.blocked or self._transport_paused
        silent = now - self._last_recv
        if not held and silent >= self._incomplete_s and self._state != CLOSING and (
                self._buf or any(ch.awaiting_content for ch in self.channels.values())):
            metrics.CONNECTION_ERRORS.labels("amqp", "incomplete_frame").inc()
            log.warning("frame or content incomplete, closing the connection", extra={
                "fields": {"peer": self.peer, "silent_s": round(silent, 1),
                           "buffered_bytes": len(self._buf)}})
            self.transport.abort()
            return
        wake = self._incomplete_s - silent if silent < self._incomplete_s else self._incomplete_s
        self._watchdog = self._loop.call_later(max(wake, 0.01), self._check_stalled)

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

    def close_gracefully(self, reason: str = "broker shutdown") -> None:
        """Broker shutdown (or its vhost deleted): tell the client why, then close the socket.

        Once closing, frames still arriving are ignored, so nothing is published after
        this; the flush runs the commit point and confirms what was already taken.
        """
        if self._state == OPEN:
            self._close_connection(ConnectionClose(CONNECTION_FORCED, reason))
        self._finish()



def _ids(payload: bytes) -> tuple[int, int]:
    if len(payload) >= 4:
        return struct.unpack_from(">HH", payload)  # type: ignore[return-value]
    return 0, 0


def _split(index: int) -> tuple[int, int]:
    """A method index as the (class id, method id) a Close names."""
    return divmod(index, 0x10000)


def _too_large(ftype: int, size: int, frame_max: int) -> ConnectionClose:
    return ConnectionClose(FRAME_ERROR, f"{octets.frame_octets(ftype, b'')}: "
                           f"{{frame_too_large,{size},{frame_max - FRAME_OVERHEAD}}}")


def _bad_frame_end(ftype: int, payload: bytes, marker: int) -> ConnectionClose:
    return ConnectionClose(FRAME_ERROR, f"{octets.frame_octets(ftype, payload)}: "
                           f"{{invalid_frame_end_marker,{marker}}}")


def _unknown_frame(ftype: int, payload: bytes) -> ConnectionClose:
    """A frame RabbitMQ's reader cannot even classify: an unknown type, a heartbeat with
    a payload, a method or content header shorter than its fixed fields."""
    return ConnectionClose(FRAME_ERROR, f"{octets.frame_octets(ftype, payload)}: unknown_frame")


def _undecodable(payload: bytes, err: frames.FrameSyntaxError) -> ConnectionClose:
    """A method whose arguments do not decode, in RabbitMQ's words: its generated decoder
    reports a short string that is not UTF-8 apart, without naming the method."""
    if err.utf8:
        return ConnectionClose(FRAME_ERROR, "Malformed UTF-8 in shortstr")
    return ConnectionClose(FRAME_ERROR, f"cannot decode {octets.erlang_w(payload[4:])}",
                           *_ids(payload))


# -- dispatch: every method a client sends, one table per class -----------------------------
#
# Read top to bottom, in the spec's order. A method that is not in its class's table is
# the server's to send (Basic.Deliver, Channel.OpenOk ...): 503 COMMAND_INVALID
# "unimplemented method", as RabbitMQ answers; one pamqp does not know: 540
# NOT_IMPLEMENTED. To serve a new method, add its row here and write its handler.


class Fast(NamedTuple):
    """A fast-path row: the handler takes the raw payload and parses it by hand."""

    handler: Callable[[Channel, bytes], None]


# Channel 0, by connection state: the handshake takes its replies in order, an open
# connection Close and UpdateSecret, one we are closing Close and Close-Ok. Anything else
# is 504 "unexpected method in connection state <name>", RabbitMQ's answer.
# handler(connection, method).
ConnectionTable = dict[type[PamqpMethod], Callable[[AmqpConnection, Any], None]]
CONNECTION_METHODS: dict[int, ConnectionTable] = {
    AWAIT_START_OK: {commands.Connection.StartOk: AmqpConnection.on_connection_start_ok},
    AWAIT_TUNE_OK: {commands.Connection.TuneOk: AmqpConnection.on_connection_tune_ok},
    AWAIT_OPEN: {commands.Connection.Open: AmqpConnection.on_connection_open},
    OPEN: {
        commands.Connection.Close: AmqpConnection.on_connection_close,
        commands.Connection.UpdateSecret: AmqpConnection.on_connection_update_secret,
    },
    CLOSING: {
        commands.Connection.Close: AmqpConnection.on_connection_close_crossing,
        commands.Connection.CloseOk: AmqpConnection.on_connection_close_ok,
    },
}
_STATE_NAMES = {AWAIT_START_OK: "starting", AWAIT_TUNE_OK: "tuning", AWAIT_OPEN: "opening",
                OPEN: "running", CLOSING: "closing"}

# An open channel; handler(connection, channel, method). On a channel that is not open
# Channel.Open is the only method (on_channel_open); on one we are closing only Close,
# Close-Ok and a second Open count (_channel_lifecycle_method). Close-Ok on an open
# channel answers nothing we asked: "unimplemented method", as RabbitMQ says.
CHANNEL_METHODS: dict[type[PamqpMethod], Callable[[AmqpConnection, Channel, Any], None]] = {
    commands.Channel.Open: AmqpConnection.on_channel_open_again,
    commands.Channel.Flow: AmqpConnection.on_channel_flow,
    commands.Channel.Close: AmqpConnection.on_channel_close,
}

# The classes below: handler(channel, method), or handler(channel, raw payload) for Fast.
ChannelTable = dict[type[PamqpMethod], Callable[[Channel, Any], None] | Fast]

EXCHANGE_METHODS: ChannelTable = {
    commands.Exchange.Declare: Channel.on_exchange_declare,
    commands.Exchange.Delete: Channel.on_exchange_delete,
    commands.Exchange.Bind: Channel.on_exchange_bind,
    commands.Exchange.Unbind: Channel.on_exchange_unbind,
}

QUEUE_METHODS: ChannelTable = {
    commands.Queue.Declare: Channel.on_queue_declare,
    commands.Queue.Bind: Channel.on_queue_bind,
    commands.Queue.Purge: Channel.on_queue_purge,
    commands.Queue.Delete: Channel.on_queue_delete,
    commands.Queue.Unbind: Channel.on_queue_unbind,
}

BASIC_METHODS: ChannelTable = {
    commands.Basic.Qos: Channel.on_basic_qos,
    commands.Basic.Consume: Channel.on_basic_consume,
    commands.Basic.Cancel: Channel.on_basic_cancel,
    commands.Basic.Publish: Fast(Channel.on_basic_publish),
    commands.Basic.Get: Channel.on_basic_get,
    commands.Basic.Ack: Fast(Channel.on_basic_ack),
    commands.Basic.Reject: Channel.on_basic_reject,
    commands.Basic.RecoverAsync: Channel.on_basic_recover_async,
    commands.Basic.Recover: Channel.on_basic_recover,
    commands.Basic.Nack: Channel.on_basic_nack,
}

CONFIRM_METHODS: ChannelTable = {
    commands.Confirm.Select: Channel.on_confirm_select,
}

TX_METHODS: ChannelTable = {
    commands.Tx.Select: Channel.on_tx_select,
    commands.Tx.Commit: Channel.on_tx_commit,
    commands.Tx.Rollback: Channel.on_tx_rollback,
}


def _by_index(class_id: int, table: dict[type[PamqpMethod], Any]) -> dict[int, Any]:
    """A table keyed by the method index that opens a method frame, checking that every
    row belongs to the table's class."""
    rows = {}
    for method, handler in table.items():
        if method.index >> 16 != class_id:
            raise ValueError(f"{method.name} is not a method of class {class_id}")
        rows[method.index] = handler
    return rows


for _state_table in CONNECTION_METHODS.values():
    _by_index(CLASS_CONNECTION, _state_table)
_CHANNEL_CLASS_HANDLERS = _by_index(CLASS_CHANNEL, CHANNEL_METHODS)
_ALL_CHANNEL_HANDLERS = {
    **_by_index(CLASS_EXCHANGE, EXCHANGE_METHODS),
    **_by_index(CLASS_QUEUE, QUEUE_METHODS),
    **_by_index(CLASS_BASIC, BASIC_METHODS),
    **_by_index(CLASS_CONFIRM, CONFIRM_METHODS),
    **_by_index(CLASS_TX, TX_METHODS),
}
# The fast path: looked up by the raw method index before anything is decoded.
_FAST_PATH: dict[int, Callable[[Channel, bytes], None]] = {
    index: row.handler for index, row in _ALL_CHANNEL_HANDLERS.items() if isinstance(row, Fast)
}
_CHANNEL_HANDLERS: dict[int, Callable[[Channel, Any], None]] = {
    index: row for index, row in _ALL_CHANNEL_HANDLERS.items() if not isinstance(row, Fast)
}
