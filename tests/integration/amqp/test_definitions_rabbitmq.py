"""Definitions both ways with a real RabbitMQ 3.10: a topology built on RabbitMQ and
exported by ``rabbitmqctl export_definitions`` loads into Portask (``--definitions``)
with the same queues, exchanges, bindings, users, permissions and policies; one built
on Portask and exported by ``GET /api/definitions`` is taken by ``rabbitmqctl
import_definitions`` and gives the same topology there (permissions and topic
permissions included). Logins with the moved users'
passwords prove the hashes moved intact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.management.conftest import Api
from tests.rabbitmq import RabbitMQNode


def _pika(port: int, vhost: str, user: str = "guest", password: str = "guest"
          ) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password),
        connection_attempts=1))


def _args(value: Any) -> str:
    return json.dumps(value or {}, sort_keys=True)


def topology(document: dict[str, Any], vhost: str, users: set[str]) -> dict[str, Any]:
    """What must be equal on both brokers: one vhost's objects and the named users."""
    def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items if i.get("vhost") == vhost]

    return {
        "queues": sorted((q["name"], q["durable"], q["auto_delete"], _args(q["arguments"]))
                         for q in mine(document["queues"])),
        "exchanges": sorted((e["name"], e["type"], e["durable"], e["auto_delete"],
                             e.get("internal", False), _args(e["arguments"]))
                            for e in mine(document["exchanges"])),
        "bindings": sorted((b["source"], b["destination"], b["destination_type"],
                            b["routing_key"], _args(b["arguments"]))
                           for b in mine(document["bindings"])),
        "policies": sorted((p["name"], p["pattern"], p["apply-to"], p["priority"],
                            _args(p["definition"])) for p in mine(document["policies"])),
        "permissions": sorted((p["user"], p["configure"], p["write"], p["read"])
                              for p in mine(document["permissions"])),
        "topic_permissions": sorted((p["user"], p["exchange"], p["write"], p["read"])
                                    for p in mine(document["topic_permissions"])),
        "users": sorted((u["name"], u["password_hash"], u["hashing_algorithm"],
                         sorted(u["tags"])) for u in document["users"]
                        if u["name"] in users),
        "vhosts": [v["name"] for v in document["vhosts"] if v["name"] == vhost],
    }


def _build(port: int, vhost: str) -> None:
    """The same topology on either broker, through pika."""
    connection = _pika(port, vhost)
    channel = connection.channel()
    channel.exchange_declare("orders", "topic", durable=True)
    channel.exchange_declare("dlx", "fanout", durable=True)
    channel.exchange_declare("ae", "fanout", durable=True)
    channel.exchange_declare("routed", "direct", durable=True,
                             arguments={"alternate-exchange": "ae"})
    channel.exchange_declare("by-headers", "headers", durable=True)
    channel.queue_declare("capped-q", durable=True,
                          arguments={"x-max-length": 10, "x-message-ttl": 60000})
    channel.queue_declare("dead", durable=True)
    channel.queue_declare("lazy", durable=True, arguments={"x-queue-mode": "lazy"})
    channel.queue_declare("quorum-q", durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind("capped-q", "orders", "eu.#")
    channel.queue_bind("dead", "dlx", "")
    channel.queue_bind("lazy", "by-headers", "",
                       arguments={"x-match": "all", "kind": "invoice"})
    channel.exchange_bind("routed", "orders", "us.*")
    connection.close()


def test_a_rabbitmq_export_loads_into_portask_with_the_same_topology(
        rabbitmq_node: RabbitMQNode, tmp_path: Path) -> None:
    vhost, user = f"r2p-{uuid.uuid4().hex[:6]}", f"alice-{uuid.uuid4().hex[:6]}"
    ctl = rabbitmq_node.ctl
    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    ctl("add_user", user, "alice-pw")
    ctl("set_user_tags", user, "management")
    ctl("set_permissions", "-p", vhost, user, "^alice", ".*", ".*")
    ctl("set_topic_permissions", "-p", vhost, user, "amq.topic", "^eu", ".*")
    ctl("set_policy", "-p", vhost, "--priority", "2", "--apply-to", "queues", "cap",
        "^capped", '{"max-length": 3, "dead-letter-exchange": "dlx"}')
    ctl("set_policy", "-p", vhost, "--apply-to", "exchanges", "ex", "^routed$",
        '{"alternate-exchange": "ae"}')
    _build(rabbitmq_node.amqp_port, vhost)
    exported = tmp_path / "rabbitmq.json"
    ctl("export_definitions", str(exported))
    document = json.loads(exported.read_text())
    # The session's node holds other tests' objects too: keep this test's vhost and
    # users, and everything else of the file as RabbitMQ wrote it.
    for key in ("queues", "exchanges", "bindings", "policies", "permissions",
                "topic_permissions"):
        document[key] = [i for i in document[key] if i.get("vhost") == vhost]
    document["vhosts"] = [v for v in document["vhosts"] if v["name"] in (vhost, "/")]
    document["users"] = [u for u in document["users"] if u["name"] in (user, "guest")]
    exported.write_text(json.dumps(document))
    expected = topology(document, vhost, {user, "guest"})
    assert len(expected["queues"]) == 4 and len(expected["bindings"]) == 4
    assert len(expected["topic_permissions"]) == 1

    proc = start_broker(tmp_path / "data", "--definitions", str(exported),
                        management=True)
    try:
        api = Api(proc.management_port)
        assert topology(api.get("/definitions"), vhost, {user, "guest"}) == expected
        assert api.get(f"/queues/{vhost}/capped-q")["policy"] == "cap"
        # The imported user logs in with its RabbitMQ password; its permissions hold.
        connection = _pika(proc.amqp_port, vhost, user, "alice-pw")
        channel = connection.channel()
        channel.queue_declare("alice-own")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare("not-alice")
        assert refused.value.reply_code == 403
        connection.close()
        # The policy acts: max-length 3 (below the queue's own 10), dead letters to dlx.
        connection = _pika(proc.amqp_port, vhost)
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(5):
            channel.basic_publish("orders", "eu.de", b"%d" % i)
        assert channel.queue_declare("capped-q", passive=True).method.message_count == 3
        assert channel.queue_declare("dead", passive=True).method.message_count == 2
        connection.close()
    finally:
        proc.stop()


@pytest.fixture
def portask(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path / "data", management=True)
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


def test_a_portask_export_is_taken_by_rabbitmqctl_import_definitions(
        rabbitmq_node: RabbitMQNode, portask: BrokerProcess, tmp_path: Path) -> None:
    vhost, user = f"p2r-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    api = Api(portask.management_port)
    assert api.call("PUT", f"/vhosts/{vhost}")[0] == 201
    assert api.call("PUT", f"/users/{user}", {"password": "bob-pw",
                                              "tags": "management"})[0] == 201
    assert api.call("PUT", f"/permissions/{vhost}/{user}",
                    {"configure": "^bob", "write": ".*", "read": ".*"})[0] == 201
    assert api.call("PUT", f"/topic-permissions/{vhost}/{user}",
                    {"exchange": "amq.topic", "write": "^bob\\.", "read": ".*"})[0] == 201
    assert api.call("PUT", f"/policies/{vhost}/cap", {
        "pattern": "^capped", "apply-to": "queues", "priority": 2,
        "definition": {"max-length": 3, "dead-letter-exchange": "dlx"}})[0] == 201
    _build(portask.amqp_port, vhost)
    exported = api.get("/definitions")
    expected = topology(exported, vhost, {user})
    assert len(expected["queues"]) == 4 and len(expected["policies"]) == 1
    assert len(expected["topic_permissions"]) == 1
    path = tmp_path / "portask.json"
    path.write_text(json.dumps(exported))

    rabbitmq_node.ctl("import_definitions", str(path))
    back = tmp_path / "back.json"
    rabbitmq_node.ctl("export_definitions", str(back))
    assert topology(json.loads(back.read_text()), vhost, {user}) == expected
    connection = _pika(rabbitmq_node.amqp_port, vhost, user, "bob-pw")
    channel = connection.channel()
    channel.queue_declare("bob-own")
    connection.close()
