"""Topic administration through confluent-kafka's and kafka-python's admin clients."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KpNewTopic

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import (
    bootstrap,
    consume_confluent,
    create_topic,
    messages,
    produce_confluent,
)


def _admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap(broker.kafka_port)})


def _topic_configs(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(10)


def test_create_with_configs_then_describe_shows_real_values(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    admin.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "60000"})])[topic].result(10)
    md = admin.list_topics(topic, timeout=10).topics[topic]
    assert sorted(md.partitions) == [0, 1]
    assert md.partitions[0].leader == 0 and md.partitions[0].replicas == [0]
    configs = _topic_configs(admin, topic)
    assert configs["retention.ms"].value == "60000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["max.message.bytes"].is_default


def test_create_refusals_have_kafka_error_codes(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    cases = {
        "rf3": (NewTopic(topic + "-rf", 1, 3), "INVALID_REPLICATION_FACTOR"),
        "bad-config": (
            NewTopic(topic + "-cfg", 1, 1, config={"retention.ms": "soon"}),
            "INVALID_CONFIG",
        ),
        "unknown-config": (
            NewTopic(topic + "-unk", 1, 1, config={"no.such": "1"}),
            "INVALID_CONFIG",
        ),
        "bad-name": (NewTopic("bad name!", 1, 1), "TOPIC_EXCEPTION"),
        "zero-partitions": (NewTopic(topic + "-zero", 0, 1), "INVALID_PARTITIONS"),
    }
    for label, (new, code) in cases.items():
        with pytest.raises(KafkaException) as err:
            admin.create_topics([new])[new.topic].result(10)
        assert err.value.args[0].name() == code, label
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    assert err.value.args[0].name() == "TOPIC_ALREADY_EXISTS"


def test_validate_only_creates_nothing(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    admin.create_topics([NewTopic(topic, 1, 1)], validate_only=True)[topic].result(10)
    assert topic not in admin.list_topics(timeout=10).topics


def test_alter_configs_incrementally_and_delete(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(10)
    assert _topic_configs(admin, topic)["retention.ms"].value == "120000"
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(10)
    assert _topic_configs(admin, topic)["retention.ms"].is_default
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("segment.bytes", "12", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException) as err:
        admin.incremental_alter_configs([bad])[bad].result(10)
    assert err.value.args[0].name() == "INVALID_CONFIG"


def test_broker_configs_are_described_from_settings(kafka_broker: BrokerProcess) -> None:
    admin = _admin(kafka_broker)
    resource = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["num.partitions"].value == "1"
    assert configs["auto.create.topics.enable"].value == "true"
    assert configs["log.segment.bytes"].value == str(128 << 20)
    assert configs["num.partitions"].is_read_only


def test_create_partitions_then_produce_to_the_new_one(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(10)
    with pytest.raises(KafkaException) as err:
        admin.create_partitions([NewPartitions(topic, 2)])[topic].result(10)
    assert err.value.args[0].name() == "INVALID_PARTITIONS"
    acked = produce_confluent(kafka_broker.kafka_port, topic, [(2, b"k", b"on-2", [])])
    assert acked == [(2, 0)]


def test_delete_records_moves_the_low_watermark(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    produce_confluent(kafka_broker.kafka_port, topic, messages(20, 1))
    result = admin.delete_records([TopicPartition(topic, 0, 12)])
    deleted = result[TopicPartition(topic, 0, 12)].result(10)
    assert deleted.low_watermark == 12
    got = consume_confluent(kafka_broker.kafka_port, topic, 1, 8, timeout=10)
    # Reading from 0 is out of range now; the consumer resets to the earliest, 12.
    assert sorted(m.offset for m in got) == list(range(12, 20))


def test_delete_topic_removes_it(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = _admin(kafka_broker)
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 2)
    produce_confluent(kafka_broker.kafka_port, topic, messages(10, 2))
    admin.delete_topics([topic])[topic].result(10)
    deadline = time.monotonic() + 5
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics(timeout=10).topics
    assert not (kafka_broker.data_dir / "logs" / "topics" / f"{topic}-0").exists()
    with pytest.raises(KafkaException) as err:
        admin.delete_topics([topic])[topic].result(10)
    assert err.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_kafka_python_admin_create_describe_delete(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(kafka_broker.kafka_port))
    topic = topic_name()
    try:
        admin.create_topics([KpNewTopic(topic, 2, 1, topic_configs={"retention.ms": "5000"})])
        assert topic in admin.list_topics()
        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 2
        admin.delete_topics([topic])
        assert topic not in admin.list_topics()
    finally:
        admin.close()
