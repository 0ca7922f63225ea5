"""Peeking at AMQP queues through the control API: what pika sees afterwards is what it
would have seen without the peek (same messages, same order, redelivered=False)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pika
import pytest

from portask.testing import ControlClient, ControlError
from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("peek") / "data")
    yield proc
    proc.stop()


@pytest.fixture
def ctl(broker: BrokerProcess) -> ControlClient:
    return ControlClient(f"http://127.0.0.1:{broker.http_port}")


@pytest.fixture
def channel(broker: BrokerProcess) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def _name() -> str:
    return f"p{uuid.uuid4().hex[:8]}"


def _publish(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str,
             bodies: list[bytes], *, durable: bool = False,
             priorities: list[int] | None = None) -> None:
    for i, body in enumerate(bodies):
        channel.basic_publish("", queue, body, pika.BasicProperties(
            delivery_mode=2 if durable else 1,
            priority=priorities[i] if priorities else None,
            headers={"n": i}))


def _consume_all(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str
                 ) -> list[tuple[bytes, bool]]:
    seen = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return seen
        seen.append((body, method.redelivered))


QUEUE_KINDS = {
    "classic-transient": (False, {}),
    "classic-durable": (True, {}),
    "priority-durable": (True, {"x-max-priority": 5}),
    "priority-transient": (False, {"x-max-priority": 5}),
    "quorum": (True, {"x-queue-type": "quorum"}),
}


@pytest.mark.parametrize("kind", sorted(QUEUE_KINDS))
def test_peek_leaves_every_message_for_the_consumer_in_order(
        kind: str, channel: pika.adapters.blocking_connection.BlockingChannel,
        ctl: ControlClient) -> None:
    durable, arguments = QUEUE_KINDS[kind]
    queue = _name()
    channel.queue_declare(queue, durable=durable, arguments=arguments)
    bodies = [f"m{i}".encode() for i in range(6)]
    priorities = [1, 3, 1, 3, 0, 2] if "x-max-priority" in arguments else None
    _publish(channel, queue, bodies, durable=durable, priorities=priorities)
    ctl.wait_queue(queue, messages=6)

    peeked = ctl.peek_queue(queue)
    again = ctl.peek_queue(queue)
    consumed = _consume_all(channel, queue)

    assert [m["payload"].encode() for m in peeked] == [body for body, _ in consumed]
    assert again == peeked
    assert [m["position"] for m in peeked] == list(range(6))
    assert all(not m["redelivered"] for m in peeked)
    assert [redelivered for _, redelivered in consumed] == [False] * 6
    if priorities:
        assert [b for b, _ in consumed] == [b"m1", b"m3", b"m5", b"m0", b"m2", b"m4"]
    else:
        assert [b for b, _ in consumed] == bodies


def test_peek_works_while_a_consumer_holds_unacked_messages(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        ctl: ControlClient) -> None:
    queue = _name()
    channel.queue_declare(queue, durable=True)
    _publish(channel, queue, [b"a", b"b", b"c", b"d"], durable=True)
    channel.basic_qos(prefetch_count=2)
    held = []
    for method, _props, body in channel.consume(queue, inactivity_timeout=2):
        held.append((method.delivery_tag, body))
        if len(held) == 2:
            break
    assert [b for _, b in held] == [b"a", b"b"]

    assert [m["payload"] for m in ctl.peek_queue(queue)] == ["c", "d"]

    channel.cancel()
    # Back at the head, flagged redelivered.
    channel.basic_nack(held[-1][0], multiple=True, requeue=True)
    peeked = ctl.peek_queue(queue)
    assert [(m["payload"], m["redelivered"]) for m in peeked] == [
        ("a", True), ("b", True), ("c", False), ("d", False)]
    assert _consume_all(channel, queue) == [(b"a", True), (b"b", True), (b"c", False),
                                            (b"d", False)]


def test_peek_filters_by_routing_key_header_and_body_with_offset_and_limit(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        ctl: ControlClient) -> None:
    queue, exchange = _name(), _name()
    channel.exchange_declare(exchange, "topic")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, "#")
    for i, key in enumerate(["order.created", "order.paid", "user.created", "order.created"]):
        channel.basic_publish(exchange, key, json.dumps({"i": i}).encode(),
                              pika.BasicProperties(headers={"tenant": "acme" if i % 2 else "x",
                                                            "n": i}))
    ctl.wait_queue(queue, messages=4)

    by_key = ctl.peek_queue(queue, routing_key="order.*")
    assert [m["position"] for m in by_key] == [0, 1, 3]
    assert by_key[0]["exchange"] == exchange
    assert by_key[0]["properties"]["headers"]["tenant"] == "x"
    assert [m["position"] for m in ctl.peek_queue(queue, headers={"tenant": "acme"})] == [1, 3]
    assert [m["position"] for m in ctl.peek_queue(queue, headers={"n": "2"})] == [2]
    assert ctl.peek_queue(queue, headers={"absent": None}) == []
    assert [m["position"] for m in ctl.peek_queue(queue, body='"i": 2')] == [2]
    assert [m["position"] for m in ctl.peek_queue(queue, offset=1, limit=2)] == [1, 2]
    assert [m["position"] for m in ctl.peek_queue(
        queue, routing_key="order.created", headers={"tenant": "acme"})] == [3]
    assert len(_consume_all(channel, queue)) == 4


def test_peek_reads_a_stream_from_an_offset_and_a_dead_letter_queue(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        ctl: ControlClient) -> None:
    stream, dlx, dead, source = _name(), _name(), _name(), _name()
    channel.queue_declare(stream, durable=True, arguments={"x-queue-type": "stream"})
    _publish(channel, stream, [b"s0", b"s1", b"s2"], durable=True)
    ctl.wait_queue(stream, messages=3)
    assert [(m["position"], m["payload"]) for m in ctl.peek_queue(stream, offset=1)] == [
        (1, "s1"), (2, "s2")]

    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(source, arguments={"x-dead-letter-exchange": dlx})
    _publish(channel, source, [b"bad"])
    method, _props, _body = channel.basic_get(source)
    channel.basic_reject(method.delivery_tag, requeue=False)
    ctl.wait_queue(dead, messages=1)
    peeked = ctl.peek_queue(dead)
    assert peeked[0]["payload"] == "bad"
    assert peeked[0]["properties"]["headers"]["x-death"][0]["reason"] == "rejected"
    assert _consume_all(channel, dead) == [(b"bad", False)]


def test_peek_of_a_missing_queue_is_404(ctl: ControlClient) -> None:
    with pytest.raises(ControlError) as refused:
        ctl.peek_queue("no-such-queue")
    assert refused.value.status == 404


def test_ctl_peeks_a_queue(broker: BrokerProcess,
                           channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    queue = _name()
    channel.queue_declare(queue)
    _publish(channel, queue, [b"one", b"two", b"three"])
    done = subprocess.run([sys.executable, "-m", "portask", "ctl", "--url",
                           f"http://127.0.0.1:{broker.http_port}", "peek", "--queue", queue,
                           "--body", "t", "--header", "n:2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [m["payload"] for m in json.loads(done.stdout)] == ["three"]
    assert [b for b, _ in _consume_all(channel, queue)] == [b"one", b"two", b"three"]
