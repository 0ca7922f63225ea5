"""The admin APIs a one-node broker can answer truthfully (issue 12): log dirs, leader
elections, partition reassignments, DescribeTopicPartitions' pagination and the broker's
configs, through kafka-python's and confluent-kafka's admin clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from confluent_kafka import ElectionType
from confluent_kafka import TopicPartition as CTP
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    InvalidReplicationAssignmentError,
    LogDirNotFoundError,
    NoError,
    NoReassignmentInProgressError,
    ReplicaNotAvailableError,
    UnknownTopicOrPartitionError,
)
from kafka.structs import TopicPartitionReplica

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import bootstrap, produce_confluent
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION = 84, 3
ELECT_LEADERS = 43


@pytest.fixture
def admin(kafka_broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap(kafka_broker.kafka_port))
    yield client
    client.close()


def _topic(admin: KafkaAdminClient, name: str, partitions: int) -> str:
    admin.create_topics([NewTopic(name, partitions, 1)])
    return name


def test_describe_log_dirs_reports_the_data_directory_and_partition_sizes(
    kafka_broker: BrokerProcess, admin: KafkaAdminClient, topic_name: Callable[[], str]
) -> None:
    topic = _topic(admin, topic_name(), 2)
    produce_confluent(kafka_broker.kafka_port, topic, [(1, b"k", b"v" * 1000, [])] * 5)
    [broker] = admin.describe_log_dirs()
    [log_dir] = broker["log_dirs"]
    expected_dir = (kafka_broker.data_dir / "logs" / "topics").resolve()
    assert log_dir["error_code"] == 0 and log_dir["log_dir"] == str(expected_dir)
    assert log_dir["total_bytes"] > 0 and 0 <= log_dir["usable_bytes"] <= log_dir["total_bytes"]
    [described] = [t for t in log_dir["topics"] if t["name"] == topic]
    sizes = {p["partition_index"]: p["partition_size"] for p in described["partitions"]}
    assert sizes[0] == 0 and sizes[1] > 5000
    assert {p["offset_lag"] for p in described["partitions"]} == {0}
    # Asking for one partition (and one that does not exist) answers only what is hosted.
    [broker] = admin.describe_log_dirs(topic_partitions={topic: [1], "no-such": [0]})
    [only] = broker["log_dirs"][0]["topics"]
    assert only["name"] == topic and [p["partition_index"] for p in only["partitions"]] == [1]


def test_alter_replica_log_dirs_accepts_only_the_one_log_dir(
    kafka_broker: BrokerProcess, admin: KafkaAdminClient, topic_name: Callable[[], str]
) -> None:
    topic = _topic(admin, topic_name(), 1)
    ours = str((kafka_broker.data_dir / "logs" / "topics").resolve())
    here = TopicPartitionReplica(topic, 0, 0)
    assert admin.alter_replica_log_dirs({here: ours}) == {here: NoError}
    result = admin.alter_replica_log_dirs({here: "/elsewhere"})
    assert result == {here: LogDirNotFoundError}
    missing = TopicPartitionReplica(topic, 5, 0)
    assert admin.alter_replica_log_dirs({missing: ours}) == {missing: ReplicaNotAvailableError}


def test_elect_leaders_answers_election_not_needed(
    kafka_broker: BrokerProcess, admin: KafkaAdminClient, topic_name: Callable[[], str]
) -> None:
    topic = _topic(admin, topic_name(), 2)
    response = admin.elect_leaders(0, {topic: [0, 1], "no-such-topic": [0]},
                                   raise_errors=False)
    results = {
        (r.topic, p.partition_id): (p.error_code, p.error_message)
        for r in response.replica_election_results for p in r.partition_result
    }
    assert results == {
        (topic, 0): (ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
        (topic, 1): (ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
        ("no-such-topic", 0): (UNKNOWN_TOPIC_OR_PARTITION, "No such topic as no-such-topic"),
    }
    # Every partition (null, which kafka-python never sends): none needed an election, so
    # none is listed, as in Kafka.
    m = request_types(ELECT_LEADERS, 2)
    client = WireClient(kafka_broker.kafka_port)
    try:
        client.send(encode_request(m.ElectLeadersRequest(election_type=1, topic_partitions=None,
                                                         timeout=timedelta(seconds=5)), 5))
        _, wire = client.read_response(ELECT_LEADERS, 2)
    finally:
        client.close()
    assert wire.error_code == 0 and topic in {r.topic for r in wire.replica_election_results}
    assert all(not r.partition_result for r in wire.replica_election_results)
    # confluent-kafka (librdkafka) reads the same answer as a per-partition error.
    confluent = AdminClient({"bootstrap.servers": bootstrap(kafka_broker.kafka_port)})
    found = confluent.elect_leaders(ElectionType.PREFERRED, [CTP(topic, 0)]).result(10)
    [(tp, error)] = found.items()
    assert (tp.topic, tp.partition) == (topic, 0)
    assert error is not None and error.code() == ELECTION_NOT_NEEDED


def test_partition_reassignments_accept_only_node_0(
    admin: KafkaAdminClient, topic_name: Callable[[], str]
) -> None:
    topic = _topic(admin, topic_name(), 1)
    tp = TopicPartition(topic, 0)
    assert admin.list_partition_reassignments() == {}
    assert admin.alter_partition_reassignments({tp: [0]}) == {tp: None}
    assert admin.alter_partition_reassignments({tp: [0, 1]}) == {
        tp: InvalidReplicationAssignmentError
    }
    assert admin.alter_partition_reassignments({tp: None}) == {tp: NoReassignmentInProgressError}
    missing = TopicPartition(topic, 9)
    assert admin.alter_partition_reassignments({missing: [0]}) == {
        missing: UnknownTopicOrPartitionError
    }
    assert admin.list_partition_reassignments() == {}


def test_describe_topic_partitions_pages_with_a_cursor(
    admin: KafkaAdminClient, topic_name: Callable[[], str]
) -> None:
    stem = topic_name()
    a, b = _topic(admin, f"{stem}-a", 3), _topic(admin, f"{stem}-b", 2)
    pages = []
    cursor = None
    while True:
        page = admin.describe_topic_partitions([b, a, f"{stem}-zz"], response_partition_limit=2,
                                               cursor=cursor)
        pages.append([(t["name"], t["error_code"], [p["partition_index"] for p in t["partitions"]])
                      for t in page["topics"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        [(a, 0, [0, 1])],
        [(a, 0, [2]), (b, 0, [0])],
        [(b, 0, [1]), (f"{stem}-zz", UNKNOWN_TOPIC_OR_PARTITION, [])],
    ]


def test_broker_configs_list_kafka_names_with_this_brokers_values(
    kafka_broker: BrokerProcess,
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap(kafka_broker.kafka_port)})
    resource = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([resource])[resource].result(10)
    port = kafka_broker.kafka_port
    assert configs["listeners"].value == f"PLAINTEXT://127.0.0.1:{port}"
    assert configs["advertised.listeners"].value == f"PLAINTEXT://127.0.0.1:{port}"
    assert configs["log.dirs"].value == str((kafka_broker.data_dir / "logs" / "topics").resolve())
    assert configs["group.min.session.timeout.ms"].value == "6000"
    assert configs["group.min.session.timeout.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert all(c.is_read_only for c in configs.values())
    secret = configs["sasl.jaas.config"]
    assert secret.is_sensitive and secret.value is None
    assert not configs["num.partitions"].is_sensitive
