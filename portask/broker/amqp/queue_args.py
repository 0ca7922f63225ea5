"""Queue arguments: RabbitMQ 3.10's validation, one validator per argument.

A refused value closes the channel with 406 and RabbitMQ's own text, e.g.
``invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,300}``
(checked against RabbitMQ 3.10.8). Type names in those texts come from the decoded
Python value (the wire type tag is gone by then): an int is ``signedint`` when it fits
32 bits and ``long`` otherwise, a str ``longstr``, and so on.

Known arguments that a queue type does not take are refused with RabbitMQ's "of queue
type" text; arguments nobody knows (``x-foo``) are kept and ignored, as RabbitMQ does.
"""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from portask.broker.amqp.errors import PreconditionFailed

CLASSIC, QUORUM, STREAM = "classic", "quorum", "stream"
_TYPE_MODULES = {CLASSIC: "rabbit_classic_queue", QUORUM: "rabbit_quorum_queue",
                 STREAM: "rabbit_stream_queue"}
MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
DLX_STRATEGIES = ("at-most-once", "at-least-once")
QUEUE_MODES = ("default", "lazy")
LEADER_LOCATORS = ("client-local", "balanced", "random", "least-leaders")
MASTER_LOCATORS = ("min-masters", "client-local", "random")
_MAX_AGE = re.compile(r"^([0-9]*)(.*)$")
_INTEGER = re.compile(r"^-?[0-9]+$")
_UNIT_MS = {"Y": 365 * 86_400_000, "M": 30 * 86_400_000, "D": 86_400_000,
            "h": 3_600_000, "m": 60_000, "s": 1000}


@dataclass(frozen=True, slots=True)
class QueueArgs:
    """The arguments a queue acts on, validated and typed."""

    kind: str = CLASSIC
    message_ttl: int | None = None
    expires: int | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int | None = None
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    max_age_ms: int | None = None
    stream_segment_bytes: int | None = None


def amqp_type(value: object) -> str:
    """RabbitMQ's name for the field-table type a decoded value most likely had."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(1 << 31) <= value < (1 << 31) else "long"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, float):
        return "double"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    return "void"


class _Invalid(Exception):
    """A validator's complaint, in the Erlang term RabbitMQ prints (``~p``)."""

    def __init__(self, term: str) -> None:
        super().__init__(term)
        self.term = term


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f'"expected integer, got {amqp_type(value)}"')
    return value


def _non_neg_int(value: object, _args: dict[str, Any]) -> int:
    number = _int(value)
    if number < 0:
        raise _Invalid(f"{{value_negative,{number}}}")
    return number


def _expiry(value: object, _args: dict[str, Any]) -> int:
    number = _int(value)
    if number < 0:
        raise _Invalid(f"{{value_negative,{number}}}")
    return number


def _expires(value: object, args: dict[str, Any]) -> int:
    number = _int(value)
    if number == 0:
        raise _Invalid("{value_zero,0}")
    return _expiry(number, args)


def _max_priority(value: object, args: dict[str, Any]) -> int:
    number = _non_neg_int(value, args)
    if number > MAX_PRIORITY:
        raise _Invalid(f"{{max_value_exceeded,{number}}}")
    return number


def _bool(value: object, _args: dict[str, Any]) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
    return value


def _one_of(choices: tuple[str, ...], error: str) -> Callable[[object, dict[str, Any]], str]:
    def check(value: object, _args: dict[str, Any]) -> str:
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if not isinstance(value, str):
            raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
        if value not in choices:
            raise _Invalid(error)
        return value

    return check


def _quoted_choice(what: str, choices: tuple[str, ...]) -> Callable[[object, dict[str, Any]], str]:
    def check(value: object, _args: dict[str, Any]) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _Invalid(f"\"unsupported {what} '{value}'\"")
        return value

    return check


def _dlx_routing_key(value: object, args: dict[str, Any]) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
    if "x-dead-letter-exchange" not in args:
        raise _Invalid("routing_key_but_no_dlx_defined")
    return value


def _dlx_name(value: object, _args: dict[str, Any]) -> str:
    return value  # type: ignore[return-value]  # its type is checked first, see below


def _queue_version(value: object, args: dict[str, Any]) -> int:
    number = _int(value)
    if number not in (1, 2):
        raise _Invalid(f"\"unsupported queue version '{number}'\"")
    return number


def _initial_size(value: object, args: dict[str, Any]) -> int:
    number = _non_neg_int(value, args)
    if number == 0:
        raise _Invalid("{value_zero,0}")
    return number


def parse_max_age(value: object) -> int:
    """x-max-age ("7D", "1h", "30s", ...) in milliseconds."""
    if not isinstance(value, str):
        raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
    match = _MAX_AGE.match(value)
    if match is None or not match.group(1) or int(match.group(1)) <= 0:
        raise _Invalid("invalid_max_age")
    unit = _UNIT_MS.get(match.group(2))
    if unit is None:
        raise _Invalid("invalid_max_age")
    return int(match.group(1)) * unit


def _max_age(value: object, _args: dict[str, Any]) -> int:
    return parse_max_age(value)


def _accept(value: object, _args: dict[str, Any]) -> object:
    return value


# In RabbitMQ's order: the first failing argument is the one reported.
_VALIDATORS: dict[str, Callable[[object, dict[str, Any]], object]] = {
    "x-expires": _expires,
    "x-message-ttl": _expiry,
    "x-dead-letter-exchange": _dlx_name,
    "x-dead-letter-routing-key": _dlx_routing_key,
    "x-dead-letter-strategy": _one_of(DLX_STRATEGIES, "invalid_dlx_strategy"),
    "x-max-length": _non_neg_int,
    "x-max-length-bytes": _non_neg_int,
    "x-max-in-memory-length": _non_neg_int,
    "x-max-in-memory-bytes": _non_neg_int,
    "x-max-priority": _max_priority,
    "x-overflow": _one_of(OVERFLOW_MODES, "invalid_overflow"),
    "x-queue-mode": _quoted_choice("queue mode", QUEUE_MODES),
    "x-queue-version": _queue_version,
    "x-single-active-consumer": _bool,
    "x-quorum-initial-group-size": _initial_size,
    "x-max-age": _max_age,
    "x-stream-max-segment-size-bytes": _non_neg_int,
    "x-initial-cluster-size": _initial_size,
    "x-queue-leader-locator": _one_of(LEADER_LOCATORS, "invalid_queue_locator_arg"),
    "x-queue-master-locator": _one_of(MASTER_LOCATORS, "invalid_queue_locator_arg"),
    "x-delivery-limit": _accept,
}

_TYPE_ARGS: dict[str, frozenset[str]] = {
    CLASSIC: frozenset({
        "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
        "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
        "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version",
        "x-single-active-consumer", "x-queue-master-locator",
    }),
    QUORUM: frozenset({
        "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
        "x-dead-letter-strategy", "x-max-length", "x-max-length-bytes",
        "x-max-in-memory-length", "x-max-in-memory-bytes", "x-overflow",
        "x-single-active-consumer", "x-quorum-initial-group-size", "x-delivery-limit",
        "x-queue-leader-locator",
    }),
    STREAM: frozenset({
        "x-max-length-bytes", "x-max-age", "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size", "x-queue-leader-locator",
    }),
}


KNOWN_ARGS = frozenset(_VALIDATORS) | {"x-queue-type"}


def _where(queue: str, vhost: str) -> str:
    return f"queue '{queue}' in vhost '{vhost}'"


def queue_type(arguments: dict[str, Any], queue: str, vhost: str) -> str:
    kind = arguments.get("x-queue-type", CLASSIC)
    if isinstance(kind, bytes):
        kind = kind.decode(errors="replace")
    if kind not in _TYPE_ARGS:
        raise PreconditionFailed(f"invalid arg 'x-queue-type' for {_where(queue, vhost)}: "
                                 f"\"unsupported queue type '{kind}'\"")
    return str(kind)


def parse_queue_arguments(
    arguments: dict[str, Any], *, queue: str, vhost: str, durable: bool, exclusive: bool,
    auto_delete: bool,
) -> QueueArgs:
    """Validate declare arguments as RabbitMQ 3.10 does; raises PreconditionFailed."""
    kind = queue_type(arguments, queue, vhost)
    allowed = _TYPE_ARGS[kind]
    dlx = arguments.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str) and "x-dead-letter-exchange" in allowed:
        # RabbitMQ's channel checks this one before the queue does, with another text.
        raise PreconditionFailed(f"invalid type '{amqp_type(dlx)}' for arg "
                                 f"'x-dead-letter-exchange' in {_where(queue, vhost)}")
    values: dict[str, Any] = {}
    for key, validate in _VALIDATORS.items():
        if key in arguments and key in allowed:
            try:
                values[key] = validate(arguments[key], arguments)
            except _Invalid as err:
                raise PreconditionFailed(
                    f"invalid arg '{key}' for {_where(queue, vhost)}: {err.term}"
                ) from None
    for key in arguments:
        if key in _VALIDATORS and key not in allowed:
            raise PreconditionFailed(f"invalid arg '{key}' for {_where(queue, vhost)} "
                                     f"of queue type {_TYPE_MODULES[kind]}")
    if kind != CLASSIC:
        for flag, name in ((not durable, "non-durable"), (exclusive, "exclusive-owner"),
                           (auto_delete, "auto-delete")):
            if flag:
                raise PreconditionFailed(f"invalid property '{name}' for "
                                         f"{_where(queue, vhost)}")
    limit = values.get("x-delivery-limit")
    return QueueArgs(
        kind=kind,
        message_ttl=values.get("x-message-ttl"),
        expires=values.get("x-expires"),
        max_length=values.get("x-max-length"),
        max_length_bytes=values.get("x-max-length-bytes"),
        overflow=values.get("x-overflow", "drop-head"),
        dead_letter_exchange=values.get("x-dead-letter-exchange"),
        dead_letter_routing_key=values.get("x-dead-letter-routing-key"),
        # x-max-priority 0 is accepted by RabbitMQ and means "no priorities".
        max_priority=values.get("x-max-priority") or None,
        single_active_consumer=bool(values.get("x-single-active-consumer", False)),
        # RabbitMQ 3.10 does not validate it; anything but a non-negative int is no limit.
        delivery_limit=limit if isinstance(limit, int) and not isinstance(limit, bool)
        and limit >= 0 else None,
        max_age_ms=values.get("x-max-age"),
        stream_segment_bytes=values.get("x-stream-max-segment-size-bytes") or None,
    )


def parse_expiration(value: str) -> int:
    """A message's expiration property in ms; PreconditionFailed with RabbitMQ's text."""
    if not _INTEGER.match(value):
        raise PreconditionFailed(f"invalid expiration '{value}': no_integer")
    number = int(value)
    if number < 0:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_negative,{number}}}")
    return number
