"""Flower's broker tab against Portask: Flower's own RabbitMQ client (flower.utils.broker),
configured as Flower's ``--broker`` and ``--broker_api`` options configure it, reads the
queue depths the tab shows (messages, ready, unacknowledged, consumers)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pika
from flower.utils.broker import Broker, RabbitMQ

from tests.broker_process import BrokerProcess


def _flower_queues(broker_url: str, broker_api: str, names: list[str]) -> list[dict[str, Any]]:
    # As flower.views.BaseHandler.get_broker builds it for an amqp transport.
    flower_broker = Broker(broker_url, http_api=broker_api, broker_options={},
                           broker_use_ssl=None)
    assert isinstance(flower_broker, RabbitMQ)
    return asyncio.run(flower_broker.queues(names))  # type: ignore[no-any-return]


def test_flower_broker_tab_reads_queue_depths(mgmt_broker: BrokerProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    busy, idle, consumed = f"celery-{tag}", f"idle-{tag}", f"consumed-{tag}"
    params = pika.ConnectionParameters("127.0.0.1", mgmt_broker.amqp_port)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        for name in (busy, idle, consumed):
            ch.queue_declare(name)
        for i in range(7):
            ch.basic_publish("", busy, f"task {i}".encode())
        ch.basic_publish("", consumed, b"x")
        # Two taken and not acknowledged: Flower shows them apart from the ready ones.
        taken = [ch.basic_get(busy)[0] for _ in range(2)]
        assert all(method is not None for method in taken)
        other = conn.channel()
        other.basic_consume(consumed, lambda *_args: None)
        conn.process_data_events(time_limit=0.5)

        api = f"http://guest:guest@127.0.0.1:{mgmt_broker.management_port}/api/"
        amqp = f"127.0.0.1:{mgmt_broker.amqp_port}"
        # Celery's default broker URL names the vhost "/" as "//"; without a path it is "/".
        for broker_url in (f"amqp://guest:guest@{amqp}//", f"amqp://guest:guest@{amqp}"):
            shown = _flower_queues(broker_url, api, [busy, idle, consumed, f"absent-{tag}"])
            by_name = {q["name"]: q for q in shown}
            assert sorted(by_name) == sorted([busy, idle, consumed]), broker_url
            assert (by_name[busy]["messages"], by_name[busy]["messages_ready"],
                    by_name[busy]["messages_unacknowledged"],
                    by_name[busy]["consumers"]) == (7, 5, 2, 0)
            assert (by_name[idle]["messages"], by_name[idle]["consumers"]) == (0, 0)
            assert by_name[consumed]["consumers"] == 1
            assert (by_name[consumed]["messages_ready"],
                    by_name[consumed]["messages_unacknowledged"]) == (0, 1)

        # Wrong credentials: Flower logs the failure and shows no queues, as with RabbitMQ.
        bad_api = f"http://guest:wrong@127.0.0.1:{mgmt_broker.management_port}/api/"
        assert _flower_queues(f"amqp://guest:guest@{amqp}//", bad_api, [busy]) == []
        for name in (busy, idle, consumed):
            ch.queue_delete(name)
