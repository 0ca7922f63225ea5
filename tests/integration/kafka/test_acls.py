"""Kafka ACLs with real clients: confluent-kafka's and kafka-python's admin clients
create, describe and delete them; producers and consumers without permission get the
codes a Kafka 3.7 broker with an authorizer answers."""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kafka import KafkaProducer
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KPResourceType
from kafka.errors import SecurityDisabledError, TopicAuthorizationFailedError

from tests.broker_process import BrokerProcess, start_broker

USERS = "admin:admin-pw,alice:alice-pw,bob:bob-pw"
ANY_FILTER = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                              AclOperation.ANY, AclPermissionType.ANY)


def _start(data: Path, *extra: str) -> BrokerProcess:
    return start_broker(data, "--set", "kafka.authorizer=true",
                        "--set", "kafka.super_users=User:admin", *extra,
                        env={"PORTASK_AUTH_USERS": USERS})


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = _start(tmp_path_factory.mktemp("acls") / "data")
    yield proc
    proc.stop()


def _conf(broker: BrokerProcess, user: str, **extra: object) -> dict[str, object]:
    return {"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": f"{user}-pw", **extra}


def _admin(broker: BrokerProcess, user: str = "admin") -> AdminClient:
    return AdminClient(_conf(broker, user))


def _name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _allow(name: str, op: AclOperation, user: str = "alice",
           rtype: ResourceType = ResourceType.TOPIC,
           pattern: ResourcePatternType = ResourcePatternType.LITERAL,
           perm: AclPermissionType = AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(rtype, name, pattern, f"User:{user}", "*", op, perm)


def _create(broker: BrokerProcess, *bindings: AclBinding) -> None:
    admin = _admin(broker)  # held: the futures fail if the client is collected first
    for future in admin.create_acls(list(bindings)).values():
        assert future.result() is None


def _produce(broker: BrokerProcess, user: str, topic: str, **extra: object) -> KafkaError | None:
    producer = Producer(_conf(broker, user, **extra))
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    return errors[0] if errors else None


def test_without_an_authorizer_the_acl_apis_answer_security_disabled(
    kafka_broker: BrokerProcess,
) -> None:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_broker.kafka_port}"})
    (future,) = admin.create_acls([_allow("t", AclOperation.READ)]).values()
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.SECURITY_DISABLED
    assert err.value.args[0].str() == "No Authorizer is configured on the broker"
    # librdkafka reads no error from a DescribeAcls answer; kafka-python does.
    kp = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{kafka_broker.kafka_port}")
    with pytest.raises(SecurityDisabledError):
        kp.describe_acls(ACLFilter(
            principal=None, host="*", operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KPResourceType.ANY, None,
                                                   ACLResourcePatternType.ANY)))
    kp.close()


def test_confluent_admin_creates_describes_and_deletes_acls(acl_broker: BrokerProcess) -> None:
    topic = _name()
    literal = _allow(topic, AclOperation.READ)
    prefixed = _allow(f"{topic}-", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED)
    group = _allow("g1", AclOperation.READ, rtype=ResourceType.GROUP)
    _create(acl_broker, literal, prefixed, group)
    admin = _admin(acl_broker)
    assert set(admin.describe_acls(ANY_FILTER).result()) >= {literal, prefixed, group}
    # MATCH: every pattern that applies to one topic name.
    match = AclBindingFilter(ResourceType.TOPIC, f"{topic}-x", ResourcePatternType.MATCH,
                             None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(match).result() == [prefixed]
    only_prefixed = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.PREFIXED,
                                     "User:alice", None, AclOperation.ANY,
                                     AclPermissionType.ANY)
    deleted = admin.delete_acls([only_prefixed])
    assert [f.result() for f in deleted.values()] == [[prefixed]]
    remaining = admin.describe_acls(ANY_FILTER).result()
    assert literal in remaining and prefixed not in remaining


def test_an_invalid_acl_is_refused_with_kafkas_reason(acl_broker: BrokerProcess) -> None:
    bad = AclBinding(ResourceType.BROKER, "my-cluster", ResourcePatternType.LITERAL,
                     "User:alice", "*", AclOperation.ALTER, AclPermissionType.ALLOW)
    admin = _admin(acl_broker)
    (future,) = admin.create_acls([bad]).values()
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "kafka-cluster" in err.value.args[0].str()


def test_only_a_principal_allowed_to_alter_the_cluster_manages_acls(
    acl_broker: BrokerProcess,
) -> None:
    bob = _admin(acl_broker, "bob")
    (future,) = bob.create_acls([_allow(_name(), AclOperation.READ, user="bob")]).values()
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    (future,) = bob.delete_acls([ANY_FILTER]).values()
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_kafka_python_admin_creates_describes_and_deletes_acls(
    acl_broker: BrokerProcess,
) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=f"127.0.0.1:{acl_broker.kafka_port}",
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="admin", sasl_plain_password="admin-pw")
    topic = _name("kp")
    acl = ACL(principal="User:bob", host="*", operation=ACLOperation.WRITE,
              permission_type=ACLPermissionType.DENY,
              resource_pattern=ResourcePattern(KPResourceType.TOPIC, topic,
                                               ACLResourcePatternType.LITERAL))
    created = admin.create_acls([acl])
    assert created["failed"] == [] and len(created["succeeded"]) == 1
    flt = ACLFilter(principal="User:bob", host="*", operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(KPResourceType.TOPIC, topic,
                                                           ACLResourcePatternType.ANY))
    found, error = admin.describe_acls(flt)
    assert error.errno == 0
    assert [(a.principal, a.operation, a.permission_type) for a in found] == [
        ("User:bob", ACLOperation.WRITE, ACLPermissionType.DENY)]
    ((_, deleted, delete_error),) = admin.delete_acls([flt])
    assert delete_error.errno == 0 and len(deleted) == 1
    assert admin.describe_acls(flt)[0] == []
    admin.close()


def test_a_producer_without_write_gets_topic_authorization_failed(
    acl_broker: BrokerProcess,
) -> None:
    allowed_topic, denied_topic = _name(), _name()
    # WRITE on one topic lets alice's idempotent producer get a producer id at all.
    _create(acl_broker, _allow(allowed_topic, AclOperation.WRITE),
            _allow(denied_topic, AclOperation.DESCRIBE))
    for topic in (allowed_topic, denied_topic):  # alice may not CREATE topics
        assert _produce(acl_broker, "admin", topic) is None
    assert _produce(acl_broker, "alice", allowed_topic) is None
    error = _produce(acl_broker, "alice", denied_topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Without CREATE, a topic that does not exist is not auto-created for her either.
    error = _produce(acl_broker, "alice", _name("new"))
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # kafka-python raises the same error from its own decoding of the answer.
    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{acl_broker.kafka_port}",
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_plain_username="alice", sasl_plain_password="alice-pw", retries=0)
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send(denied_topic, b"v").get(10)
    producer.close()


def test_an_idempotent_producer_with_no_write_anywhere_is_refused_a_producer_id(
    acl_broker: BrokerProcess,
) -> None:
    _create(acl_broker, _allow("described-by-carol", AclOperation.DESCRIBE, user="carol"))
    producer = Producer({**_conf(acl_broker, "bob"), "enable.idempotence": True})
    errors: list[KafkaError] = []
    producer.produce(_name(), b"v", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0].code() in (KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                                           KafkaError.TOPIC_AUTHORIZATION_FAILED)


def test_deny_wins_over_a_prefixed_allow(acl_broker: BrokerProcess) -> None:
    prefix = _name("app")
    _create(acl_broker,
            _allow(f"{prefix}-", AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
            _allow(f"{prefix}-secret", AclOperation.WRITE, perm=AclPermissionType.DENY))
    assert _produce(acl_broker, "alice", f"{prefix}-events") is None
    error = _produce(acl_broker, "alice", f"{prefix}-secret")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _consume_error(broker: BrokerProcess, user: str, topic: str, group: str) -> KafkaError:
    consumer = Consumer(_conf(broker, user, **{"group.id": group,
                                               "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        for _ in range(100):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is not None:
                return msg.error()
        raise AssertionError("the consumer saw no error")
    finally:
        consumer.close()


def test_a_consumer_needs_read_on_the_group_and_on_the_topic(
    acl_broker: BrokerProcess,
) -> None:
    topic, group = _name(), _name("g")
    _create(acl_broker, _allow(topic, AclOperation.WRITE, user="admin"),
            _allow(topic, AclOperation.DESCRIBE))
    assert _produce(acl_broker, "admin", topic) is None
    # No READ on the group: the coordinator refuses it.
    error = _consume_error(acl_broker, "alice", topic, group)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    # READ on the group but not on the topic: the fetch is refused.
    _create(acl_broker, _allow(group, AclOperation.READ, rtype=ResourceType.GROUP))
    error = _consume_error(acl_broker, "alice", topic, group)
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # READ on both: the record arrives.
    _create(acl_broker, _allow(topic, AclOperation.READ))
    consumer = Consumer(_conf(acl_broker, "alice", **{"group.id": group,
                                                      "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got = None
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got = msg.value()
            break
    consumer.close()
    assert got == b"v"


def test_metadata_lists_only_topics_the_principal_may_describe(
    acl_broker: BrokerProcess,
) -> None:
    visible, hidden = _name(), _name()
    admin = _admin(acl_broker)
    for name in (visible, hidden):
        assert _produce(acl_broker, "admin", name) is None
    _create(acl_broker, _allow(visible, AclOperation.READ, user="bob"))
    bob = _admin(acl_broker, "bob")
    topics = bob.list_topics(timeout=10).topics
    assert visible in topics and hidden not in topics
    assert {visible, hidden} <= set(admin.list_topics(timeout=10).topics)
    described = bob.list_topics(hidden, timeout=10).topics[hidden]
    assert described.error is not None
    assert described.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_transactional_producer_needs_write_on_its_transactional_id(
    acl_broker: BrokerProcess,
) -> None:
    topic = _name()
    _create(acl_broker, _allow(topic, AclOperation.WRITE))
    producer = Producer(_conf(acl_broker, "alice", **{"transactional.id": _name("tx")}))
    with pytest.raises(KafkaException) as err:
        producer.init_transactions(10)
    assert err.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_acls_survive_a_restart_and_allow_everyone_if_no_acl_found(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = _start(data)
    try:
        _create(broker, _allow("guarded", AclOperation.WRITE, user="bob",
                               perm=AclPermissionType.DENY))
    finally:
        broker.stop()
    broker = _start(data, "--set", "kafka.allow_everyone_if_no_acl_found=true")
    try:
        admin = _admin(broker)
        assert admin.describe_acls(ANY_FILTER).result() == [
            _allow("guarded", AclOperation.WRITE, user="bob", perm=AclPermissionType.DENY)]
        # A topic without any ACL is open to everyone; the guarded one is not.
        assert _produce(broker, "bob", _name(), **{"enable.idempotence": False}) is None
        error = _produce(broker, "bob", "guarded", **{"enable.idempotence": False})
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        broker.stop()
    assert "Traceback" not in broker.stderr_text()


def _v0(sock: socket.socket, key: int, body: bytes, correlation_id: int) -> bytes:
    """One request at version 0 (header v1), and the answer's body."""
    client = b"v0-client"
    frame = struct.pack(">hhih", key, 0, correlation_id, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", _exactly(sock, 4))[0]
    answer = _exactly(sock, size)
    assert struct.unpack_from(">i", answer)[0] == correlation_id
    return answer[4:]


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def _s(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    return struct.pack(">h", len(value.encode())) + value.encode()


READ = 3  # Kafka's AclOperation code


def test_the_acl_apis_answer_version_0_as_kafka_3_7_does(tmp_path: Path) -> None:
    """v0, which clients older than Kafka 2.0 send: no pattern types anywhere, written
    here byte by byte from Kafka 3.7's message definitions."""
    # No ACL on the cluster and allow.everyone.if.no.acl.found: ANONYMOUS may manage ACLs.
    broker = _start(tmp_path / "data", "--set", "kafka.allow_everyone_if_no_acl_found=true")
    try:
        with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=10) as sock:
            create = (struct.pack(">i", 1) + bytes([2]) + _s("orders") + _s("User:bob")
                      + _s("*") + bytes([READ, 3]))
            assert _v0(sock, 30, create, 1) == struct.pack(">iihh", 0, 1, 0, -1)
            describe = bytes([1]) + _s(None) + _s(None) + _s(None) + bytes([1, 1])
            answer = _v0(sock, 29, describe, 2)
            assert answer == (struct.pack(">ihh", 0, 0, -1) + struct.pack(">i", 1)
                              + bytes([2]) + _s("orders") + struct.pack(">i", 1)
                              + _s("User:bob") + _s("*") + bytes([READ, 3]))
            delete = struct.pack(">i", 1) + describe
            answer = _v0(sock, 31, delete, 3)
            assert answer == (struct.pack(">i", 0) + struct.pack(">ihh", 1, 0, -1)
                              + struct.pack(">i", 1) + struct.pack(">hh", 0, -1) + bytes([2])
                              + _s("orders") + _s("User:bob") + _s("*") + bytes([READ, 3]))
        admin = _admin(broker)
        assert admin.describe_acls(ANY_FILTER).result() == []
    finally:
        broker.stop()
    assert "Traceback" not in broker.stderr_text()
