"""Definitions import (POST /api/definitions[/{vhost}], ``serve --definitions``), vhosts
made and deleted at run time, and policies over the management API: what a RabbitMQ
3.10 user does with ``rabbitmqadmin``/the HTTP API, with real clients (urllib, pika)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.management.conftest import Api


def _pika(port: int, vhost: str = "/", user: str = "guest",
          password: str = "guest") -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password),
        connection_attempts=1))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("defs") / "data", management=True)
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


@pytest.fixture(scope="module")
def api(broker: BrokerProcess) -> Api:
    return Api(broker.management_port)


def _document(vhost: str) -> dict[str, Any]:
    # A user with the hash of "s3cret" as RabbitMQ wrote it (salt + SHA-256).
    return {
        "rabbit_version": "3.10.8",
        "users": [{"name": f"u-{vhost}", "tags": ["management"],
                   "hashing_algorithm": "rabbit_password_hashing_sha256",
                   "password_hash": "dlMeuj5t8zKxKeYketawVlweWB2RG3jPwDCvUpo9NSYHgAn/"}],
        "vhosts": [{"name": vhost, "limits": [], "metadata": {"description": "",
                                                              "tags": []}}],
        "permissions": [{"user": f"u-{vhost}", "vhost": vhost, "configure": ".*",
                         "write": ".*", "read": ".*"}],
        "topic_permissions": [{"user": f"u-{vhost}", "vhost": vhost, "exchange": "orders",
                               "write": "^eu\\.", "read": ".*"}],
        "parameters": [], "global_parameters": [],
        "policies": [{"vhost": vhost, "name": "cap", "pattern": "^capped",
                      "apply-to": "queues", "priority": 1,
                      "definition": {"max-length": 2}}],
        "exchanges": [{"name": "orders", "vhost": vhost, "type": "topic", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "queues": [{"name": "capped-q", "vhost": vhost, "durable": True,
                    "auto_delete": False, "arguments": {"x-max-length": 10}},
                   {"name": "plain", "vhost": vhost, "durable": True,
                    "auto_delete": False, "arguments": {"x-queue-type": "quorum"}}],
        "bindings": [{"source": "orders", "vhost": vhost, "destination": "capped-q",
                      "destination_type": "queue", "routing_key": "eu.#",
                      "arguments": {}}],
    }


def test_an_imported_document_makes_users_vhosts_policies_and_topology(
        api: Api, broker: BrokerProcess) -> None:
    status, _ = api.call("POST", "/definitions", _document("imp"))
    assert status == 204
    assert api.get("/users/u-imp")["tags"] == ["management"]
    assert api.get("/permissions/imp/u-imp")["configure"] == ".*"
    assert api.get("/topic-permissions/imp/u-imp") == [
        {"user": "u-imp", "vhost": "imp", "exchange": "orders", "write": "^eu\\.",
         "read": ".*"}]
    assert api.get("/policies/imp/cap")["definition"] == {"max-length": 2}
    queue = api.get("/queues/imp/capped-q")
    assert (queue["policy"], queue["arguments"]) == ("cap", {"x-max-length": 10})
    assert api.get("/queues/imp/plain")["type"] == "quorum"
    # The imported user logs in with the password behind its hash; routing works.
    connection = _pika(broker.amqp_port, "imp", "u-imp", "s3cret")
    channel = connection.channel()
    channel.confirm_delivery()
    for i in range(5):
        channel.basic_publish("orders", "eu.fr", b"%d" % i)
    # The policy's max-length 2 is below the argument's 10: the smaller wins.
    assert channel.queue_declare("capped-q", passive=True).method.message_count == 2
    # The imported topic permission holds: only eu.* routing keys may be published.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.basic_publish("orders", "us.ny", b"x")
        channel.queue_declare("capped-q", passive=True)
    assert refused.value.reply_code == 403
    connection.close()
    # Importing the same document again keeps what exists.
    assert api.call("POST", "/definitions", _document("imp"))[0] == 204
    assert api.get("/queues/imp/capped-q")["messages"] == 2


@pytest.mark.parametrize(("document", "reason"), [
    ([], "Expected a JSON object in request body"),
    ({"queues": {}}, "queues must be a list"),
    ({"queues": [{"name": "q", "vhost": "nope"}]}, "queues[0]: no vhost 'nope'"),
    ({"queues": [{"name": "q", "vhost": "/", "arguments": {"x-max-length": -1}}]},
     "queues[0]: invalid arg 'x-max-length' for queue 'q' in vhost '/': "
     "{value_negative,-1}"),
    ({"exchanges": [{"name": "e", "vhost": "/", "type": "fanciful"}]},
     "exchanges[0]: unknown exchange type 'fanciful'"),
    ({"users": [{"name": "md5", "password_hash": "x",
                 "hashing_algorithm": "rabbit_password_hashing_md5"}]},
     "users[0]: user 'md5' has hashing_algorithm 'rabbit_password_hashing_md5'"),
    ({"policies": [{"vhost": "/", "name": "p", "pattern": ".*",
                    "definition": {"message-ttl": "soon"}}]},
     "policies[0]: policy 'p' in vhost '/': <<\"soon\">> is not a valid message TTL"),
    ({"bindings": [{"vhost": "/", "source": "amq.topic", "destination": "ghost",
                    "destination_type": "queue", "routing_key": "k"}]},
     "bindings[0]: no queue 'ghost' in vhost '/'"),
    ({"bindings": [{"vhost": "/", "source": "amq.headers", "destination": "amq.topic",
                    "destination_type": "exchange", "arguments": {"x-match": "some"}}]},
     "bindings[0]: invalid x-match field value 'some'"),
    ({"queues": [{"name": "q" * 256, "vhost": "/"}]},
     "queues[0]: name longer than 255 bytes"),
])
def test_a_bad_document_is_a_400_naming_the_entry(api: Api, document: Any,
                                                  reason: str) -> None:
    status, body = api.call("POST", "/definitions", document)
    assert status == 400
    assert body["error"] == "bad_request"
    assert body["reason"].startswith(reason), body


@pytest.mark.parametrize("spoil", ["queue argument", "binding to a missing exchange"])
def test_nothing_changes_when_a_later_entry_is_bad(api: Api, spoil: str) -> None:
    document = _document("atomic")
    if spoil == "queue argument":
        document["queues"][1]["arguments"] = {"x-overflow": "sideways"}
        reason = "queues[1]: invalid arg 'x-overflow'"
    else:
        document["bindings"].append({"source": "nowhere", "vhost": "atomic",
                                     "destination": "plain", "destination_type": "queue",
                                     "routing_key": "", "arguments": {}})
        reason = "bindings[1]: no exchange 'nowhere' in vhost 'atomic'"
    status, body = api.call("POST", "/definitions", document)
    assert status == 400 and body["reason"].startswith(reason), body
    assert api.call("GET", "/users/u-atomic")[0] == 404
    assert api.call("GET", "/vhosts/atomic")[0] == 404


@pytest.mark.parametrize("raw", [b"{nope", b"[" * 100_000, b"\xff\xfe"])
def test_body_that_is_not_json_is_a_400(api: Api, raw: bytes) -> None:
    status, body = api.call("POST", "/definitions",
                            headers={"Content-Type": "application/json"}, raw=raw)
    assert (status, body["reason"]) == (400, "Bad JSON in request body")


def test_a_vhost_import_ignores_the_objects_vhost_and_takes_no_users(api: Api) -> None:
    assert api.call("PUT", "/vhosts/scoped")[0] == 201
    document = _document("elsewhere")
    status, _ = api.call("POST", "/definitions/scoped", document)
    assert status == 204
    assert api.get("/queues/scoped/capped-q")["policy"] == "cap"
    assert api.call("GET", "/users/u-elsewhere")[0] == 404
    assert api.call("POST", "/definitions/missing", document)[0] == 404


def test_policies_over_the_api(api: Api, broker: BrokerProcess) -> None:
    body = {"pattern": "^ttl\\.", "definition": {"message-ttl": 100}, "apply-to": "queues"}
    assert api.call("PUT", "/policies/%2F/short", body)[0] == 201
    assert api.call("PUT", "/policies/%2F/short", {**body, "priority": 3})[0] == 204
    assert api.get("/policies/%2F/short") == {
        "vhost": "/", "name": "short", "pattern": "^ttl\\.", "apply-to": "queues",
        "definition": {"message-ttl": 100}, "priority": 3}
    assert [p["name"] for p in api.get("/policies/%2F")] == ["short"]
    assert "short" in [p["name"] for p in api.get("/policies")]
    status, refused = api.call("PUT", "/policies/%2F/bad",
                               {"pattern": ".*", "definition": {"overflow": "up"}})
    assert (status, refused["reason"]) == (
        400, "Validation failed\n\n<<\"up\">> is not a valid overflow value\n")
    connection = _pika(broker.amqp_port)
    channel = connection.channel()
    channel.queue_declare("ttl.jobs")
    channel.basic_publish("", "ttl.jobs", b"x")
    time.sleep(0.3)
    assert channel.basic_get("ttl.jobs", auto_ack=True)[0] is None
    connection.close()
    assert api.call("DELETE", "/policies/%2F/short")[0] == 204
    assert api.call("DELETE", "/policies/%2F/short")[0] == 404
    # Exchanges show the policy that applies to them (its keys are kept, not applied).
    assert api.call("PUT", "/policies/%2F/ae", {
        "pattern": "^amq\\.direct$", "apply-to": "exchanges",
        "definition": {"alternate-exchange": "elsewhere"}})[0] == 201
    assert api.get("/exchanges/%2F/amq.direct")["policy"] == "ae"
    assert api.get("/exchanges/%2F/amq.topic")["policy"] is None
    assert api.call("DELETE", "/policies/%2F/ae")[0] == 204


def test_deleting_a_vhost_closes_its_connections_and_removes_it(
        api: Api, broker: BrokerProcess) -> None:
    assert api.call("PUT", "/vhosts/doomed")[0] == 201
    assert api.call("PUT", "/vhosts/doomed")[0] == 204
    assert api.call("PUT", "/users/doomed-user", {"password": "pw", "tags": ""})[0] == 201
    for path, body in (("/permissions/doomed/doomed-user",
                        {"configure": ".*", "write": ".*", "read": ".*"}),
                       ("/topic-permissions/doomed/doomed-user",
                        {"exchange": "amq.topic", "write": ".*", "read": ".*"})):
        assert api.call("PUT", path, body)[0] == 201
    connection = _pika(broker.amqp_port, "doomed")
    channel = connection.channel()
    channel.queue_declare("inside", durable=True)
    bystander = _pika(broker.amqp_port)
    assert api.call("DELETE", "/vhosts/doomed")[0] == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.process_data_events(time_limit=2)
        connection.process_data_events(time_limit=2)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        320, "CONNECTION_FORCED - vhost 'doomed' is deleted")
    assert bystander.is_open
    bystander.close()
    assert api.call("GET", "/vhosts/doomed")[0] == 404
    assert api.call("DELETE", "/vhosts/doomed")[0] == 404
    assert api.get("/users/doomed-user/permissions") == []
    assert api.get("/users/doomed-user/topic-permissions") == []


def test_vhosts_and_policies_survive_a_restart_and_apply_to_restored_queues(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start_broker(data, management=True)
    try:
        api = Api(proc.management_port)
        assert api.call("PUT", "/vhosts/kept")[0] == 201
        assert api.call("PUT", "/policies/kept/cap", {
            "pattern": ".*", "definition": {"max-length": 1}})[0] == 201
        connection = _pika(proc.amqp_port, "kept")
        connection.channel().queue_declare("q", durable=True)
        connection.close()
    finally:
        proc.stop()
    proc = start_broker(data, management=True)
    try:
        api = Api(proc.management_port)
        assert api.get("/policies/kept/cap")["definition"] == {"max-length": 1}
        assert api.get("/queues/kept/q")["policy"] == "cap"
        connection = _pika(proc.amqp_port, "kept")
        channel = connection.channel()
        channel.confirm_delivery()
        for _ in range(3):
            channel.basic_publish("", "q", b"x")
        assert channel.queue_declare("q", passive=True).method.message_count == 1
        connection.close()
        exported = api.get("/definitions")
        assert {"vhost": "kept", "name": "cap", "pattern": ".*", "apply-to": "all",
                "definition": {"max-length": 1}, "priority": 0} in exported["policies"]
    finally:
        proc.stop()


def test_serve_definitions_imports_a_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "defs.json"
    good.write_text(json.dumps(_document("boot")))
    proc = start_broker(tmp_path / "data", "--definitions", str(good), management=True)
    try:
        api = Api(proc.management_port)
        assert api.get("/queues/boot/capped-q")["policy"] == "cap"
        connection = _pika(proc.amqp_port, "boot", "u-boot", "s3cret")
        connection.close()
    finally:
        proc.stop()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queues": [{"name": "q", "vhost": "/",
                                           "arguments": {"x-expires": 0}}]}))
    done = subprocess.run(
        [sys.executable, "-m", "portask", "serve", "--data-dir", str(tmp_path / "bad-data"),
         "--kafka-port", "0", "--amqp-port", "0", "--http-port", "0",
         "--set", "http.management_port=0", "--definitions", str(bad)],
        capture_output=True, timeout=30, check=False)
    assert done.returncode != 0
    err = done.stderr.decode()
    assert "cannot import definitions" in err and "queues[0]" in err, err
    assert "Traceback" not in err
