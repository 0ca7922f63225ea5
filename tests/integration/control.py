"""What the control-API tests share: a recording control client, topics made with the
admin client, and names no other test uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka.admin import AdminClient, NewTopic

from portask.testing import ControlClient
from tests.broker_process import BrokerProcess


def recording_control(broker: BrokerProcess) -> Iterator[ControlClient]:
    """A control client with the request log on; faults and the log cleared after."""
    client = ControlClient(f"http://127.0.0.1:{broker.http_port}")
    client.record_requests()
    yield client
    client.clear_faults()
    client.record_requests(False)
    client.clear_requests()


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def bootstrap(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.kafka_port}"


def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap(broker)})


def create_topic(broker: BrokerProcess, name: str, partitions: int = 1) -> None:
    client = admin(broker)  # kept until the answer: a collected client cancels it
    client.create_topics([NewTopic(name, partitions)])[name].result(10)
