# Over 500 lines: one channel's state and every handler that changes it, side by side.
"""One AMQP channel: content assembly, consumers, unacked deliveries, confirms and tx.

The handlers of the exchange, queue, basic, confirm and tx classes are the
``on_<class>_<method>`` methods here; the tables at the end of ``connection.py`` say
which method goes to which. The fast path (Basic.Publish with its content frames,
Basic.Ack) gets raw payloads; every other handler gets the method decoded by pamqp.
Broker refusals come back as ``amqp_errors`` exceptions and are mapped to Channel.Close
or Connection.Close by the connection.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Protocol

from pamqp import commands
from pamqp.base import Frame as PamqpMethod

from portask import metrics
from portask.broker.amqp.errors import (
    AccessRefused,
    BrokerError,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
)
from portask.broker.amqp.exchanges import Exchange
from portask.broker.amqp.queue_args import amqp_type, parse_expiration
from portask.broker.amqp.queues import Message
from portask.broker.amqp.vhosts import AnyQueue, VirtualHost
from portask.broker.clients import ChannelView, ConsumerView
from portask.broker.user_store import Permission
from portask.protocols.amqp import faults as amqp_faults
from portask.protocols.amqp import frames
from portask.protocols.amqp.constants import (
    BASIC_CONSUME,
    BASIC_PUBLISH,
    CLASS_BASIC,
    FRAME_END,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
)
from portask.protocols.amqp.context import AmqpContext
from portask.protocols.amqp.errors import ConnectionClose
from portask.protocols.amqp.unacked import Group, Unacked

Basic = commands.Basic
ACK, REQUEUE, REJECT = 0, 1, 2
# Exchange and routing key pairs a consumer keeps encoded delivery heads for.
_HEADS_KEPT = 256
# Deliveries a consumer takes from a queue in one batch (ChannelConsumer.credit).
_BATCH_MOST = 256
_FRAME_END = bytes([FRAME_END])


# RabbitMQ's command assembler's words for a frame that is not the one it waits for.
EXPECTED_METHOD = "expected method frame, got non method frame instead"
EXPECTED_HEADER = (f"expected content header for class {CLASS_BASIC}, "
                   "got non content header frame instead")
EXPECTED_BODY = "expected content body, got non content body frame instead"

class ChannelConnection(Protocol):
    """What a channel uses of its connection (``AmqpConnection``, which creates channels
    and so is not imported here). It is also the owner of exclusive queues."""

    context: AmqpContext
    frame_max: int
    max_message_bytes: int
    # The client is not reading, or this turn queued its budget: consumers stop taking
    # deliveries. queued_room is what is left of the budget for what waits to be sent.
    writing_paused: bool
    queued_room: int
    user: str
    client_properties: dict[str, Any]  # fault rules match its connection_name
    permission: Permission | None  # the user's on this vhost; None: allowed everything
    alarm: bool  # a resource alarm is set: the next publish blocks the connection

    def send(self, data: bytes) -> None: ...

    def send_many(self, parts: list[bytes | memoryview]) -> None: ...

    def confirms_pending(self, channel: Channel) -> None: ...

    def client_capability(self, name: str) -> bool: ...


def _strip_cr_lf(name: str) -> str:
    """RabbitMQ removes CR and LF from queue and exchange names in declare, delete and
    bind/unbind (not in publish, consume, get or purge), so "a\nb" declares "ab"."""
    return name.replace("\r", "").replace("\n", "") if ("\r" in name or "\n" in name) else name


def _random_tag(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


class ChannelConsumer:
    """A Basic.Consume subscription; the queue asks it whether it may take more."""

    __slots__ = ("channel", "exclusive", "heads", "no_ack", "packers", "prefetch", "priority",
                 "queue", "tag", "tag_bytes", "unacked")

    def __init__(self, channel: Channel, queue: AnyQueue, tag: str, no_ack: bool,
                 exclusive: bool, prefetch: int, priority: int = 0) -> None:
        self.channel = channel
        self.queue = queue
        self.tag = tag
        self.tag_bytes = frames.shortstr(tag)
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.priority = priority
        self.unacked = 0
        # (exchange, routing key) -> the frame pieces its deliveries share (bounded).
        self.heads: dict[tuple[str, str], frames.DeliverHead] = {}
        # (exchange, routing key, property bytes' length) -> a one-frame body's packer.
        self.packers: dict[tuple[str, str, int], frames.DeliverPacker] = {}

    def ready(self) -> bool:
        channel = self.channel
        if channel.conn.writing_paused:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return not channel.prefetch_global or channel.unacked_count < channel.prefetch_global

    def deliver(self, queue: AnyQueue, ref: Any, message: Message, redelivered: bool) -> None:
        """One delivery, written here rather than forwarded to the channel: a call less
        per message."""
        channel = self.channel
        channel.next_delivery_tag = tag = channel.next_delivery_tag + 1
        if not self.no_ack:
            channel.unacked.add(tag, queue, ref, self)
            self.unacked += 1
            channel.unacked_count += 1
        body = message.body
        properties = message.properties
        if queue.delivers_offsets:
            # RabbitMQ tells stream consumers each message's offset in a header.
            properties = frames.add_long_header(properties, "x-stream-offset", ref)
        conn = channel.conn
        size = len(body)
        if 0 < size <= conn.frame_max - 8:  # one body frame: three write pieces, one pack
            if type(properties) is not bytes:
                properties = bytes(properties)  # a log's slice: the Struct packs bytes
            pkey = (message.exchange, message.routing_key, len(properties))
            packer = self.packers.get(pkey)
            if packer is None:
                packer = self._new_packer(pkey)
            pack, prefix, middle, body_head = packer
            conn.send_many([pack(prefix, tag, redelivered, middle, size, properties, body_head,
                                 size), body, _FRAME_END])
        else:
            key = (message.exchange, message.routing_key)
            head = self.heads.get(key)
            if head is None:
                if len(self.heads) >= _HEADS_KEPT:
                    self.heads.clear()
                head = self.heads[key] = frames.deliver_head(channel.number, self.tag_bytes,
                                                             *key)
            conn.send_many(frames.deliver_frames(head, channel.number, tag, redelivered,
                                                 properties, body, conn.frame_max))
        # A turn's deliveries to one connection are bounded like its write buffer.
        room = conn.queued_room - size
        conn.queued_room = room
        if room < 0:
            conn.writing_paused = True
        queue.delivered += 1
        queue.delivered_bytes += size
        if redelivered:
            queue.redelivered += 1

    def credit(self) -> int:
        channel = self.channel
        if channel.conn.writing_paused:
            return 0
        most = _BATCH_MOST
        if not self.no_ack:
            if self.prefetch:
                most = min(most, self.prefetch - self.unacked)
            if channel.prefetch_global:
                most = min(most, channel.prefetch_global - channel.unacked_count)
        return max(most, 0)

    def deliver_batch(self, queue: AnyQueue, messages: list[Message]) -> int:
        """``deliver`` of each, with what is per delivery there done once: bodies that
        fit one frame, packed as ``deliver`` packs them; the first that does not, or
        the delivery that spends the connection's send budget, ends the batch."""
        channel = self.channel
        conn = channel.conn
        limit = conn.frame_max - 8
        room = conn.queued_room
        tag = channel.next_delivery_tag
        out: list[bytes | memoryview] = []
        exchange = routing_key = None
        length = -1
        pack = prefix = middle = body_head = None
        sent = 0
        for message in messages:
            body = message.body
            size = len(body)
            if not 0 < size <= limit:
                break
            properties = message.properties
            if type(properties) is not bytes:
                properties = bytes(properties)
            if (message.exchange is not exchange or message.routing_key is not routing_key
                    or len(properties) != length):
                exchange, routing_key, length = key = (message.exchange, message.routing_key,
                                                       len(properties))
                packer = self.packers.get(key) or self._new_packer(key)
                pack, prefix, middle, body_head = packer
            tag += 1
            out += (pack(prefix, tag, False, middle, size, properties, body_head, size),  # type: ignore[misc]
                    body, _FRAME_END)
            sent += size
            if sent > room:
                break
        first = channel.next_delivery_tag + 1
        taken = tag - first + 1
        channel.next_delivery_tag = tag
        if not self.no_ack and taken:
            # Each message is its own ref (MemoryStore.take).
            channel.unacked.add_many(first, queue, self,
                                     messages[:taken] if taken < len(messages) else messages)
            self.unacked += taken
            channel.unacked_count += taken
        conn.queued_room = room - sent
        if sent > room:
            conn.writing_paused = True
        queue.delivered += taken
        queue.delivered_bytes += sent
        if out:
            conn.send_many(out)
        return taken

    def _new_packer(self, key: tuple[str, str, int]) -> frames.DeliverPacker:
        """The packer of one-frame deliveries for (exchange, routing key, property
        bytes' length), kept for the next (a bounded number of them)."""
        if len(self.packers) >= _HEADS_KEPT:
            self.packers.clear()
        packer = self.packers[key] = frames.deliver_packer(self.channel.number,
                                                           self.tag_bytes, *key)
        return packer

    def queue_deleted(self, queue: AnyQueue) -> None:
        self.channel.consumer_cancelled_by_server(self)


class Channel:
    def __init__(self, conn: ChannelConnection, number: int, vhost: VirtualHost) -> None:
        self.conn = conn
        # The connection's, fixed at Connection.Open; kept here so that a publish pays
        # one attribute read for it (None: the user may do everything, nothing is checked).
        self.permission = conn.permission
        self.faults = conn.context.faults  # the control API's rules (nack a publish)
        self.number = number
        self.vhost = vhost
        self.closing = False
        self.consumers: dict[str, ChannelConsumer] = {}
        self.unacked = Unacked()
        self.unacked_count = 0
        self.next_delivery_tag = 0
        self.prefetch_consumer = 0
        self.prefetch_global = 0
        self.last_queue = ""
        # Publish in progress: (exchange, routing key, mandatory), then size and properties.
        self._publish: tuple[Exchange, str, bool] | None = None
        # The last Basic.Publish payload taken, its exchange and what it set _publish to.
        self._last_publish: tuple[bytes, Exchange, tuple[Exchange, str, bool]] | None = None
        # The last content header's property bytes and basic_fields' reading of them.
        self._last_properties: bytes | None = None  # None matches no header's bytes
        self._last_fields: tuple[int, int, str | None] = (0, 0, None)
        # The last whole publish's content header (connection._whole_publish) as it was
        # accepted: its bytes, the fields and properties read from them, the body size.
        self._last_header: tuple[bytes, tuple[int, int, str | None], bytes, int] | None = None
        # The last whole publish taken the slow way, for the publishes repeating it
        # (remember_whole): its frames up to the body, then the conclusions above.
        self._run: tuple[bytes, Exchange, tuple[Exchange, str, bool],
                         tuple[int, int, str | None], bytes, int] | None = None
        self.repeat: tuple[bytes, int] | None = None  # (those frames, the body size)
        # Routing by headers reads the properties of the message being routed from here,
        # through one callable made per channel instead of a closure per publish.
        self._routing_properties: bytes | memoryview = b""
        self._routing_headers = lambda: frames.headers_from_properties(self._routing_properties)
        self._body_size = 0
        self._properties = b""
        self._fields: tuple[int, int, str | None] = (0, 0, None)
        self._body_parts: list[bytes] = []
        self._body_received = 0
        self.confirm = False
        self.publish_seq = 0
        self.confirmed_seq = 0
        # Publishes a queue refused (x-overflow reject-publish, a failed store): nacked.
        self._nacks: list[int] = []
        # First publish a queue failed to write at a commit point (0: none): it and
        # every later unconfirmed publish are nacked.
        self._failed_from = 0
        self.tx = False
        self._tx_publishes: list[tuple[Exchange, Message, bool]] = []
        self._tx_settles: list[tuple[str, int, bool, bool]] = []
        # Set by each publish (one store); the management API counts publishers by it.
        self.publisher = False
        conn.context.clients.channels_opened += 1
        metrics.AMQP_CHANNELS_ACTIVE.inc()

    @property
    def awaiting_content(self) -> bool:
        return self._publish is not None

    def content_expected(self) -> str:
        """RabbitMQ's words for what this channel waits for, when another frame came."""
        return EXPECTED_HEADER if self._body_size == -1 else EXPECTED_BODY

    # -- publish (hot path) -------------------------------------------------------------

    def on_basic_publish(self, payload: bytes) -> None:
        last = self._last_publish
        # A publisher repeats the same Basic.Publish bytes (one exchange and key): the
        # previous parse and exchange stand while the name still maps to that exchange.
        if (last is not None and payload == last[0]
                and self.vhost.exchanges.get(last[1].name) is last[1]):
            if self.permission is not None:  # None for users allowed everything
                self.check_access("write", "exchange", last[1].name)
                self.check_topic_access("write", last[1], last[2][1])
            self._publish = last[2]
            self._body_size = -1
            return
        exchange_name, routing_key, mandatory, immediate = frames.parse_publish(payload)
        if immediate:
            raise ConnectionClose(NOT_IMPLEMENTED, "immediate=true", CLASS_BASIC, BASIC_PUBLISH)
        if self.permission is not None:
            self.check_access("write", "exchange", exchange_name)
            exchange = self.vhost.exchange_for_publish(exchange_name)
            self.check_topic_access("write", exchange, routing_key)
        else:
            exchange = self.vhost.exchange_for_publish(exchange_name)
        self._publish = publish = (exchange, routing_key, mandatory)
        self._last_publish = (payload, exchange, publish)
        self._body_size = -1
        self.publisher = True

    def remember_whole(self, frames_head: bytes) -> None:
        """A whole publish was just taken by on_basic_publish and on_content_header (the
        connection's slow step): keep what they concluded, with ``frames_head``, its
        method frame, content header frame and body frame head as sent, so that a
        publish repeating those bytes is taken by ``publish_bodies`` without them."""
        last = self._last_publish
        header = self._last_header
        if last is None or header is None:
            return
        _payload, exchange, publish = last
        _bytes, fields, properties, size = header
        self._run = (frames_head, exchange, publish, fields, properties, size)
        self.repeat = (frames_head, size)

    def repeatable(self) -> int:
        """How many of the next publishes ``repeat`` may stand for: none unless the
        exchange is still the vhost's under its name and the user may still write to
        it (the slow way answers any refusal); no further than the publish that would
        take the memory alarm's watermark, after which the connection blocks."""
        run = self._run
        if run is None or self._publish is not None:
            return 0
        exchange = run[1]
        if self.vhost.exchanges.get(exchange.name) is not exchange:
            return 0
        if self.permission is not None:  # None for users allowed everything
            try:
                self.check_access("write", "exchange", exchange.name)
                self.check_topic_access("write", exchange, run[2][1])
            except BrokerError:
                return 0
        return self.vhost.memory_room(run[5] + len(run[4]))

    def publish_bodies(self, bodies: list[bytes]) -> int:
        """Publishes repeating the remembered whole publish (``repeatable``), one per
        body, in order: what on_basic_publish and on_content_header would conclude
        again is taken from then. A plain channel (no confirms, no transaction) routes
        them once, as one batch; the others, and a run of one (a publisher sending one
        message at a time), take each through _complete_publish. How many were taken:
        a resource alarm set by one makes it the last, as the frame loop would."""
        _head, exchange, publish, fields, properties, size = self._run  # type: ignore[misc]
        if self.tx or self.confirm or len(bodies) == 1:
            conn = self.conn
            for taken, body in enumerate(bodies, 1):
                self._publish = publish
                self._fields = fields
                self._properties = properties
                self._body_size = size
                self._complete_publish(body)
                if conn.alarm:
                    return taken
            return len(bodies)
        _exchange, routing_key, mandatory = publish
        delivery_mode, priority, expiration = fields
        persistent = delivery_mode == 2
        expires = parse_expiration(expiration) if expiration is not None else None
        name = exchange.name
        messages = [Message(name, routing_key, properties, body, persistent, priority, expires)
                    for body in bodies]
        self._routing_properties = properties
        reached, taken = self.vhost.publish_many(exchange, messages, self._routing_headers)
        if not reached and mandatory and not exchange.deleted:
            for message in messages:
                self._return_unroutable(message)
        return taken

    def on_content_header(self, payload: bytes, body: bytes | None = None) -> None:
        """A content header; with ``body``, the publish's one body frame too (the
        connection checked that it holds exactly the size the header announces)."""
        if self._publish is None:
            raise ConnectionClose(UNEXPECTED_FRAME, EXPECTED_METHOD)
        if self._body_size != -1:
            raise ConnectionClose(UNEXPECTED_FRAME, EXPECTED_BODY, CLASS_BASIC, BASIC_PUBLISH)
        # The connection checked the payload holds the fixed fields (CONTENT_HEADER_MIN).
        class_id, weight, size = frames.CONTENT_HEADER.unpack_from(payload)
        properties = payload[12:]
        if class_id != CLASS_BASIC:
            raise ConnectionClose(UNEXPECTED_FRAME, f"expected content header for class "
                                  f"{CLASS_BASIC}, got one for class {class_id} instead",
                                  CLASS_BASIC, BASIC_PUBLISH)
        if weight != 0:
            raise ConnectionClose(UNEXPECTED_FRAME, EXPECTED_HEADER, CLASS_BASIC, BASIC_PUBLISH)
        if size > self.conn.max_message_bytes:
            self._publish = None
            raise PreconditionFailed(
                f"message size {size} is larger than configured max size "
                f"{self.conn.max_message_bytes}"
            )
        if properties == self._last_properties:  # publishers repeat their properties
            self._fields = self._last_fields
        else:
            try:
                self._fields = frames.basic_fields(properties)
            except frames.FrameSyntaxError as err:
                self._publish = None
                raise ConnectionClose(SYNTAX_ERROR, str(err), CLASS_BASIC,
                                      BASIC_PUBLISH) from None
            self._last_properties = properties
            self._last_fields = self._fields
        self._body_size = size
        self._properties = properties
        if self._body_parts:  # left by a publish that did not complete
            self._body_parts = []
        self._body_received = 0
        if body is not None:
            self._last_header = (payload, self._fields, properties, size)
            self._complete_publish(body)
        elif size == 0:
            self._complete_publish(b"")

    def on_content_body(self, payload: bytes) -> None:
        if self._publish is None:
            raise ConnectionClose(UNEXPECTED_FRAME, EXPECTED_METHOD)
        if self._body_size < 0:
            raise ConnectionClose(UNEXPECTED_FRAME, EXPECTED_HEADER, CLASS_BASIC, BASIC_PUBLISH)
        received = self._body_received + len(payload)
        if received > self._body_size:
            raise ConnectionClose(UNEXPECTED_FRAME, "content body longer than announced")
        if received == self._body_size and not self._body_parts:
            self._complete_publish(payload)
            return
        self._body_parts.append(payload)
        self._body_received = received
        if received == self._body_size:
            self._complete_publish(b"".join(self._body_parts))

    def _complete_publish(self, body: bytes) -> None:
        exchange, routing_key, mandatory = self._publish  # type: ignore[misc]
        self._publish = None
        if self._body_parts:
            self._body_parts = []
        delivery_mode, priority, expiration = self._fields
        message = Message(  # positional: this runs once per publish
            exchange.name, routing_key, self._properties, body, delivery_mode == 2, priority,
            parse_expiration(expiration) if expiration is not None else None,
        )
        if self.tx:
            self._tx_publishes.append((exchange, message, mandatory))
            return
        if self.confirm:
            # Numbered before routing: a queue that cannot write it names this number.
            self.publish_seq += 1
            if self.faults.amqp_nack and amqp_faults.nacked(self.faults, self.vhost,
                                                            exchange, message, self.conn):
                self._nacks.append(self.publish_seq)  # refused: not routed, nacked
            elif not self._route(exchange, message, mandatory, self):
                self._nacks.append(self.publish_seq)
            self.conn.confirms_pending(self)
        else:  # _route written out: this is the path of every plain publish
            self._routing_properties = message.properties
            if (not self.vhost.publish(exchange, message, self._routing_headers, None)[0]
                    and mandatory and not exchange.deleted):
                self._return_unroutable(message)

    def _route(self, exchange: Exchange, message: Message, mandatory: bool,
               publisher: Channel | None) -> bool:
        self._routing_properties = message.properties
        routed, accepted = self.vhost.publish(exchange, message, self._routing_headers, publisher)
        if not routed and mandatory and not exchange.deleted:
            self._return_unroutable(message)
        return accepted

    def _return_unroutable(self, message: Message) -> None:
        """Basic.Return of a mandatory publish no queue took."""
        self.vhost.returned += 1
        self.conn.send_many(frames.content_frames(
            self.number,
            frames.return_payload(NO_ROUTE, "NO_ROUTE", message.exchange, message.routing_key),
            message.properties, message.body, self.conn.frame_max,
        ))

    def write_failed(self, first_seq: int) -> None:
        """A queue could not write publishes from ``first_seq`` on (``Publisher``)."""
        if not self._failed_from or first_seq < self._failed_from:
            self._failed_from = first_seq

    def emit_confirms(self, stored: bool = True) -> None:
        """Confirm everything published since the last call: one Basic.Ack (multiple when
        > 1), with a Basic.Nack for each publish a queue refused. Publishes from the
        first one a queue failed to write on get one Basic.Nack (multiple); ``stored``
        False (a stream's fsync failed) makes that every unconfirmed publish."""
        seq = self.publish_seq
        if seq <= self.confirmed_seq:
            return
        self.vhost.received_confirm += seq - self.confirmed_seq
        failed_from = self.confirmed_seq + 1 if not stored else self._failed_from
        if not failed_from:
            self._confirm_through(seq)
            return
        self._failed_from = 0
        self._confirm_through(max(failed_from, self.confirmed_seq + 1) - 1)
        self._nacks.clear()
        multiple = seq - self.confirmed_seq > 1
        self.confirmed_seq = seq
        self.conn.send(frames.confirm_frame(self.number, seq, multiple, ack=False))

    def _confirm_through(self, seq: int) -> None:
        """Ack the publishes up to ``seq``, nacking those a queue refused."""
        send = self.conn.send
        first = self.confirmed_seq + 1
        nacked_count = 0
        if self._nacks:
            nacks = self._nacks
            self._nacks = [nacked for nacked in nacks if nacked > seq]
            for nacked in nacks:
                if nacked > seq:
                    break
                if nacked - 1 > self.confirmed_seq:
                    send(frames.confirm_frame(self.number, nacked - 1,
                                              nacked - 1 - self.confirmed_seq > 1))
                send(frames.confirm_frame(self.number, nacked, False, ack=False))
                self.confirmed_seq = nacked
                nacked_count += 1
        if seq > self.confirmed_seq:
            multiple = seq - self.confirmed_seq > 1
            self.confirmed_seq = seq
            send(frames.confirm_frame(self.number, seq, multiple))
        if seq >= first:
            self.vhost.confirmed += seq - first + 1 - nacked_count

    # -- deliveries ---------------------------------------------------------------------

    def on_basic_ack(self, payload: bytes) -> None:
        tag, multiple = frames.parse_ack(payload)
        if self.tx:
            self._check_tag(tag, multiple)
            self._tx_settles.append(("ack", tag, multiple, False))
            return
        self._settle(self._take(tag, multiple), ACK)

    def _check_tag(self, tag: int, multiple: bool) -> None:
        if not (multiple and tag == 0) and tag not in self.unacked:
            raise PreconditionFailed(f"unknown delivery tag {tag}")

    def _take(self, tag: int, multiple: bool) -> list[Group]:
        unacked = self.unacked
        if multiple:
            if tag == 0:
                return unacked.take_all()
            groups = unacked.take_through(tag)
            if not groups:
                raise PreconditionFailed(f"unknown delivery tag {tag}")
            return groups
        group = unacked.take_one(tag)
        if group is None:
            raise PreconditionFailed(f"unknown delivery tag {tag}")
        return [group]

    def _settle(self, groups: list[Group], how: int) -> None:
        """Ack, requeue or reject (dead-letter or drop) deliveries, grouped per queue."""
        touched: dict[int, AnyQueue] = {}
        refs: dict[int, list[Any]] = {}
        for queue, consumer, taken in groups:
            if consumer is not None:
                consumer.unacked -= len(taken)
                self.unacked_count -= len(taken)
            key = id(queue)
            if key not in touched:
                touched[key] = queue
                refs[key] = taken
            else:
                refs[key].extend(taken)  # each group's list is its own
        for key, queue in touched.items():
            if how == REQUEUE:
                queue.requeue(refs[key])
            else:
                if how == ACK:
                    queue.ack(refs[key])
                else:
                    queue.reject(refs[key])
                queue.dispatch()
        if not touched or how != REQUEUE:
            # A freed prefetch slot may let other queues this channel consumes from move.
            for consumer in list(self.consumers.values()):
                if id(consumer.queue) not in touched:
                    consumer.queue.dispatch()

    # -- methods decoded by pamqp ---------------------------------------------------------

    def reply(self, method: PamqpMethod) -> None:
        self.conn.send(frames.method_frame(self.number, method))

    # -- permissions (RabbitMQ's check_resource_access) -----------------------------------

    def check_access(self, kind: str, resource: str, name: str) -> None:
        """403 ACCESS_REFUSED unless the user's ``kind`` (configure, write, read)
        expression on this vhost matches the resource; the default exchange is checked
        as ``amq.default``."""
        permission = self.permission
        if permission is None:
            return
        if resource == "exchange" and not name:
            name = "amq.default"
        if not permission.allows(kind, name):
            raise AccessRefused(f"access to {resource} '{name}' in vhost '{self.vhost.name}' "
                                f"refused for user '{self.conn.user}'")

    def check_topic_access(self, kind: str, exchange: Exchange | None,
                           routing_key: str) -> None:
        """RabbitMQ's check_topic_authorisation: on a topic exchange for which the user
        has a topic permission, the routing key (publish: write) or binding key (bind:
        read) must match it. Read from the store at each check, as RabbitMQ reads its
        table, so a change applies at once."""
        if self.permission is None or exchange is None or exchange.kind != "topic":
            return
        store = self.conn.context.users
        user, vhost = self.conn.user, self.vhost.name
        found = store.topic_permission(user, vhost, exchange.name) if store else None
        if found is not None and not found.allows(kind, routing_key, user, vhost):
            raise AccessRefused(f"access to topic '{routing_key}' in exchange "
                                f"'{exchange.name}' in vhost '{vhost}' refused for user "
                                f"'{user}'")

    def on_exchange_declare(self, m: commands.Exchange.Declare) -> None:
        if not m.passive:
            self.check_access("configure", "exchange", _strip_cr_lf(m.exchange))
        self.vhost.declare_exchange(
            _strip_cr_lf(m.exchange), m.exchange_type, passive=m.passive, durable=m.durable,
            auto_delete=m.auto_delete, internal=m.internal, arguments=dict(m.arguments or {}),
        )
        if not m.nowait:
            self.reply(commands.Exchange.DeclareOk())

    def on_exchange_delete(self, m: commands.Exchange.Delete) -> None:
        self.check_access("configure", "exchange", _strip_cr_lf(m.exchange))
        self.vhost.delete_exchange(_strip_cr_lf(m.exchange), if_unused=m.if_unused)
        if not m.nowait:
            self.reply(commands.Exchange.DeleteOk())

    def on_exchange_bind(self, m: commands.Exchange.Bind) -> None:
        self.check_access("write", "exchange", _strip_cr_lf(m.destination))
        self.check_access("read", "exchange", _strip_cr_lf(m.source))
        self.check_topic_access("read", self.vhost.exchanges.get(_strip_cr_lf(m.source)),
                                m.routing_key)
        self.vhost.bind_exchange(_strip_cr_lf(m.destination), _strip_cr_lf(m.source),
                                 m.routing_key, dict(m.arguments or {}))
        if not m.nowait:
            self.reply(commands.Exchange.BindOk())

    def on_exchange_unbind(self, m: commands.Exchange.Unbind) -> None:
        self.check_access("write", "exchange", _strip_cr_lf(m.destination))
        self.check_access("read", "exchange", _strip_cr_lf(m.source))
        self.check_topic_access("read", self.vhost.exchanges.get(_strip_cr_lf(m.source)),
                                m.routing_key)
        self.vhost.unbind_exchange(_strip_cr_lf(m.destination), _strip_cr_lf(m.source),
                                   m.routing_key, dict(m.arguments or {}))
        if not m.nowait:
            self.reply(commands.Exchange.UnbindOk())

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the last queue declared on this channel (spec)."""
        if name:
            return name
        if not self.last_queue:
            raise NotFound("no previously declared queue")
        return self.last_queue

    def on_queue_declare(self, m: commands.Queue.Declare) -> None:
        if not m.passive:
            # A server-named queue is checked under a generated name, as RabbitMQ names it
            # before it checks (a refusal then quotes an amq.gen-... name).
            self.check_access("configure", "queue",
                              _strip_cr_lf(m.queue) or _random_tag("amq.gen-"))
        queue = self.vhost.declare_queue(
            _strip_cr_lf(m.queue), owner=self.conn, passive=m.passive, durable=m.durable,
            exclusive=m.exclusive, auto_delete=m.auto_delete, arguments=dict(m.arguments or {}),
        )
        self.last_queue = queue.name
        if not m.nowait:
            self.conn.send(frames.queue_declare_ok_frame(
                self.number, queue.name, queue.message_count, queue.consumer_count))

    def on_queue_bind(self, m: commands.Queue.Bind) -> None:
        routing_key = m.routing_key if (m.queue or m.routing_key) else self._queue_name("")
        self.check_access("write", "queue", _strip_cr_lf(self._queue_name(m.queue)))
        self.check_access("read", "exchange", _strip_cr_lf(m.exchange))
        self.check_topic_access("read", self.vhost.exchanges.get(_strip_cr_lf(m.exchange)),
                                routing_key)
        self.vhost.bind_queue(_strip_cr_lf(self._queue_name(m.queue)), _strip_cr_lf(m.exchange),
                              routing_key,
                              dict(m.arguments or {}), self.conn)
        if not m.nowait:
            self.reply(commands.Queue.BindOk())

    def on_queue_unbind(self, m: commands.Queue.Unbind) -> None:
        self.check_access("write", "queue", _strip_cr_lf(self._queue_name(m.queue)))
        self.check_access("read", "exchange", _strip_cr_lf(m.exchange))
        self.check_topic_access("read", self.vhost.exchanges.get(_strip_cr_lf(m.exchange)),
                                m.routing_key)
        self.vhost.unbind_queue(_strip_cr_lf(self._queue_name(m.queue)),
                                _strip_cr_lf(m.exchange), m.routing_key,
                                dict(m.arguments or {}), self.conn)
        self.reply(commands.Queue.UnbindOk())

    def on_queue_purge(self, m: commands.Queue.Purge) -> None:
        self.check_access("read", "queue", self._queue_name(m.queue))
        count = self.vhost.purge_queue(self._queue_name(m.queue), self.conn)
        if not m.nowait:
            self.reply(commands.Queue.PurgeOk(message_count=count))

    def on_queue_delete(self, m: commands.Queue.Delete) -> None:
        self.check_access("configure", "queue", _strip_cr_lf(self._queue_name(m.queue)))
        count = self.vhost.delete_queue(_strip_cr_lf(self._queue_name(m.queue)), owner=self.conn,
                                        if_unused=m.if_unused, if_empty=m.if_empty)
        if not m.nowait:
            self.reply(commands.Queue.DeleteOk(message_count=count))

    def on_basic_qos(self, m: Basic.Qos) -> None:
        if m.prefetch_size:
            raise NotImplementedFeature(f"prefetch_size!=0 ({m.prefetch_size})")
        if m.global_:
            self.prefetch_global = m.prefetch_count
        else:
            self.prefetch_consumer = m.prefetch_count
        self.reply(Basic.QosOk())
        self.dispatch_all()

    def on_basic_consume(self, m: Basic.Consume) -> None:
        self.check_access("read", "queue", self._queue_name(m.queue))
        queue = self.vhost.queue(self._queue_name(m.queue), self.conn)
        tag = m.consumer_tag or _random_tag("amq.ctag-")
        if tag in self.consumers:
            raise ConnectionClose(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'",
                                  CLASS_BASIC, BASIC_CONSUME)
        if queue.has_exclusive_consumer() or (m.exclusive and queue.consumers):
            raise AccessRefused(
                f"queue '{queue.name}' in vhost '{self.vhost.name}' in exclusive use"
            )
        arguments = dict(m.arguments or {})
        where = f"queue '{queue.name}' in vhost '{self.vhost.name}'"
        priority = arguments.get("x-priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise PreconditionFailed(f"invalid arg 'x-priority' for {where}: "
                                     f"\"expected integer, got {amqp_type(priority)}\"")
        start = queue.consumer_start(arguments, bool(m.no_ack), self.prefetch_consumer)
        consumer = ChannelConsumer(self, queue, tag, bool(m.no_ack), bool(m.exclusive),
                                   self.prefetch_consumer, priority)
        self.consumers[tag] = consumer
        if not m.nowait:
            self.reply(Basic.ConsumeOk(consumer_tag=tag))
        # After ConsumeOk is queued, so the client knows the tag before the first delivery.
        queue.add_consumer(consumer, start)

    def on_basic_cancel(self, m: Basic.Cancel) -> None:
        consumer = self.consumers.pop(m.consumer_tag, None)
        if consumer is not None:
            self._detach(consumer)
        if not m.nowait:
            self.reply(Basic.CancelOk(consumer_tag=m.consumer_tag))

    def _detach(self, consumer: ChannelConsumer) -> None:
        queue = consumer.queue
        if queue.remove_consumer(consumer):
            self.vhost.remove_queue(queue)

    def consumer_cancelled_by_server(self, consumer: ChannelConsumer) -> None:
        if self.consumers.pop(consumer.tag, None) is None:
            return
        if self.conn.client_capability("consumer_cancel_notify") and not self.closing:
            self.reply(Basic.Cancel(consumer_tag=consumer.tag, nowait=True))

    def on_basic_get(self, m: Basic.Get) -> None:
        self.check_access("read", "queue", self._queue_name(m.queue))
        queue = self.vhost.queue(self._queue_name(m.queue), self.conn)
        got = queue.get(bool(m.no_ack))
        if got is None:
            self.reply(Basic.GetEmpty())
            return
        ref, message, redelivered = got
        self.next_delivery_tag = tag = self.next_delivery_tag + 1
        if not m.no_ack:
            self.unacked.add(tag, queue, ref, None)
        self.conn.send_many(frames.content_frames(
            self.number,
            frames.get_ok_payload(tag, redelivered, message.exchange,
                                  message.routing_key, queue.message_count),
            message.properties, message.body, self.conn.frame_max,
        ))
        queue.delivered += 1
        queue.delivered_bytes += len(message.body)
        if redelivered:
            queue.redelivered += 1

    def on_basic_reject(self, m: Basic.Reject) -> None:
        self._nack(m.delivery_tag, False, bool(m.requeue), "reject")

    def on_basic_nack(self, m: Basic.Nack) -> None:
        self._nack(m.delivery_tag, bool(m.multiple), bool(m.requeue), "nack")

    def _nack(self, tag: int, multiple: bool, requeue: bool, kind: str) -> None:
        if self.tx:
            self._check_tag(tag, multiple)
            self._tx_settles.append((kind, tag, multiple, requeue))
            return
        self._settle(self._take(tag, multiple), REQUEUE if requeue else REJECT)

    def on_basic_recover(self, m: Basic.Recover) -> None:
        self.on_basic_recover_async(m)  # type: ignore[arg-type]
        self.reply(Basic.RecoverOk())

    def on_basic_recover_async(self, m: Basic.RecoverAsync) -> None:
        """Requeue every unacked delivery of this channel. RabbitMQ 3.x does not serve
        requeue=false (redeliver to the same consumer) and closes with 540; so does
        Portask, so no client comes to depend on it here."""
        if not m.requeue:
            raise ConnectionClose(NOT_IMPLEMENTED, "requeue=false", *divmod(m.index, 0x10000))
        self._settle(self.unacked.take_all(), REQUEUE)

    def on_confirm_select(self, m: commands.Confirm.Select) -> None:
        if self.tx:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        self.confirm = True
        if not m.nowait:
            self.reply(commands.Confirm.SelectOk())

    def on_tx_select(self, m: commands.Tx.Select) -> None:
        if self.confirm:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        self.tx = True
        self.reply(commands.Tx.SelectOk())

    def on_tx_commit(self, m: commands.Tx.Commit) -> None:
        if not self.tx:
            raise PreconditionFailed("channel is not transactional")
        publishes, self._tx_publishes = self._tx_publishes, []
        settles, self._tx_settles = self._tx_settles, []
        for exchange, message, mandatory in publishes:
            self._route(exchange, message, mandatory, None)
        for kind, tag, multiple, requeue in settles:
            how = ACK if kind == "ack" else REQUEUE if requeue else REJECT
            self._settle(self._take(tag, multiple), how)
        self.reply(commands.Tx.CommitOk())

    def on_tx_rollback(self, m: commands.Tx.Rollback) -> None:
        if not self.tx:
            raise PreconditionFailed("channel is not transactional")
        self._tx_publishes = []
        self._tx_settles = []
        self.reply(commands.Tx.RollbackOk())

    # -- lifecycle ------------------------------------------------------------------------

    def dispatch_all(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.queue.dispatch()

    def close(self) -> None:
        """Release everything: cancel consumers, requeue unacked deliveries in tag order."""
        if self.closing and not self.consumers and not self.unacked:
            return
        self.closing = True
        self._publish = None
        self._tx_publishes = []
        self._tx_settles = []
        consumers = list(self.consumers.values())
        self.consumers.clear()
        # Detach first so requeued messages cannot be delivered straight back to this channel.
        for consumer in consumers:
            self._detach(consumer)
        self._settle(self.unacked.take_all(), REQUEUE)

    def released(self) -> None:
        self.conn.context.clients.channels_closed += 1
        metrics.AMQP_CHANNELS_ACTIVE.dec()

    def describe(self) -> ChannelView:
        vhost = self.vhost.name
        return ChannelView(
            number=self.number, vhost=vhost, prefetch_count=self.prefetch_consumer,
            global_prefetch_count=self.prefetch_global,
            messages_unacknowledged=len(self.unacked), confirm=self.confirm,
            transactional=self.tx, publisher=self.publisher,
            consumers=[ConsumerView(tag=c.tag, queue=c.queue.name, vhost=vhost,
                                    ack_required=not c.no_ack, exclusive=c.exclusive,
                                    prefetch_count=c.prefetch, priority=c.priority)
                       for c in list(self.consumers.values())],
        )

