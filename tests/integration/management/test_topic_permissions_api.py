"""``/api/topic-permissions`` as RabbitMQ 3.10's management API serves it: list, set,
delete, the definitions export, the administrator tag, and a change that applies to an
open AMQP connection at once (the enforcement itself is compared with RabbitMQ in
tests/integration/amqp/test_topic_permissions.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.management.conftest import Api


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("topic-api") / "data", management=True)
    admin = Api(proc.management_port)
    for user in ("ann", "ben"):
        assert admin.call("PUT", f"/users/{user}", {"password": f"{user}-pw",
                                                     "tags": "management"})[0] == 201
        assert admin.call("PUT", f"/permissions/%2F/{user}",
                          {"configure": ".*", "write": ".*", "read": ".*"})[0] == 201
    yield proc
    proc.stop()


def test_set_list_and_delete_topic_permissions(broker: BrokerProcess) -> None:
    api = Api(broker.management_port)
    assert api.call("GET", "/topic-permissions/%2F/ann")[0] == 404  # none yet
    body = {"exchange": "amq.topic", "write": "^ann\\.", "read": ".*"}
    assert api.call("PUT", "/topic-permissions/%2F/ann", body)[0] == 201
    assert api.call("PUT", "/topic-permissions/%2F/ann", {**body, "exchange": "x.t"})[0] == 204
    ann = [{"user": "ann", "vhost": "/", "exchange": "amq.topic", "write": "^ann\\.",
            "read": ".*"},
           {"user": "ann", "vhost": "/", "exchange": "x.t", "write": "^ann\\.",
            "read": ".*"}]
    assert api.call("GET", "/topic-permissions/%2F/ann") == (200, ann)
    assert api.call("GET", "/users/ann/topic-permissions") == (200, ann)
    assert api.call("GET", "/vhosts/%2F/topic-permissions")[1] == ann
    assert ann[0] in api.call("GET", "/topic-permissions")[1]
    assert [p for p in api.call("GET", "/definitions")[1]["topic_permissions"]
            if p["user"] == "ann"] == ann
    assert api.call("DELETE", "/topic-permissions/%2F/ann/x.t")[0] == 204
    assert api.call("GET", "/topic-permissions/%2F/ann")[1] == ann[:1]
    assert api.call("DELETE", "/topic-permissions/%2F/ann")[0] == 204
    assert api.call("GET", "/topic-permissions/%2F/ann")[0] == 404
    assert api.call("DELETE", "/topic-permissions/%2F/ann")[0] == 404


def test_what_rabbitmq_refuses_is_refused(broker: BrokerProcess) -> None:
    api = Api(broker.management_port)
    assert api.call("PUT", "/topic-permissions/%2F/nobody",
                    {"exchange": "amq.topic", "write": "", "read": ""}) == (
        400, {"error": "bad_request", "reason": "vhost_or_user_not_found"})
    assert api.call("PUT", "/topic-permissions/nowhere/ann",
                    {"exchange": "amq.topic", "write": "", "read": ""})[0] == 400
    assert api.call("PUT", "/topic-permissions/%2F/ann", {"exchange": "amq.topic"}) == (
        400, {"error": "bad_request", "reason": "[{key_missing,write},{key_missing,read}]"})
    status, body = api.call("PUT", "/topic-permissions/%2F/ann",
                            {"exchange": "amq.topic", "write": "(", "read": ""})
    assert status == 400 and "not a regular expression" in body["reason"]
    # Changing them needs the administrator tag.
    status, body = Api(broker.management_port, "ben", "ben-pw").call(
        "PUT", "/topic-permissions/%2F/ben", {"exchange": "amq.topic", "write": ".*",
                                              "read": ".*"})
    assert (status, body["reason"]) == (401, "Not administrator user")


def test_a_change_applies_to_an_open_connection(broker: BrokerProcess) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, "/", pika.PlainCredentials("ben", "ben-pw"),
        connection_attempts=1))
    channel = connection.channel()
    channel.basic_publish("amq.topic", "audit.1", b"before")
    channel.queue_declare("", exclusive=True)  # a round trip: accepted
    api = Api(broker.management_port)
    assert api.call("PUT", "/topic-permissions/%2F/ben",
                    {"exchange": "amq.topic", "write": "^ben\\.", "read": ".*"})[0] == 201
    channel.basic_publish("amq.topic", "audit.2", b"after")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.queue_declare("", exclusive=True)
    assert err.value.reply_code == 403
    connection.close()
    # Deleting the user takes its topic permissions along.
    assert api.call("DELETE", "/users/ben")[0] == 204
    assert all(p["user"] != "ben" for p in api.call("GET", "/topic-permissions")[1])


def test_topic_permissions_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start_broker(data, management=True)
    api = Api(proc.management_port)
    api.call("PUT", "/users/cat", {"password": "cat-pw", "tags": ""})
    api.call("PUT", "/topic-permissions/%2F/cat",
             {"exchange": "amq.topic", "write": "^cat\\.", "read": ""})
    proc.stop()
    proc = start_broker(data, management=True)
    try:
        assert Api(proc.management_port).call("GET", "/topic-permissions/%2F/cat")[1] == [
            {"user": "cat", "vhost": "/", "exchange": "amq.topic", "write": "^cat\\.",
             "read": ""}]
    finally:
        proc.stop()
