"""The management API's contract, checked over HTTP against a real broker."""

from __future__ import annotations

import socket
import uuid

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.integration.management.conftest import Api


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_requests_without_valid_credentials_get_401_with_a_realm(
        mgmt_broker: BrokerProcess) -> None:
    with socket.create_connection(("127.0.0.1", mgmt_broker.management_port)) as sock:
        sock.sendall(b"GET /api/overview HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert b'WWW-Authenticate: Basic realm="RabbitMQ Management"' in reply
    status, body = Api(mgmt_broker.management_port, "guest", "wrong").call("GET", "/overview")
    assert (status, body) == (401, {"error": "not_authorised", "reason": "Login failed"})


def test_whoami_names_the_authenticated_user(api: Api) -> None:
    assert api.get("/whoami") == {"name": "guest", "tags": ["administrator"]}


def test_missing_objects_are_rabbitmq_shaped_404s(api: Api) -> None:
    for path in ("/queues/%2F/no-such-queue", "/exchanges/%2F/nope", "/vhosts/nope",
                 "/no/such/endpoint", "/queues/no-such-vhost"):
        assert api.call("GET", path) == (404, {"error": "Object Not Found",
                                                "reason": "Not Found"}), path


def test_queue_declare_show_and_delete(api: Api) -> None:
    q = _name("q")
    assert api.call("PUT", f"/queues/%2F/{q}", {"durable": True,
                                               "arguments": {"x-max-length": 5}})[0] == 201
    assert api.call("PUT", f"/queues/%2F/{q}", {"durable": True,
                                               "arguments": {"x-max-length": 5}})[0] == 204
    status, body = api.call("PUT", f"/queues/%2F/{q}", {"durable": False})
    assert status == 400 and body["error"] == "bad_request"
    assert "inequivalent arg 'durable'" in body["reason"]
    shown = api.get(f"/queues/%2F/{q}")
    for field in ("name", "vhost", "type", "durable", "auto_delete", "exclusive", "arguments",
                  "state", "messages", "messages_ready", "messages_unacknowledged",
                  "consumers", "memory", "message_stats"):
        assert field in shown, field
    assert (shown["name"], shown["vhost"], shown["type"], shown["durable"]) == \
        (q, "/", "classic", True)
    assert shown["arguments"] == {"x-max-length": 5}
    assert api.call("DELETE", f"/queues/%2F/{q}")[0] == 204
    assert api.call("GET", f"/queues/%2F/{q}")[0] == 404


def test_list_query_parameters_follow_rabbitmq(api: Api) -> None:
    prefix = _name("lq")
    for suffix in ("b", "a", "c"):
        api.call("PUT", f"/queues/%2F/{prefix}-{suffix}", {})
    mine = [q for q in api.get("/queues/%2F?columns=name,vhost")
            if q["name"].startswith(prefix)]
    assert mine == [{"name": f"{prefix}-{s}", "vhost": "/"} for s in "abc"]
    desc = [q["name"] for q in api.get("/queues?sort=name&sort_reverse=true&columns=name")
            if q["name"].startswith(prefix)]
    assert desc == [f"{prefix}-{s}" for s in "cba"]
    page = api.get(f"/queues?page=2&page_size=1&name={prefix.upper()}&columns=name")
    assert page["items"] == [{"name": f"{prefix}-b"}]
    assert (page["filtered_count"], page["page_count"], page["page"], page["page_size"]) == \
        (3, 3, 2, 1)
    regex = api.get(f"/queues?page=1&name=^{prefix}-[ac]$&use_regex=true&columns=name")
    assert [i["name"] for i in regex["items"]] == [f"{prefix}-a", f"{prefix}-c"]
    nested = api.get(f"/queues/%2F/{prefix}-a?columns=name,message_stats.publish")
    assert nested == {"name": f"{prefix}-a", "message_stats": {"publish": 0}}
    status, body = api.call("GET", "/queues?page=0")
    assert status == 400 and body["reason"].startswith("Invalid pagination parameters")
    status, body = api.call("GET", "/queues?page=1&page_size=501")
    assert status == 400
    status, body = api.call("GET", "/queues?page=9999")
    assert status == 400 and body["reason"].startswith("Page out of range")


def test_exchange_binding_publish_and_get_keep_order_on_requeue(api: Api) -> None:
    x, q = _name("x"), _name("q")
    assert api.call("PUT", f"/exchanges/%2F/{x}", {"type": "direct"})[0] == 201
    assert api.call("PUT", f"/queues/%2F/{q}", {})[0] == 201
    status, _ = api.call("POST", f"/bindings/%2F/e/{x}/q/{q}", {"routing_key": "k"})
    assert status == 201
    assert api.get(f"/bindings/%2F/e/{x}/q/{q}")[0]["properties_key"] == "k"
    for i in range(3):
        assert api.call("POST", f"/exchanges/%2F/{x}/publish", {
            "routing_key": "k", "payload": f"m{i}", "payload_encoding": "string",
            "properties": {"headers": {"n": i}, "delivery_mode": 2}}) == (200, {"routed": True})
    assert api.call("POST", f"/exchanges/%2F/{x}/publish", {
        "routing_key": "nowhere", "payload": "", "payload_encoding": "string",
        "properties": {}}) == (200, {"routed": False})
    got = api.call("POST", f"/queues/%2F/{q}/get", {
        "count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 1})[1]
    assert [m["payload"] for m in got] == ["m", "m"]
    assert [m["payload_bytes"] for m in got] == [2, 2]
    assert [m["properties"]["headers"] for m in got] == [{"n": 0}, {"n": 1}]
    assert [m["message_count"] for m in got] == [2, 1]
    # Requeued messages are back at the head, in their order, flagged redelivered.
    got = api.call("POST", f"/queues/%2F/{q}/get", {
        "count": 5, "ackmode": "ack_requeue_false", "encoding": "base64"})[1]
    assert [m["payload"] for m in got] == ["bTA=", "bTE=", "bTI="]
    assert [m["redelivered"] for m in got] == [True, True, False]
    assert api.get(f"/queues/%2F/{q}")["messages"] == 0
    status, body = api.call("POST", f"/queues/%2F/{q}/get", {
        "count": 1, "ackmode": "bogus", "encoding": "auto"})
    assert status == 400 and body["reason"].startswith("Invalid ackmode value: bogus")
    assert api.call("DELETE", f"/bindings/%2F/e/{x}/q/{q}/k")[0] == 204
    assert api.get(f"/bindings/%2F/e/{x}/q/{q}") == []
    assert api.call("DELETE", f"/exchanges/%2F/{x}")[0] == 204
    assert api.call("GET", f"/exchanges/%2F/{x}")[0] == 404


def test_purge_empties_the_queue(api: Api) -> None:
    q = _name("q")
    api.call("PUT", f"/queues/%2F/{q}", {})
    for _ in range(4):
        api.call("POST", "/exchanges/%2F/amq.default/publish", {
            "routing_key": q, "payload": "x", "payload_encoding": "string", "properties": {}})
    assert api.get(f"/queues/%2F/{q}")["messages_ready"] == 4
    assert api.call("DELETE", f"/queues/%2F/{q}/contents")[0] == 204
    assert api.get(f"/queues/%2F/{q}")["messages_ready"] == 0


def test_node_endpoints_and_health_checks(api: Api, mgmt_broker: BrokerProcess) -> None:
    overview = api.get("/overview")
    assert overview["rabbitmq_version"] and overview["node"] == api.get("/nodes")[0]["name"]
    assert {"connections", "channels", "exchanges", "queues", "consumers"} <= \
        set(overview["object_totals"])
    assert api.get("/cluster-name") == {"name": overview["cluster_name"]}
    assert api.get("/extensions") == []
    assert api.get("/aliveness-test/%2F") == {"status": "ok"}
    assert api.get("/health/checks/alarms") == {"status": "ok"}
    assert api.get("/health/checks/local-alarms") == {"status": "ok"}
    assert api.get("/health/checks/virtual-hosts") == {"status": "ok"}
    port = mgmt_broker.amqp_port
    assert api.get(f"/health/checks/port-listener/{port}") == {"status": "ok", "port": port}
    status, body = api.call("GET", "/health/checks/port-listener/1")
    assert status == 503 and body["status"] == "failed" and port in body["ports"]
    assert api.get("/health/checks/protocol-listener/amqp091")["status"] == "ok"
    assert api.call("GET", "/health/checks/protocol-listener/stomp")[0] == 503


def test_connections_channels_and_consumers_are_listed(api: Api,
                                                       mgmt_broker: BrokerProcess) -> None:
    params = pika.ConnectionParameters("127.0.0.1", mgmt_broker.amqp_port)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_qos(prefetch_count=7)
        tag = ch.basic_consume(q, lambda *a: None)
        conns = api.get("/connections")
        assert any(c["user"] == "guest" and c["channels"] == 1 for c in conns)
        assert any(c["prefetch_count"] == 7 for c in api.get("/channels"))
        consumers = api.get("/consumers/%2F")
        mine = [c for c in consumers if c["consumer_tag"] == tag]
        assert mine and mine[0]["queue"] == {"name": q, "vhost": "/"}
        assert mine[0]["ack_required"] is True and mine[0]["prefetch_count"] == 7
        # An exclusive queue belongs to its connection: the API may not read it.
        status, body = api.call("POST", f"/queues/%2F/{q}/get",
                                {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
        assert status == 400 and "exclusive" in body["reason"]
    assert not any(c["consumer_tag"] == tag for c in api.get("/consumers"))


@pytest.mark.parametrize("path", ["/vhosts", "/users", "/permissions"])
def test_access_lists(api: Api, path: str) -> None:
    items = api.get(path)
    assert items, path
    if path == "/permissions":
        assert {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                "read": ".*"} in items
    else:
        assert any(i["name"] in ("/", "guest") for i in items)
