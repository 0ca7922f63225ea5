"""SCRAM credentials managed over Kafka (DescribeUserScramCredentials and
AlterUserScramCredentials with confluent-kafka's AdminClient) and derived for users
created over the management API; confluent-kafka and kafka-python then log in with
SCRAM-SHA-256 and -512, and a wrong password gets Kafka's own refusal."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types
from tests.integration.management.conftest import Api

USERS = "admin:admin-pw,alice:alice-pw"
MECHANISMS = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
              "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}
# What Kafka's SaslServerAuthenticator answers to every failed SCRAM exchange.
REFUSAL = ("Authentication failed during authentication due to invalid credentials with "
           "SASL mechanism {}")


def _start(data: Path) -> BrokerProcess:
    return start_broker(data, "--set", "kafka.authorizer=true",
                        "--set", "kafka.super_users=User:admin",
                        env={"PORTASK_AUTH_USERS": USERS}, management=True)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = _start(tmp_path_factory.mktemp("scram") / "data")
    # Everyone may use topics named scram-*: the tests are about logging in.
    admin = _admin(proc)
    for future in admin.create_acls([AclBinding(
            ResourceType.TOPIC, "scram-", ResourcePatternType.PREFIXED, "User:*", "*",
            AclOperation.ALL, AclPermissionType.ALLOW)]).values():
        assert future.result() is None
    yield proc
    proc.stop()


def _conf(broker: BrokerProcess, user: str, password: str,
          mechanism: str = "PLAIN") -> dict[str, object]:
    return {"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password}


def _admin(broker: BrokerProcess, user: str = "admin", password: str = "admin-pw",
           ) -> AdminClient:
    return AdminClient(_conf(broker, user, password))


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _alter(admin: AdminClient, *changes: object) -> dict[str, object]:
    """Each user's outcome: None, or the KafkaError it was refused with."""
    out: dict[str, object] = {}
    for user, future in admin.alter_user_scram_credentials(list(changes)).items():
        try:
            out[user] = future.result()
        except KafkaException as exc:
            out[user] = exc.args[0]
    return out


def _upsert(user: str, password: str, mechanism: str, iterations: int = 4096,
            ) -> UserScramCredentialUpsertion:
    return UserScramCredentialUpsertion(
        user, ScramCredentialInfo(MECHANISMS[mechanism], iterations), password.encode())


def _described(admin: AdminClient, user: str) -> dict[ScramMechanism, int]:
    description = admin.describe_user_scram_credentials([user])[user].result()
    return {i.mechanism: i.iterations for i in description.scram_credential_infos}


def _confluent_produces(broker: BrokerProcess, user: str, password: str,
                        mechanism: str) -> KafkaError | None:
    """None when the record was stored, else the first authentication error reported."""
    failures: list[KafkaError] = []
    delivered: list[KafkaError | None] = []

    def on_error(err: KafkaError) -> None:
        if err.code() == KafkaError._AUTHENTICATION:
            failures.append(err)

    producer = Producer({**_conf(broker, user, password, mechanism), "error_cb": on_error})
    producer.produce(f"scram-{mechanism.lower()}", b"v",
                     on_delivery=lambda err, msg: delivered.append(err))
    deadline = time.monotonic() + 10
    while not delivered and not failures and time.monotonic() < deadline:
        producer.poll(0.05)
    if delivered == [None]:
        return None
    assert failures, f"neither delivered nor refused: {delivered}"
    return failures[0]


def _kafka_python_produces(broker: BrokerProcess, user: str, password: str,
                           mechanism: str) -> int:
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{broker.kafka_port}",
                             security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                             sasl_plain_username=user, sasl_plain_password=password,
                             bootstrap_timeout_ms=2000)
    try:
        return int(producer.send(f"scram-kp-{mechanism.lower()}", b"v").get(10).offset)
    finally:
        producer.close()


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_credentials_set_over_kafka_let_both_clients_log_in(broker: BrokerProcess,
                                                            mechanism: str) -> None:
    user = _user("carol")
    admin = _admin(broker)
    assert _alter(admin, _upsert(user, "carol-pw", mechanism, 8192)) == {user: None}
    assert _described(admin, user) == {MECHANISMS[mechanism]: 8192}
    assert _confluent_produces(broker, user, "carol-pw", mechanism) is None
    assert _kafka_python_produces(broker, user, "carol-pw", mechanism) >= 0


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_a_wrong_password_gets_kafkas_refusal(broker: BrokerProcess, mechanism: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    user = _user("dan")
    assert _alter(_admin(broker), _upsert(user, "dan-pw", mechanism)) == {user: None}
    error = _confluent_produces(broker, user, "not-dan-pw", mechanism)
    assert error is not None and error.code() == KafkaError._AUTHENTICATION
    assert REFUSAL.format(mechanism) in error.str()
    # kafka-python logs each refused connection and gives up bootstrapping.
    caplog.set_level(logging.WARNING, logger="kafka")
    with pytest.raises(KafkaTimeoutError):
        _kafka_python_produces(broker, user, "not-dan-pw", mechanism)
    assert any("[Error 58] SaslAuthenticationFailedError" in r.getMessage()
               and REFUSAL.format(mechanism) in r.getMessage() for r in caplog.records)
    # A name with no credential at all gets the very same text (no user list leaks).
    error = _confluent_produces(broker, _user("nobody"), "x", mechanism)
    assert error is not None and REFUSAL.format(mechanism) in error.str()


def test_deleting_a_credential_ends_its_logins(broker: BrokerProcess) -> None:
    user = _user("erin")
    admin = _admin(broker)
    _alter(admin, _upsert(user, "erin-pw", "SCRAM-SHA-256"))
    assert _alter(admin, _upsert(user, "erin-pw", "SCRAM-SHA-512")) == {user: None}
    assert _described(admin, user) == {ScramMechanism.SCRAM_SHA_256: 4096,
                                       ScramMechanism.SCRAM_SHA_512: 4096}
    deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)
    assert _alter(admin, deletion) == {user: None}
    assert _described(admin, user) == {ScramMechanism.SCRAM_SHA_512: 4096}
    error = _confluent_produces(broker, user, "erin-pw", "SCRAM-SHA-256")
    assert error is not None and error.code() == KafkaError._AUTHENTICATION
    assert _confluent_produces(broker, user, "erin-pw", "SCRAM-SHA-512") is None


def test_alterations_kafka_refuses_get_its_codes_and_texts(broker: BrokerProcess) -> None:
    admin = _admin(broker)
    few, many, gone, twice = (_user(p) for p in ("few", "many", "gone", "twice"))
    outcome = _alter(admin, _upsert(few, "p", "SCRAM-SHA-256", 1024),
                     _upsert(many, "p", "SCRAM-SHA-512", 20000),
                     UserScramCredentialDeletion(gone, ScramMechanism.SCRAM_SHA_256),
                     _upsert(twice, "p", "SCRAM-SHA-256"), _upsert(twice, "p", "SCRAM-SHA-512"))
    summary = {u: (e.code(), e.str()) for u, e in outcome.items()}  # type: ignore[union-attr]
    assert summary == {
        few: (KafkaError.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
        many: (KafkaError.UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
        gone: (KafkaError.RESOURCE_NOT_FOUND,
               "Attempt to delete a user credential that does not exist"),
        # KRaft's ScramControlManager: one alteration per user and request.
        twice: (KafkaError.DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request"),
    }
    (future,) = admin.describe_user_scram_credentials([few]).values()
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    # librdkafka reads the text without its end (the next byte of the answer follows it).
    assert err.value.args[0].str().startswith(
        f"Attempt to describe a user credential that does not exist: {few}")


def test_only_principals_allowed_on_the_cluster_manage_credentials(
        broker: BrokerProcess) -> None:
    alice = _admin(broker, "alice", "alice-pw")
    target = _user("mallory")
    outcome = _alter(alice, _upsert(target, "p", "SCRAM-SHA-256"))
    error = outcome[target]
    assert isinstance(error, KafkaError)
    assert error.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # Over the wire: librdkafka crashes on a DescribeUserScramCredentials answer that
    # carries only a top-level error, which is how Kafka refuses it.
    client = WireClient(broker.kafka_port)
    client.send(encode_request(
        request_types(17, 1).SaslHandshakeRequest(mechanism="PLAIN"), 1))
    assert client.read_response(17, 1)[1].error_code == 0
    client.send(encode_request(
        request_types(36, 2).SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-pw"), 2))
    assert client.read_response(36, 2)[1].error_code == 0
    describe = request_types(50, 0).DescribeUserScramCredentialsRequest(users=None)
    client.send(encode_request(describe, 3))
    _, answer = client.read_response(50, 0)
    client.close()
    assert (answer.error_code, answer.error_message, answer.results) == (
        KafkaError.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.", ())
    with pytest.raises(KafkaException):
        _described(_admin(broker), target)  # nothing was stored


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_a_user_created_over_http_with_a_password_logs_in_with_scram(
        broker: BrokerProcess, mechanism: str) -> None:
    user = _user("http")
    api = Api(broker.management_port, "admin", "admin-pw")
    assert api.call("PUT", f"/users/{user}", {"password": "http-pw", "tags": ""})[0] == 201
    assert _described(_admin(broker), user) == {ScramMechanism.SCRAM_SHA_256: 4096,
                                                ScramMechanism.SCRAM_SHA_512: 4096}
    assert _confluent_produces(broker, user, "http-pw", mechanism) is None
    assert _kafka_python_produces(broker, user, "http-pw", mechanism) >= 0
    # A new password replaces the derived credentials.
    assert api.call("PUT", f"/users/{user}", {"password": "new-pw", "tags": ""})[0] == 204
    assert _confluent_produces(broker, user, "http-pw", mechanism) is not None
    assert _confluent_produces(broker, user, "new-pw", mechanism) is None


def test_a_user_created_from_a_password_hash_logs_in_with_plain_only(
        broker: BrokerProcess) -> None:
    user = _user("hashed")
    api = Api(broker.management_port, "admin", "admin-pw")
    assert api.call("PUT", f"/users/{user}", {"password": "pw", "tags": ""})[0] == 201
    password_hash = api.call("GET", f"/users/{user}")[1]["password_hash"]
    # Re-created from the hash alone (as definitions carry users): SCRAM cannot be derived.
    assert api.call("PUT", f"/users/{user}", {"password_hash": password_hash})[0] == 204
    assert _confluent_produces(broker, user, "pw", "PLAIN") is None
    error = _confluent_produces(broker, user, "pw", "SCRAM-SHA-256")
    assert error is not None and error.code() == KafkaError._AUTHENTICATION
    assert REFUSAL.format("SCRAM-SHA-256") in error.str()
    admin = _admin(broker)  # held: its futures fail once the client is collected
    (future,) = admin.describe_user_scram_credentials([user]).values()
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_credentials_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = _start(data)
    try:
        assert _alter(_admin(proc), _upsert("frank", "frank-pw", "SCRAM-SHA-512")) == {
            "frank": None}
    finally:
        proc.stop()
    proc = _start(data)
    try:
        assert _described(_admin(proc), "frank") == {ScramMechanism.SCRAM_SHA_512: 4096}
        admin = AdminClient(_conf(proc, "frank", "frank-pw", "SCRAM-SHA-512"))
        assert admin.list_topics(timeout=10).brokers  # logged in: Metadata answered
    finally:
        proc.stop()
