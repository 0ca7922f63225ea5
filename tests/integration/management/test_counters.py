"""Queue depths and message_stats against real AMQP traffic (pika)."""

from __future__ import annotations

import time
import uuid

import pika

from tests.broker_process import BrokerProcess
from tests.integration.management.conftest import Api


def _wait_for(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_depths_consumers_and_message_stats_follow_traffic(api: Api,
                                                           mgmt_broker: BrokerProcess) -> None:
    q = f"stats-{uuid.uuid4().hex[:8]}"
    params = pika.ConnectionParameters("127.0.0.1", mgmt_broker.amqp_port)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(q)
        for i in range(10):
            ch.basic_publish("", q, f"m{i}".encode())
        shown = api.get(f"/queues/%2F/{q}")
        assert (shown["messages"], shown["messages_ready"],
                shown["messages_unacknowledged"], shown["consumers"]) == (10, 10, 0, 0)
        assert shown["message_stats"]["publish"] == 10

        consumer = conn.channel()
        consumer.basic_qos(prefetch_count=4)
        got = []
        tag = consumer.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
        while len(got) < 4:
            conn.process_data_events(time_limit=0.1)
        shown = api.get(f"/queues/%2F/{q}")
        assert (shown["messages"], shown["messages_ready"],
                shown["messages_unacknowledged"], shown["consumers"]) == (10, 6, 4, 1)
        consumer.basic_ack(got[2], multiple=True)  # acks 3
        consumer.basic_nack(got[3], requeue=True)  # redelivered later
        while len(got) < 8:
            conn.process_data_events(time_limit=0.1)
        consumer.basic_cancel(tag)  # no more deliveries; the 4 in flight stay unacked
        for delivery in got[4:]:
            consumer.basic_ack(delivery)
        conn.process_data_events(time_limit=0.2)

        def settled() -> dict | None:  # type: ignore[type-arg]
            s = api.get(f"/queues/%2F/{q}")
            return s if s["message_stats"]["ack"] == 7 else None

        shown = _wait_for(settled)
        assert shown, api.get(f"/queues/%2F/{q}")
        stats = shown["message_stats"]
        # deliver_get and redeliver are copied from the connection once a second.
        shown = _wait_for(lambda: (s := api.get(f"/queues/%2F/{q}"))["message_stats"]
                          ["deliver_get"] == 8 and s, timeout=3)
        assert shown, api.get(f"/queues/%2F/{q}")["message_stats"]
        stats = shown["message_stats"]
        assert (stats["publish"], stats["deliver_get"], stats["ack"], stats["redeliver"]) == \
            (10, 8, 7, 1)
        assert (shown["messages"], shown["messages_ready"],
                shown["messages_unacknowledged"], shown["consumers"]) == (3, 3, 0, 0)
        for name in ("publish", "deliver_get", "ack", "redeliver"):
            assert isinstance(stats[f"{name}_details"]["rate"], float)
        overview = api.get("/overview")
        assert overview["message_stats"]["publish"] >= 10
        assert overview["message_stats"]["confirm"] >= 10
        consumer.close()
        ch.queue_delete(q)


def test_rates_are_per_second_over_the_last_sample(api: Api,
                                                   mgmt_broker: BrokerProcess) -> None:
    q = f"rate-{uuid.uuid4().hex[:8]}"
    params = pika.ConnectionParameters("127.0.0.1", mgmt_broker.amqp_port)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(q)
        # Counters are sampled every 5 s: wait until a sample of this queue exists.
        time.sleep(5.5)
        started = time.monotonic()
        for _ in range(50):
            ch.basic_publish("", q, b"x")
        shown = api.get(f"/queues/%2F/{q}")
        rate = shown["message_stats"]["publish_details"]["rate"]
        # 50 publishes over at most the time since the sample (< 11 s incl. this one).
        elapsed_bound = 5.5 + (time.monotonic() - started) + 5.0
        assert rate >= 50 / elapsed_bound, rate
        assert shown["messages_details"]["rate"] > 0
        ch.queue_delete(q)
