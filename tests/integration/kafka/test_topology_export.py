"""Kafka topics and ACLs out of one broker and into a fresh one: created with
confluent-kafka's admin client, exported with ``portask ctl export-kafka``, loaded by
``portask serve --topics FILE`` (and ``portask ctl import-kafka``), described again with
the admin client. Also the ``kafka-topics.sh``/``kafka-acls.sh`` commands for a real
cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from tests.broker_process import BrokerProcess, start_broker

# Anonymous clients may do anything (they are super users), so the test's admin client
# can manage ACLs with the authorizer on.
AUTHORIZER = ("--set", "kafka.authorizer=true", "--set", "kafka.super_users=User:ANONYMOUS",
              "--set", "kafka.auto_create_topics=false")

TOPICS = {
    "orders": (3, {"cleanup.policy": "compact", "retention.ms": "86400000"}),
    "events": (1, {}),
    "audit.log": (2, {"max.message.bytes": "2000000", "compression.type": "zstd"}),
}
ACLS = [
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:app", "*",
               AclOperation.WRITE, AclPermissionType.ALLOW),
    AclBinding(ResourceType.GROUP, "app-", ResourcePatternType.PREFIXED, "User:app", "*",
               AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
               "User:ops", "10.0.0.1", AclOperation.DESCRIBE, AclPermissionType.DENY),
    AclBinding(ResourceType.TRANSACTIONAL_ID, "*", ResourcePatternType.LITERAL, "User:app",
               "*", AclOperation.WRITE, AclPermissionType.ALLOW),
]


def _admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})


def _described(broker: BrokerProcess) -> tuple[dict[str, tuple[int, dict[str, str]]],
                                               set[tuple[object, ...]]]:
    """Topics (partitions, overridden configs) and ACLs as the admin client sees them."""
    admin = _admin(broker)
    metadata = admin.list_topics(timeout=10)
    topics: dict[str, tuple[int, dict[str, str]]] = {}
    for name, topic in metadata.topics.items():
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        configs = admin.describe_configs([resource])[resource].result(10)
        overrides = {k: c.value for k, c in configs.items()
                     if c.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}
        topics[name] = (len(topic.partitions), overrides)
    acls = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(10)
    return topics, {(a.restype, a.name, a.resource_pattern_type, a.principal, a.host,
                     a.operation, a.permission_type) for a in acls}


def _ctl(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portask", "ctl", "--url", f"http://127.0.0.1:{broker.http_port}",
         *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    broker = start_broker(tmp_path_factory.mktemp("source") / "data", *AUTHORIZER)
    admin = _admin(broker)
    futures = admin.create_topics([NewTopic(name, num_partitions=n, replication_factor=1,
                                            config=configs)
                                   for name, (n, configs) in TOPICS.items()])
    for future in futures.values():
        future.result(10)
    for future in admin.create_acls(ACLS).values():
        future.result(10)
    yield broker
    broker.stop()


def test_exported_file_loads_into_a_fresh_broker_with_the_same_topics_and_acls(
        source: BrokerProcess, tmp_path: Path) -> None:
    expected_topics, expected_acls = _described(source)
    assert expected_topics == {name: (n, configs) for name, (n, configs) in TOPICS.items()}
    assert len(expected_acls) == len(ACLS)
    exported = tmp_path / "topics.yaml"
    answer = _ctl(source, "export-kafka", "--output", str(exported))
    assert answer.returncode == 0, answer.stderr
    doc = yaml.safe_load(exported.read_text())
    assert [t["name"] for t in doc["topics"]] == ["audit.log", "events", "orders"]
    assert {"resource_type": "GROUP", "resource_name": "app-", "pattern_type": "PREFIXED",
            "principal": "User:app", "host": "*", "operation": "READ",
            "permission": "ALLOW"} in doc["acls"]

    fresh = start_broker(tmp_path / "fresh", "--topics", str(exported), *AUTHORIZER)
    try:
        assert _described(fresh) == (expected_topics, expected_acls)
        # Loading the same file again (the control API, as `ctl import-kafka`) changes
        # nothing; a file with more partitions and another config changes that topic.
        again = _ctl(fresh, "import-kafka", str(exported))
        assert again.returncode == 0, again.stderr
        assert '"created": 0' in again.stdout and '"acls": 0' in again.stdout
        for topic in doc["topics"]:
            if topic["name"] == "events":
                topic["partitions"] = 4
                topic["configs"] = {"retention.ms": "60000"}
        doc["topics"].append({"name": "new-one", "partitions": 2})
        changed = tmp_path / "changed.yaml"
        changed.write_text(yaml.safe_dump(doc))
        applied = _ctl(fresh, "import-kafka", str(changed))
        assert applied.returncode == 0, applied.stderr
        topics, _ = _described(fresh)
        assert topics["events"] == (4, {"retention.ms": "60000"})
        assert topics["new-one"] == (2, {})
        # A file that would take partitions away is refused whole, naming the topic.
        for topic in doc["topics"]:
            if topic["name"] == "orders":
                topic["partitions"] = 1
        doc["topics"].append({"name": "never-created", "partitions": 1})
        changed.write_text(yaml.safe_dump(doc))
        refused = _ctl(fresh, "import-kafka", str(changed))
        assert refused.returncode == 2
        assert ("topic 'orders' has 3 partitions and the file asks for 1: partitions "
                "cannot be removed") in refused.stderr
        assert "never-created" not in _described(fresh)[0]
        typo = tmp_path / "typo.yaml"
        typo.write_text("topics:\n  - name: x\n    partitons: 3\n")
        bad = _ctl(fresh, "import-kafka", str(typo))
        assert bad.returncode == 2
        assert f"{typo}: topics[0]: unknown key 'partitons'" in bad.stderr
    finally:
        fresh.stop()
    # The fresh broker keeps them: they are durable like any topic and ACL.
    restarted = start_broker(tmp_path / "fresh", *AUTHORIZER)
    try:
        topics, acls = _described(restarted)
        assert acls == expected_acls and topics["events"] == (4, {"retention.ms": "60000"})
    finally:
        restarted.stop()


def test_kafka_cli_format_writes_the_commands_for_a_real_cluster(
        source: BrokerProcess) -> None:
    answer = _ctl(source, "export-kafka", "--format", "kafka-cli",
                  "--bootstrap-server", "kafka-1:9092", "--replication-factor", "3")
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    assert lines[:3] == ["#!/bin/sh",
                         "# Topics and ACLs exported from Portask (portask ctl export-kafka).",
                         "set -e"]
    assert lines[3:] == [
        "kafka-topics.sh --bootstrap-server kafka-1:9092 --create --if-not-exists --topic "
        "audit.log --partitions 2 --replication-factor 3 --config compression.type=zstd "
        "--config max.message.bytes=2000000",
        "kafka-topics.sh --bootstrap-server kafka-1:9092 --create --if-not-exists --topic "
        "events --partitions 1 --replication-factor 3",
        "kafka-topics.sh --bootstrap-server kafka-1:9092 --create --if-not-exists --topic "
        "orders --partitions 3 --replication-factor 3 --config cleanup.policy=compact "
        "--config retention.ms=86400000",
        # ACLs in Portask's order: by resource type (TOPIC 2, GROUP 3, CLUSTER 4, ...).
        "kafka-acls.sh --bootstrap-server kafka-1:9092 --add --allow-principal User:app "
        "--allow-host '*' --operation Write --topic orders --resource-pattern-type literal",
        "kafka-acls.sh --bootstrap-server kafka-1:9092 --add --allow-principal User:app "
        "--allow-host '*' --operation Read --group app- --resource-pattern-type prefixed",
        "kafka-acls.sh --bootstrap-server kafka-1:9092 --add --deny-principal User:ops "
        "--deny-host 10.0.0.1 --operation Describe --cluster --resource-pattern-type literal",
        "kafka-acls.sh --bootstrap-server kafka-1:9092 --add --allow-principal User:app "
        "--allow-host '*' --operation Write --transactional-id '*' "
        "--resource-pattern-type literal",
    ]


@pytest.mark.parametrize(("content", "message"), [
    ("topics:\n  - name: orders\n    partitions: zero\n",
     "topics[0].partitions: 'zero' is not an integer between 1 and 10000"),
    ("topics:\n  - name: orders\n    configs: {retention.mss: 1}\n",
     "topics[0].configs (orders): unknown topic config 'retention.mss'"),
    ("acls:\n  - {resource_type: TOPIK, resource_name: a, pattern_type: LITERAL,"
     " principal: 'User:a', host: '*', operation: READ, permission: ALLOW}\n",
     "acls[0].resource_type: 'TOPIK' is not one of TOPIC, GROUP, CLUSTER"),
    ("topics: [\n", "not valid YAML at line 2"),
])
def test_a_bad_topics_file_stops_the_broker_naming_entry_key_and_value(
        tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(content)
    with pytest.raises(RuntimeError) as err:
        start_broker(tmp_path / "data", "--topics", str(path))
    assert f"portask: error: kafka.topics_file: {path}: {message}" in str(err.value)
