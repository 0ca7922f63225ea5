"""RabbitMQ's topic permissions, the same on Portask and a real RabbitMQ 3.10 node: the
write expression on the routing key of a publish to a topic exchange, the read
expression on the binding key of a binding from one, ``{username}`` expanded, and 403
ACCESS_REFUSED with RabbitMQ's text. Set up with the management API on Portask and
rabbitmqctl on RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.management.conftest import Api

USER, PASSWORD = "tp-user", "tp-pw"
WRITE = "^{username}\\."
READ = "^({username}|public)\\."
# On a second topic exchange: {vhost} is expanded too (here "/").
VHOST_EXCHANGE, VHOST_WRITE = "tp.by-vhost", "^{vhost}-{username}$"


def _grant_on_portask(proc: BrokerProcess) -> None:
    api = Api(proc.management_port)
    assert api.call("PUT", f"/users/{USER}", {"password": PASSWORD, "tags": ""})[0] == 201
    assert api.call("PUT", f"/permissions/%2F/{USER}",
                    {"configure": ".*", "write": ".*", "read": ".*"})[0] == 201
    assert api.call("PUT", f"/topic-permissions/%2F/{USER}",
                    {"exchange": "amq.topic", "write": WRITE, "read": READ})[0] == 201
    assert api.call("PUT", f"/topic-permissions/%2F/{USER}",
                    {"exchange": VHOST_EXCHANGE, "write": VHOST_WRITE, "read": ""})[0] == 204


@pytest.fixture(scope="module", params=["portask", "rabbitmq"])
def amqp_broker(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """The differential fixture of tests/integration/amqp/conftest.py, with the user and
    its permissions set up on each broker (Portask needs its management API for that)."""
    if request.param == "rabbitmq":
        node = request.getfixturevalue("rabbitmq_node")
        node.ctl("add_user", USER, PASSWORD)
        node.ctl("set_permissions", "-p", "/", USER, ".*", ".*", ".*")
        node.ctl("set_topic_permissions", "-p", "/", USER, "amq.topic", WRITE, READ)
        node.ctl("set_topic_permissions", "-p", "/", USER, VHOST_EXCHANGE, VHOST_WRITE, "")
        yield BrokerProcess(proc=None, data_dir=Path("."),  # type: ignore[arg-type]
                            stderr_path=Path("."), ports={"amqp": node.amqp_port},
                            kind="rabbitmq")
        node.ctl("delete_user", USER)
        return
    proc = start_broker(tmp_path_factory.mktemp("topic-perm") / "data", management=True)
    _grant_on_portask(proc)
    yield proc
    proc.stop()


@pytest.fixture
def channel(amqp_broker: BrokerProcess) -> Iterator[pika.adapters.blocking_connection.
                                                  BlockingChannel]:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", amqp_broker.amqp_port, "/", pika.PlainCredentials(USER, PASSWORD),
        connection_attempts=1))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def _refusal(err: pytest.ExceptionInfo[pika.exceptions.ChannelClosedByBroker]) -> tuple[
        int, str]:
    return err.value.reply_code, err.value.reply_text


def test_a_routing_key_the_write_expression_allows_is_published(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        name: Callable[[str], str]) -> None:
    queue = channel.queue_declare(name("tp"), exclusive=True).method.queue
    channel.queue_bind(queue, "amq.topic", f"{USER}.#")
    channel.basic_publish("amq.topic", f"{USER}.orders", b"mine")
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None and body == b"mine"


def test_a_routing_key_outside_the_write_expression_closes_the_channel(
        channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    channel.basic_publish("amq.topic", "other.orders", b"not mine")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.queue_declare("", exclusive=True)  # the refusal arrives before this answer
    assert _refusal(err) == (403, "ACCESS_REFUSED - access to topic 'other.orders' in "
                                  "exchange 'amq.topic' in vhost '/' refused for user "
                                  f"'{USER}'")


def test_a_binding_key_outside_the_read_expression_is_refused(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        name: Callable[[str], str]) -> None:
    queue = channel.queue_declare(name("tp"), exclusive=True).method.queue
    channel.queue_bind(queue, "amq.topic", "public.news")  # the read expression allows it
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.queue_bind(queue, "amq.topic", "secret.#")
    assert _refusal(err) == (403, "ACCESS_REFUSED - access to topic 'secret.#' in exchange "
                                  "'amq.topic' in vhost '/' refused for user "
                                  f"'{USER}'")


def test_an_exchange_to_exchange_binding_is_checked_on_its_source(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        name: Callable[[str], str]) -> None:
    destination = name("tp-x")
    channel.exchange_declare(destination, "fanout", auto_delete=True)
    channel.exchange_bind(destination, "amq.topic", f"{USER}.x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.exchange_bind(destination, "amq.topic", "secret.x")
    assert _refusal(err)[0] == 403
    assert "access to topic 'secret.x' in exchange 'amq.topic'" in _refusal(err)[1]


def test_other_exchanges_are_not_checked(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        name: Callable[[str], str]) -> None:
    # Only topic exchanges, and only those the user has a topic permission for.
    own_topic = name("tp-topic")
    channel.exchange_declare(own_topic, "topic", auto_delete=True)
    queue = channel.queue_declare(name("tp"), exclusive=True).method.queue
    channel.queue_bind(queue, own_topic, "secret.#")
    channel.basic_publish(own_topic, "secret.plans", b"a")
    channel.queue_bind(queue, "amq.direct", "secret")
    channel.basic_publish("amq.direct", "secret", b"b")
    bodies = []
    for _ in range(2):
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None
        bodies.append(body)
    assert sorted(bodies) == [b"a", b"b"]


def test_the_vhost_is_expanded_too(
        channel: pika.adapters.blocking_connection.BlockingChannel,
        name: Callable[[str], str]) -> None:
    channel.exchange_declare(VHOST_EXCHANGE, "topic", auto_delete=True)
    queue = channel.queue_declare(name("tp"), exclusive=True).method.queue
    channel.basic_publish(VHOST_EXCHANGE, f"/-{USER}", b"expanded")
    channel.queue_declare(queue, passive=True)  # a round trip: the publish was accepted
    channel.basic_publish(VHOST_EXCHANGE, "{vhost}-{username}", b"literal")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.queue_declare(queue, passive=True)
    assert _refusal(err) == (403, "ACCESS_REFUSED - access to topic '{vhost}-{username}' in "
                                  f"exchange '{VHOST_EXCHANGE}' in vhost '/' refused for "
                                  f"user '{USER}'")
