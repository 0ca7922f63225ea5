"""The control API's request log with real clients: what a test can assert about the
requests its application sent (Kafka and AMQP)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from portask.testing import Broker, ControlClient
from tests.broker_process import BrokerProcess, start_broker
from tests.integration.control import (
    bootstrap,
    create_topic,
    recording_control,
    unique_name,
)


@pytest.fixture(scope="module")
def log_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("requests") / "data",
                        "--set", "http.control_request_log_size=500",
                        "--set", "kafka.auto_create_topics=false")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def ctl(log_broker: BrokerProcess) -> Iterator[ControlClient]:
    yield from recording_control(log_broker)


def _name() -> str:
    return unique_name("r")




def test_the_log_shows_the_producer_sent_acks_all(log_broker: BrokerProcess,
                                                  ctl: ControlClient) -> None:
    topic = _name()
    create_topic(log_broker, topic, partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap(log_broker), "acks": "all",
                         "client.id": "billing"})
    producer.produce(topic, b"x" * 100, partition=1)
    assert producer.flush(10) == 0
    [produce] = ctl.requests(api="Produce", topic=topic)
    assert produce["details"]["acks"] == -1
    assert produce["client_id"] == "billing"
    assert produce["partitions"] == [[topic, 1]]
    assert produce["size"] > 100 and produce["response_size"] > 0
    assert produce["errors"] == [] and produce["duration_ms"] >= 0
    quiet = Producer({"bootstrap.servers": bootstrap(log_broker), "acks": 0,
                      "client.id": "fire-and-forget"})
    quiet.produce(topic, b"y", partition=0)
    assert quiet.flush(10) == 0
    [unanswered] = ctl.requests(api="Produce", client_id="fire-and-forget")
    assert unanswered["details"]["acks"] == 0 and unanswered["response_size"] == 0


def test_the_log_shows_the_consumer_committed_offset_42(log_broker: BrokerProcess,
                                                       ctl: ControlClient) -> None:
    topic = group = _name()
    create_topic(log_broker, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap(log_broker), "group.id": group,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
    finally:
        consumer.close()
    [commit] = ctl.requests(api="OffsetCommit", topic=topic)
    assert commit["details"]["group_id"] == group
    assert commit["details"]["offsets"] == [{"topic": topic, "partition": 0, "offset": 42}]
    assert commit["errors"] == []


def test_answers_with_errors_are_found_by_their_codes(log_broker: BrokerProcess,
                                                     ctl: ControlClient) -> None:
    missing = _name()
    admin = AdminClient({"bootstrap.servers": bootstrap(log_broker)})
    metadata = admin.list_topics(missing, timeout=10)
    assert metadata.topics[missing].error is not None
    [refused] = [r for r in ctl.requests(api="Metadata", topic=missing, errors=True)][-1:]
    assert refused["errors"] == ["UNKNOWN_TOPIC_OR_PARTITION"]
    assert all(r["errors"] or r["error"] for r in ctl.requests(errors=True))


def test_amqp_methods_are_logged_with_names_sizes_and_reply_codes(
        log_broker: BrokerProcess, ctl: ControlClient) -> None:
    queue = _name()
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", log_broker.amqp_port, client_properties={"connection_name": "orders"}))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"z" * 1000)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare(_name(), passive=True)
    connection.close()
    methods = ctl.requests(protocol="amqp", client_id="orders")
    names = [m["api"] for m in methods]
    # Methods on open channels (the channel's own opening is not one of them).
    assert names[:3] == ["queue.declare", "confirm.select", "basic.publish"]
    declare = methods[0]
    assert declare["details"]["queue"] == queue and declare["details"]["durable"] is True
    assert declare["reply_code"] == 200 and declare["response_size"] > 0
    [publish] = ctl.requests(api="basic.publish", queue=None, client_id="orders")
    assert publish["details"] == {"exchange": "", "routing_key": queue, "mandatory": False}
    assert publish["size"] > 1000 and publish["channel"] == declare["channel"]
    [failed] = ctl.requests(protocol="amqp", client_id="orders", errors=True)
    assert (failed["api"], failed["reply_code"]) == ("queue.declare", 404)
    assert ctl.requests(queue=queue)[0]["api"] == "queue.declare"


def test_the_log_is_a_ring_of_the_size_asked(log_broker: BrokerProcess,
                                             ctl: ControlClient) -> None:
    ctl.record_requests(size=3)
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", log_broker.amqp_port))
        channel = connection.channel()
        for _ in range(5):
            channel.queue_declare(_name())
        connection.close()
        assert len(ctl.requests()) == 3
        assert ctl.clear_requests() == 3
        assert ctl.requests() == []
    finally:
        ctl.record_requests(size=500)


def test_broker_requests_and_ctl_read_the_log(tmp_path: Path) -> None:
    with Broker(tmp_path / "data") as broker:
        broker.record_requests()
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        connection.channel().queue_declare("audit")
        connection.close()
        assert [r["details"]["queue"] for r in broker.requests(api="queue.declare")] == [
            "audit"]
        listed = subprocess.run(
            [sys.executable, "-m", "portask", "ctl", "--url", broker.http_url, "requests",
             "list", "--queue", "audit"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert [r["api"] for r in json.loads(listed.stdout)] == ["queue.declare"]
