"""Users and permissions over the management API, enforced on AMQP as RabbitMQ 3.10
does: PLAIN and AMQPLAIN logins against the one user store, vhost access, and 403
ACCESS_REFUSED with RabbitMQ's texts for every method that needs a permission."""

from __future__ import annotations

from collections.abc import Iterator

import aio_pika
import amqp
import pika
import pytest
from aiormq.exceptions import ChannelAccessRefused
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from portask.broker.user_store import check_hash
from tests.broker_process import BrokerProcess, start_broker
from tests.integration.management.conftest import Api


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("perm") / "data", "--set",
                        "amqp.vhosts=/,other", management=True)
    admin = Api(proc.management_port)
    assert admin.call("PUT", "/users/bob", {"password": "bob-pw", "tags": ""})[0] == 201
    # bob: configure and read queues starting "bob-", write only to the default exchange.
    status, _ = admin.call("PUT", "/permissions/%2F/bob",
                           {"configure": "^bob-", "write": "^amq\\.default$", "read": "^bob-"})
    assert status == 201
    yield proc
    proc.stop()


def _pika(broker: BrokerProcess, user: str = "bob", password: str = "bob-pw",
          vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, vhost, pika.PlainCredentials(user, password),
        connection_attempts=1))


def _refused(broker: BrokerProcess, action: str) -> str:
    connection = _pika(broker)
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        if action == "declare":
            channel.queue_declare("alice-q")
        elif action == "publish":
            channel.exchange_declare("ex-by-guest", passive=True)  # passive: no check
            channel.basic_publish("amq.topic", "k", b"x")
            channel.queue_declare("bob-after-publish", passive=True)
        elif action == "consume":
            channel.basic_consume("guest-q", lambda *a: None)
        elif action == "get":
            channel.basic_get("guest-q")
        elif action == "bind":
            channel.queue_declare("bob-bind")
            channel.queue_bind("bob-bind", "amq.direct", "k")
        elif action == "delete":
            channel.queue_delete("guest-q")
        elif action == "purge":
            channel.queue_purge("guest-q")
        elif action == "server-named":
            channel.queue_declare("")
    connection.close()
    assert err.value.reply_code == 403
    return str(err.value.reply_text)


@pytest.mark.parametrize(("action", "text"), [
    ("declare", "ACCESS_REFUSED - access to queue 'alice-q' in vhost '/' refused for user 'bob'"),
    ("publish",
     "ACCESS_REFUSED - access to exchange 'amq.topic' in vhost '/' refused for user 'bob'"),
    ("consume", "ACCESS_REFUSED - access to queue 'guest-q' in vhost '/' refused for user 'bob'"),
    ("get", "ACCESS_REFUSED - access to queue 'guest-q' in vhost '/' refused for user 'bob'"),
    ("bind",
     "ACCESS_REFUSED - access to queue 'bob-bind' in vhost '/' refused for user 'bob'"),
    ("delete", "ACCESS_REFUSED - access to queue 'guest-q' in vhost '/' refused for user 'bob'"),
    ("purge", "ACCESS_REFUSED - access to queue 'guest-q' in vhost '/' refused for user 'bob'"),
    ("server-named", "ACCESS_REFUSED - access to queue 'amq.gen-"),
])
def test_a_method_outside_the_users_permissions_is_refused_with_rabbitmqs_text(
    broker: BrokerProcess, action: str, text: str
) -> None:
    guest = _pika(broker, "guest", "guest")
    guest.channel().queue_declare("guest-q")
    guest.channel().exchange_declare("ex-by-guest")
    guest.close()
    # The texts are RabbitMQ 3.10.8's, read from a node given the same users and
    # permissions (a server-named queue's name is random there too).
    refused = _refused(broker, action)
    assert refused == text or (action == "server-named" and refused.startswith(text)
                               and refused.endswith("' in vhost '/' refused for user 'bob'"))


def test_what_the_permissions_allow_works(broker: BrokerProcess) -> None:
    connection = _pika(broker)
    channel = connection.channel()
    channel.queue_declare("bob-work")
    channel.basic_publish("", "bob-work", b"hello")  # the default exchange is amq.default
    method, _, body = channel.basic_get("bob-work", auto_ack=True)
    assert method is not None and body == b"hello"
    connection.close()


def test_a_vhost_without_permissions_is_refused_at_connection_open(
    broker: BrokerProcess,
) -> None:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as err:
        _pika(broker, vhost="other")
    assert "access to vhost 'other' refused for user 'bob'" in str(err.value)


def test_wrong_password_and_unknown_users_are_refused(broker: BrokerProcess) -> None:
    for user, password in (("bob", "nope"), ("nobody", "x")):
        with pytest.raises(pika.exceptions.ProbableAuthenticationError) as err:
            _pika(broker, user, password)
        assert "Login was refused using authentication mechanism PLAIN" in str(err.value)


def test_py_amqp_logs_in_with_amqplain_against_the_store(broker: BrokerProcess) -> None:
    connection = amqp.Connection(f"127.0.0.1:{broker.amqp_port}", userid="bob",
                                 password="bob-pw", login_method="AMQPLAIN")
    connection.connect()
    channel = connection.channel()
    channel.queue_declare("bob-amqplain", auto_delete=True)
    with pytest.raises(amqp.exceptions.AccessRefused) as err:
        channel.queue_declare("carol-amqplain")
    assert "access to queue 'carol-amqplain' in vhost '/' refused for user 'bob'" in str(
        err.value)
    connection.close()
    bad = amqp.Connection(f"127.0.0.1:{broker.amqp_port}", userid="bob", password="nope",
                          login_method="AMQPLAIN")
    with pytest.raises(amqp.exceptions.AccessRefused) as err:
        bad.connect()
    assert "Login was refused using authentication mechanism AMQPLAIN" in str(err.value)


async def test_aio_pika_is_refused_what_the_permissions_do_not_allow(
    broker: BrokerProcess,
) -> None:
    connection = await aio_pika.connect(f"amqp://bob:bob-pw@127.0.0.1:{broker.amqp_port}/")
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("bob-aio", auto_delete=True)
        with pytest.raises(ChannelAccessRefused) as err:
            await channel.declare_queue("carol-aio")
        assert "access to queue 'carol-aio' in vhost '/' refused for user 'bob'" in str(
            err.value)


def test_a_user_created_over_the_api_logs_in_to_kafka_with_plain(broker: BrokerProcess) -> None:
    def conf(password: str) -> dict[str, object]:
        return {"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}",
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                "sasl.username": "bob", "sasl.password": password}

    producer = Producer(conf("bob-pw"))
    delivered: list[object] = []
    producer.produce("bob-topic", b"v", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0 and delivered == [None]
    admin = AdminClient(conf("nope"))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_users_and_permissions_over_the_api(broker: BrokerProcess) -> None:
    admin = Api(broker.management_port)
    status, user = admin.call("GET", "/users/bob")
    assert status == 200 and user["tags"] == []
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert check_hash(user["password_hash"], "bob-pw")
    status, permission = admin.call("GET", "/permissions/%2F/bob")
    assert status == 200 and permission == {"user": "bob", "vhost": "/", "configure": "^bob-",
                                             "write": "^amq\\.default$", "read": "^bob-"}
    # A user created from a hash (as RabbitMQ's definitions carry them) logs in.
    status, _ = admin.call("PUT", "/users/carol", {"password_hash": user["password_hash"],
                                                    "tags": "monitoring"})
    assert status == 201
    assert Api(broker.management_port, "carol", "bob-pw").call("GET", "/overview")[0] == 200
    # monitoring may read the API but not change users.
    status, body = Api(broker.management_port, "carol", "bob-pw").call(
        "PUT", "/users/dave", {"password": "x"})
    assert status == 401 and body == {"error": "not_authorised",
                                      "reason": "Not administrator user"}
    # No management tag at all: the API is closed.
    status, body = Api(broker.management_port, "bob", "bob-pw").call("GET", "/overview")
    assert status == 401 and body["reason"] == "Not management user"
    assert admin.call("DELETE", "/users/carol")[0] == 204
    assert admin.call("GET", "/users/carol")[0] == 404
    assert admin.call("PUT", "/permissions/%2F/nobody", {"configure": ".*"})[0] == 400
    status, body = admin.call("PUT", "/permissions/%2F/bob", {"configure": "("})
    assert status == 400 and "not a regular expression" in body["reason"]


def test_users_and_permissions_survive_a_restart(tmp_path_factory: pytest.TempPathFactory,
                                                 ) -> None:
    data = tmp_path_factory.mktemp("perm-restart") / "data"
    proc = start_broker(data, management=True)
    admin = Api(proc.management_port)
    admin.call("PUT", "/users/erin", {"password": "erin-pw", "tags": "administrator"})
    admin.call("PUT", "/permissions/%2F/erin", {"configure": "", "write": "", "read": ".*"})
    proc.stop()
    proc = start_broker(data, management=True)
    try:
        assert Api(proc.management_port, "erin", "erin-pw").call("GET", "/users")[0] == 200
        connection = _pika(proc, "erin", "erin-pw")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
            connection.channel().queue_declare("erin-q")
        assert err.value.reply_code == 403
        connection.close()
    finally:
        proc.stop()
