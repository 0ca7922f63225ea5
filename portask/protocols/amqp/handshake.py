"""The connection class's negotiation, as pure functions of what the client sent.

Connection.Start advertises RabbitMQ's capabilities, because client libraries turn
features on by them; Start-Ok carries the credentials (PLAIN or AMQPLAIN); Tune-Ok may
lower the offered limits but not raise them. The handlers that apply these live on
``AmqpConnection`` (``on_connection_start_ok`` ...), which owns the connection's state.
"""

from __future__ import annotations

import platform
import struct
from typing import Any

from pamqp import commands

from portask import __version__
from portask.protocols.amqp import fields
from portask.protocols.amqp.constants import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
)
from portask.protocols.amqp.errors import ConnectionClose

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


def connection_start(external: bool = False) -> commands.Connection.Start:
    """``external``: the client presented a verified certificate, so EXTERNAL is offered
    (as RabbitMQ's rabbitmq_auth_mechanism_ssl offers it only then)."""
    return commands.Connection.Start(
        version_major=0, version_minor=9, server_properties=server_properties(),
        mechanisms="PLAIN AMQPLAIN EXTERNAL" if external else "PLAIN AMQPLAIN",
        locales="en_US",
    )


def credentials(mechanism: str, response: Any) -> tuple[str, str]:
    """(user, password) from a Start-Ok response; 403 when it cannot carry them."""
    raw = response.encode() if isinstance(response, str) else bytes(response or b"")
    if mechanism == "PLAIN":
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            raise ConnectionClose(ACCESS_REFUSED, "malformed PLAIN response")
        return parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
    if mechanism == "AMQPLAIN":
        try:  # the response is a field table without its length prefix
            table, _end = fields.table(struct.pack(">I", len(raw)) + raw, 0, len(raw) + 4)
        except fields.FieldError:
            raise ConnectionClose(ACCESS_REFUSED, "malformed AMQPLAIN response") from None
        return str(table.get("LOGIN", "")), str(table.get("PASSWORD", ""))
    raise ConnectionClose(COMMAND_INVALID, f"unknown authentication mechanism '{mechanism}'")


def check_tune_ok(m: commands.Connection.TuneOk, frame_max: int, channel_max: int) -> None:
    """RabbitMQ's rule: the client may lower the offered limits, never raise them or ask
    for "unlimited" (0) when the server has a limit; 530 otherwise."""
    for name, value, server_max, minimum in (
        ("frame_max", m.frame_max, frame_max, FRAME_MIN_SIZE),
        ("channel_max", m.channel_max, channel_max, 1),
    ):
        if value == 0 or value > server_max:
            raise ConnectionClose(NOT_ALLOWED, f"negotiated {name} = {value} is higher "
                                  f"than the maximum allowed value ({server_max})")
        if value < minimum:
            raise ConnectionClose(NOT_ALLOWED, f"negotiated {name} = {value} is lower "
                                  f"than the minimum allowed value ({minimum})")
