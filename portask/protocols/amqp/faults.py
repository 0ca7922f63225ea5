"""Fault rules applied to AMQP methods (the control API).

The connection calls ``check`` for a channel's method frames only while
``Faults.amqp`` is set (an AMQP rule is installed), so a broker without one pays one
attribute read per method frame. A matching rule closes the channel (action ``error``)
or the connection (action ``close``) with the rule's code and text, as the broker
would for a real refusal: the client's own error handling runs.
"""

from __future__ import annotations

from portask.broker.control import Faults
from portask.protocols.amqp import frames
from portask.protocols.amqp.errors import ChannelClose, ConnectionClose


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
