"""Policies: validation with RabbitMQ's texts, matching and priority, and how a policy
combines with a queue's own x-arguments (rabbit_amqqueue_process:process_args_policy)."""

from __future__ import annotations

from typing import Any

import pytest

from portask.broker.amqp.message_store import Message
from portask.broker.amqp.policies import (
    InvalidPolicy,
    Policy,
    effective_args,
    parse_policy,
    winning,
)
from portask.broker.amqp.queue_args import QueueArgs, parse_queue_arguments
from portask.broker.amqp.vhosts import VirtualHost


def _policy(name: str, pattern: str, definition: dict[str, Any], priority: int = 0,
            apply_to: str = "all") -> Policy:
    return parse_policy("/", name, {"pattern": pattern, "definition": definition,
                                     "priority": priority, "apply-to": apply_to})


def _args(arguments: dict[str, Any]) -> QueueArgs:
    return parse_queue_arguments(arguments, queue="q", vhost="/", durable=False,
                                 exclusive=False, auto_delete=False)


@pytest.mark.parametrize(("definition", "reason"), [
    ({"message-ttl": -1}, "-1 is not a valid message TTL"),
    ({"expires": 0}, "0 is not a valid queue expiry"),
    ({"max-length": "ten"}, '<<"ten">> is not a valid maximum length'),
    ({"overflow": "drop-tail"}, '<<"drop-tail">> is not a valid overflow value'),
    ({"queue-mode": "fast"}, '<<"fast">> is not a valid queue-mode value'),
    ({"dead-letter-exchange": 1}, "1 is not a valid dead letter exchange name"),
    ({"x-max-length": 1}, '[{<<"x-max-length">>,1}] are not recognised policy settings'),
    ({}, "no policy provided"),
])
def test_invalid_definitions_are_refused_with_rabbitmqs_reason(
        definition: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        _policy("p", ".*", definition)
    assert str(caught.value) == reason


def test_apply_to_and_pattern_are_checked() -> None:
    with pytest.raises(InvalidPolicy, match="apply-to 'streams' unrecognised"):
        _policy("p", ".*", {"max-length": 1}, apply_to="streams")
    with pytest.raises(InvalidPolicy, match="not a valid regular expression"):
        _policy("p", "(", {"max-length": 1})


def test_the_highest_priority_matching_policy_wins_and_the_pattern_is_searched() -> None:
    low = _policy("low", "^orders", {"max-length": 10}, priority=1)
    high = _policy("high", "ders", {"max-length": 5}, priority=7)
    exchanges = _policy("ex", ".*", {"alternate-exchange": "ae"}, priority=99,
                        apply_to="exchanges")
    policies = [low, high, exchanges]
    assert winning(policies, "queue", "orders.eu") is high
    assert winning(policies, "queue", "orders") is high
    assert winning(policies, "queue", "payments") is None
    assert winning(policies, "exchange", "orders") is exchanges


def test_numeric_limits_take_the_smaller_of_policy_and_argument() -> None:
    policy = _policy("p", ".*", {"max-length": 5, "message-ttl": 60_000, "expires": 9000,
                                 "max-length-bytes": 100})
    arguments = {"x-max-length": 10, "x-message-ttl": 1000}
    args = effective_args(_args(arguments), arguments, policy)
    assert (args.max_length, args.message_ttl, args.expires, args.max_length_bytes) == \
        (5, 1000, 9000, 100)


def test_the_queue_argument_wins_for_dead_lettering_and_overflow() -> None:
    policy = _policy("p", ".*", {"dead-letter-exchange": "pdlx",
                                 "dead-letter-routing-key": "prk",
                                 "overflow": "reject-publish"})
    arguments = {"x-dead-letter-exchange": "qdlx", "x-overflow": "drop-head"}
    args = effective_args(_args(arguments), arguments, policy)
    assert (args.dead_letter_exchange, args.dead_letter_routing_key, args.overflow) == \
        ("qdlx", "prk", "drop-head")
    bare = effective_args(_args({}), {}, policy)
    assert (bare.dead_letter_exchange, bare.overflow) == ("pdlx", "reject-publish")


def _message(body: bytes) -> Message:
    return Message("", "q", b"", body, False, 0, None)


def test_a_policy_set_later_trims_an_existing_queue_and_clearing_it_lifts_the_limit() -> None:
    vhost = VirtualHost("/")
    queue = vhost.declare_queue("jobs", owner=None, arguments={"x-max-length": 4})
    for i in range(4):
        queue.publish(_message(b"m%d" % i))
    vhost.set_policy(_policy("cap", "^jobs$", {"max-length": 2}))
    assert queue.message_count == 2
    assert queue.get(True)[1].body == b"m2"  # type: ignore[index]  # drop-head: oldest go
    vhost.clear_policy("cap")
    for i in range(5):
        queue.publish(_message(b"n%d" % i))
    assert queue.message_count == 4  # the queue's own x-max-length again


def test_a_byte_limit_from_a_policy_counts_what_is_already_queued() -> None:
    vhost = VirtualHost("/")
    queue = vhost.declare_queue("blobs", owner=None)
    for _ in range(3):
        queue.publish(_message(b"x" * 10))
    vhost.set_policy(_policy("bytes", "blobs", {"max-length-bytes": 25}))
    assert queue.message_count == 2
