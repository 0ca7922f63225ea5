"""Policies as clients feel them, run against Portask and a real RabbitMQ 3.10 with the
same expectations: a policy is set (Portask: ``PUT /api/policies``; RabbitMQ:
``rabbitmqctl set_policy``), then pika publishes and counts. RabbitMQ applies a policy
to its queues asynchronously, so counts are polled for a moment."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest

from tests.broker_process import start_broker
from tests.integration.management.conftest import Api


@dataclass
class PolicyBroker:
    kind: str
    amqp_port: int
    set_policy: Callable[[str, str, dict[str, Any], str], None]
    clear_policy: Callable[[str], None]


@pytest.fixture(scope="module", params=["portask", "rabbitmq"])
def broker(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyBroker]:
    if request.param == "rabbitmq":
        node = request.getfixturevalue("rabbitmq_node")

        def rabbit_set(name: str, pattern: str, definition: dict[str, Any],
                       apply_to: str) -> None:
            node.ctl("set_policy", "--apply-to", apply_to, name, pattern,
                     json.dumps(definition))

        yield PolicyBroker("rabbitmq", node.amqp_port, rabbit_set,
                           lambda name: node.ctl("clear_policy", name))
        return
    proc = start_broker(tmp_path_factory.mktemp("policies") / "data", management=True)
    api = Api(proc.management_port)

    def portask_set(name: str, pattern: str, definition: dict[str, Any],
                    apply_to: str) -> None:
        status, body = api.call("PUT", f"/policies/%2F/{name}", {
            "pattern": pattern, "definition": definition, "apply-to": apply_to})
        assert status in (201, 204), body

    def portask_clear(name: str) -> None:
        assert api.call("DELETE", f"/policies/%2F/{name}")[0] == 204

    yield PolicyBroker("portask", proc.amqp_port, portask_set, portask_clear)
    proc.stop()


@pytest.fixture
def channel(broker: PolicyBroker) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, connection_attempts=1))
    ch = connection.channel()
    ch.confirm_delivery()
    yield ch
    if connection.is_open:
        connection.close()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _count_becomes(channel: Any, queue: str, expected: int, within: float = 5.0) -> int:
    deadline = time.monotonic() + within
    while True:
        count = channel.queue_declare(queue, passive=True).method.message_count
        if count == expected or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.05)


def test_a_message_ttl_policy_expires_messages_even_under_a_longer_argument(
        broker: PolicyBroker, channel: Any) -> None:
    queue = _unique("ttl")
    broker.set_policy(queue, f"^{queue}$", {"message-ttl": 100}, "queues")
    try:
        # The queue's own 60 s TTL is longer: the policy's 100 ms (the smaller) rules.
        channel.queue_declare(queue, arguments={"x-message-ttl": 60_000})
        channel.basic_publish("", queue, b"short-lived")
        assert _count_becomes(channel, queue, 0) == 0
        assert channel.basic_get(queue, auto_ack=True)[0] is None
    finally:
        broker.clear_policy(queue)
        channel.queue_delete(queue)


def test_max_length_is_the_smaller_of_policy_and_argument(
        broker: PolicyBroker, channel: Any) -> None:
    small_arg, small_policy = _unique("maxlen-arg"), _unique("maxlen-pol")
    name = _unique("cap")
    broker.set_policy(name, f"^({small_arg}|{small_policy})$", {"max-length": 3}, "queues")
    try:
        channel.queue_declare(small_arg, arguments={"x-max-length": 2})
        channel.queue_declare(small_policy, arguments={"x-max-length": 8})
        for i in range(6):
            channel.basic_publish("", small_arg, b"%d" % i)
            channel.basic_publish("", small_policy, b"%d" % i)
        assert _count_becomes(channel, small_arg, 2) == 2
        assert _count_becomes(channel, small_policy, 3) == 3
        # drop-head: the oldest went.
        assert channel.basic_get(small_policy, auto_ack=True)[2] == b"3"
    finally:
        broker.clear_policy(name)
        channel.queue_delete(small_arg)
        channel.queue_delete(small_policy)


def test_a_policy_set_later_applies_to_an_existing_queue_and_clearing_it_lifts_it(
        broker: PolicyBroker, channel: Any) -> None:
    queue = _unique("later")
    channel.queue_declare(queue)
    for i in range(5):
        channel.basic_publish("", queue, b"%d" % i)
    broker.set_policy(queue, f"^{queue}$", {"max-length": 2}, "queues")
    try:
        assert _count_becomes(channel, queue, 2) == 2
    finally:
        broker.clear_policy(queue)
    time.sleep(0.2)
    for i in range(3):
        channel.basic_publish("", queue, b"%d" % i)
    assert _count_becomes(channel, queue, 5) == 5
    channel.queue_delete(queue)


def test_the_queue_dead_letter_argument_wins_over_the_policy(
        broker: PolicyBroker, channel: Any) -> None:
    queue, own, policy_dlx = _unique("dl"), _unique("own-dlx"), _unique("pol-dlx")
    for exchange in (own, policy_dlx):
        channel.exchange_declare(exchange, "fanout")
        channel.queue_declare(exchange)
        channel.queue_bind(exchange, exchange)
    broker.set_policy(queue, f"^{queue}$", {"dead-letter-exchange": policy_dlx,
                                            "max-length": 1}, "queues")
    try:
        channel.queue_declare(queue, arguments={"x-dead-letter-exchange": own})
        channel.basic_publish("", queue, b"first")
        channel.basic_publish("", queue, b"second")  # pushes "first" out: maxlen
        assert _count_becomes(channel, own, 1) == 1
        assert channel.queue_declare(policy_dlx, passive=True).method.message_count == 0
    finally:
        broker.clear_policy(queue)
        for name in (queue, own, policy_dlx):
            channel.queue_delete(name)
        for exchange in (own, policy_dlx):
            channel.exchange_delete(exchange)


def test_a_policy_for_exchanges_only_leaves_queues_alone(
        broker: PolicyBroker, channel: Any) -> None:
    queue = _unique("exonly")
    broker.set_policy(queue, f"^{queue}$", {"max-length": 1}, "exchanges")
    try:
        channel.queue_declare(queue)
        for i in range(3):
            channel.basic_publish("", queue, b"%d" % i)
        time.sleep(0.3)
        assert channel.queue_declare(queue, passive=True).method.message_count == 3
    finally:
        broker.clear_policy(queue)
        channel.queue_delete(queue)


def test_a_byte_limit_set_later_counts_what_a_durable_queue_already_holds(
        broker: PolicyBroker, channel: Any) -> None:
    queue = _unique("bytes")
    channel.queue_declare(queue, durable=True)
    for i in range(4):
        channel.basic_publish("", queue, b"%d" % i * 10,
                              pika.BasicProperties(delivery_mode=2))
    broker.set_policy(queue, f"^{queue}$", {"max-length-bytes": 25}, "queues")
    try:
        # 4 bodies of 10 bytes, 25 allowed: the two oldest go.
        assert _count_becomes(channel, queue, 2) == 2
        assert channel.basic_get(queue, auto_ack=True)[2] == b"2" * 10
    finally:
        broker.clear_policy(queue)
        channel.queue_delete(queue)
