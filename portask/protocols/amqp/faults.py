"""Fault rules applied to AMQP methods (the control API).

The connection calls ``check`` for a channel's method frames only while
``Faults.amqp`` is set (an AMQP rule is installed), so a broker without one pays one
attribute read per method frame. A matching rule closes the channel (action ``error``)
or the connection (action ``close``) with the rule's code and text, as the broker
would for a real refusal: the client's own error handling runs.

A ``nack`` rule is asked apart, by a confirming channel once a publish is complete
(``Faults.amqp_nack``): the publish is not routed and the client gets Basic.Nack for it,
as from a queue that could not take it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portask.broker.control import Faults
from portask.protocols.amqp import frames
from portask.protocols.amqp.errors import ChannelClose, ConnectionClose

if TYPE_CHECKING:
    from portask.broker.amqp.exchanges import Exchange
    from portask.broker.amqp.queues import Message
    from portask.broker.amqp.vhosts import VirtualHost


def check(faults: Faults, payload: bytes) -> None:
    """Raise the close a matching rule asks for; return when none matches."""
    try:
        method = frames.decode_method(payload)
    except (frames.FrameSyntaxError, LookupError):
        return  # the normal path refuses it with the proper error
    rule = faults.take_amqp(method.name.lower(), getattr(method, "queue", None),
                            getattr(method, "exchange", None))
    if rule is None:
        return
    assert rule.code is not None and rule.text is not None
    class_id, method_id = method.index >> 16, method.index & 0xFFFF
    if rule.action == "error":
        raise ChannelClose(rule.code, rule.text, class_id, method_id)
    raise ConnectionClose(rule.code, rule.text, class_id, method_id)


def nacked(faults: Faults, vhost: VirtualHost, exchange: Exchange, message: Message) -> bool:
    """Whether a nack rule takes this publish: matched on exchange and routing key, and
    on the queues it would reach when the rule names a queue."""
    names: tuple[str | None, ...] = (None,)
    if any(r.action == "nack" and r.queue is not None for r in faults.rules):
        queues = vhost.route(exchange, message.routing_key,
                             lambda: frames.headers_from_properties(message.properties))
        names = tuple(q.name for q in queues) or (None,)
    return any(faults.take_amqp("basic.publish", name, exchange.name, message.routing_key,
                                nack=True) is not None for name in names)
