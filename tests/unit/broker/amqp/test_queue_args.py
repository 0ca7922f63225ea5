"""Queue argument validation, without sockets (texts as RabbitMQ 3.10 sends them)."""

from __future__ import annotations

from typing import Any

import pytest

from portask.broker.amqp.errors import PreconditionFailed
from portask.broker.amqp.queue_args import parse_expiration, parse_max_age, parse_queue_arguments


def parse(arguments: dict[str, Any], durable: bool = False) -> Any:
    return parse_queue_arguments(arguments, queue="q", vhost="/", durable=durable,
                                 exclusive=False, auto_delete=False)


def test_typed_values() -> None:
    args = parse({"x-message-ttl": 10, "x-max-length": 3, "x-overflow": "reject-publish",
                  "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "k",
                  "x-max-priority": 10, "x-single-active-consumer": True, "x-foo": "bar"})
    assert (args.message_ttl, args.max_length, args.overflow) == (10, 3, "reject-publish")
    assert (args.dead_letter_exchange, args.dead_letter_routing_key) == ("dlx", "k")
    assert args.max_priority == 10 and args.single_active_consumer


def test_large_integers_are_named_long() -> None:
    with pytest.raises(PreconditionFailed) as info:
        parse({"x-overflow": 1 << 40})
    assert info.value.text.endswith("{unacceptable_type,long}")


def test_quorum_and_stream_arguments() -> None:
    assert parse({"x-queue-type": "quorum", "x-delivery-limit": 2}, durable=True
                 ).delivery_limit == 2
    stream = parse({"x-queue-type": "stream", "x-max-age": "7D",
                    "x-max-length-bytes": 1000}, durable=True)
    assert stream.max_age_ms == 7 * 86_400_000 and stream.max_length_bytes == 1000


@pytest.mark.parametrize(("value", "ms"), [("1Y", 365 * 86_400_000), ("2M", 60 * 86_400_000),
                                           ("1h", 3_600_000), ("90s", 90_000)])
def test_max_age_units(value: str, ms: int) -> None:
    assert parse_max_age(value) == ms


def test_expiration() -> None:
    assert parse_expiration("1500") == 1500
    for bad, text in (("abc", "no_integer"), (" 5", "no_integer"),
                      ("-5", "{value_negative,-5}")):
        with pytest.raises(PreconditionFailed) as info:
            parse_expiration(bad)
        assert info.value.text == f"invalid expiration '{bad}': {text}"
