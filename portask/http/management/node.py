"""The node: overview, whoami, nodes, extensions, cluster-name, aliveness-test and the
health checks, answered as RabbitMQ 3.10 answers them (statuses and field names)."""

from __future__ import annotations

import os
import time
from typing import Any

from portask.http.management.api import Call, Router, bad_request, not_found, to_json
from portask.http.management.view import API_OWNER, BrokerView, broker_errors, new_message
from portask.http.server import Response

_EXCHANGE_TYPES = [
    {"name": kind, "description": description, "enabled": True}
    for kind, description in (
        ("direct", "AMQP direct exchange, as per the AMQP specification"),
        ("fanout", "AMQP fanout exchange, as per the AMQP specification"),
        ("headers", "AMQP headers exchange, as per the AMQP specification"),
        ("topic", "AMQP topic exchange, as per the AMQP specification"),
    )
]
# RabbitMQ's names for the AMQP listener in health checks, normalised as it does.
_PROTOCOL_ALIASES = {"amqp091": "amqp", "amqp0-9-1": "amqp", "amqp0.9.1": "amqp",
                     "amqp0_9_1": "amqp", "amqp": "amqp", "http": "http",
                     "prometheus": "prometheus", "kafka": "kafka"}


def register(router: Router, view: BrokerView) -> None:
    def overview(call: Call) -> dict[str, Any]:
        vhosts = view.vhosts()
        totals = view.totals(vhosts)
        published = sum(v.published() for v in vhosts)
        ready = unacked = queues = consumers = exchanges = 0
        for vhost in vhosts:
            exchanges += len(vhost.exchanges)
            for queue in vhost.queues.values():
                queues += 1
                ready += queue.message_count
                unacked += queue.unacked
                consumers += queue.consumer_count
        connections = view.connections()
        key = ("overview",)
        stats = {
            "publish": published, "deliver_get": totals.deliver_get, "ack": totals.ack,
            "redeliver": totals.redeliver, "deliver": totals.deliver,
            "deliver_no_ack": totals.deliver_no_ack, "get": totals.get,
            "get_no_ack": totals.get_no_ack, "get_empty": totals.get_empty,
            "confirm": sum(v.confirmed for v in vhosts),
            "return_unroutable": sum(v.returned for v in vhosts),
            "drop_unroutable": sum(v.unroutable - v.returned for v in vhosts),
        }
        return {
            **view.product(),
            "cluster_name": view.cluster_name(),
            "node": view.node(),
            "rates_mode": "basic",
            "disable_stats": False,
            "enable_queue_totals": True,
            "exchange_types": _EXCHANGE_TYPES,
            "message_stats": view.rates.detailed(key, stats),
            "queue_totals": view.rates.detailed(key, {
                "messages": ready + unacked, "messages_ready": ready,
                "messages_unacknowledged": unacked}),
            "object_totals": {
                "connections": len(connections),
                "channels": sum(len(c.channels) for c in connections),
                "exchanges": exchanges, "queues": queues, "consumers": consumers,
            },
            "churn_rates": {
                "queue_declared": sum(v.queues_declared for v in vhosts),
                "queue_created": sum(v.queues_created for v in vhosts),
                "queue_deleted": sum(v.queues_deleted for v in vhosts),
                "connection_created": view.broker.clients.connections_opened,
                "connection_closed": view.broker.clients.connections_closed,
                "channel_created": view.broker.clients.channels_opened,
                "channel_closed": view.broker.clients.channels_closed,
            },
            "statistics_db_event_queue": 0,
            "listeners": view.listener_list(),
            "contexts": [{"node": view.node(), "description": "RabbitMQ Management",
                          "path": "/", "port": str(lst["port"])}
                         for lst in view.listener_list() if lst["protocol"] == "http"],
        }

    def whoami(call: Call) -> dict[str, Any]:
        return {"name": call.user, "tags": ["administrator"]}

    def node_item() -> dict[str, Any]:
        alarms = view.alarms()
        return {
            "name": view.node(), "type": "disc", "running": True,
            "mem_used": view.memory_used(), "mem_limit": view.mem_limit(),
            "mem_alarm": "memory" in alarms,
            "disk_free": view.disk_free(),
            "disk_free_limit": int(view.settings.amqp.disk_free_limit_bytes),
            "disk_free_alarm": "disk" in alarms,
            "uptime": int((time.time() - view.started) * 1000),
            "processors": os.cpu_count() or 1,
            "os_pid": str(os.getpid()),
            "applications": [], "exchange_types": _EXCHANGE_TYPES,
            "partitions": [], "being_drained": False,
        }

    def nodes(call: Call) -> list[dict[str, Any]]:
        return [node_item()]

    def node(call: Call) -> dict[str, Any]:
        if call.params["name"] != view.node():
            raise not_found()
        return node_item()

    def extensions(call: Call) -> list[dict[str, Any]]:
        return []

    def cluster_name(call: Call) -> dict[str, Any]:
        return {"name": view.cluster_name()}

    def aliveness(call: Call) -> dict[str, Any]:
        """RabbitMQ's check: declare ``aliveness-test``, publish to it, get it back."""
        vhost = view.vhost(call.params["vhost"])
        with broker_errors():
            queue = vhost.declare_queue("aliveness-test", owner=API_OWNER)
            vhost.publish(vhost.default_exchange,
                          new_message("", "aliveness-test", b"\x00\x00", b"test_message",
                                      persistent=False, priority=0, expiration=None),
                          lambda: None)
            got = queue.get(no_ack=True)  # type: ignore[call-arg]
        if got is None or bytes(got[1].body) != b"test_message":
            return {"status": "failed", "reason": "the test message did not come back"}
        return {"status": "ok"}

    def failed(body: dict[str, Any]) -> Response:
        return Response(503, to_json({"status": "failed", **body}))

    def alarms_check(call: Call) -> Any:
        active = sorted(view.alarms())
        if not active:
            return {"status": "ok"}
        return failed({"reason": "resource alarm(s) in effect in the cluster",
                       "alarms": [{"node": view.node(), "resource": r} for r in active]})

    def local_alarms_check(call: Call) -> Any:
        active = sorted(view.alarms())
        if not active:
            return {"status": "ok"}
        return failed({"reason": "resource alarm(s) in effect on the node",
                       "alarms": [{"node": view.node(), "resource": r} for r in active]})

    def port_check(call: Call) -> Any:
        raw = call.params["port"]
        try:
            port = int(raw)
        except ValueError:
            raise bad_request(f"Invalid port: {raw}") from None
        ports = [lst["port"] for lst in view.listener_list()]
        if port in ports:
            return {"status": "ok", "port": port}
        return failed({"missing": port, "ports": ports})

    def protocol_check(call: Call) -> Any:
        raw = call.params["protocol"]
        protocol = _PROTOCOL_ALIASES.get(raw.lower(), raw)
        protocols = [lst["protocol"] for lst in view.listener_list()]
        if protocol in protocols:
            return {"status": "ok", "protocol": protocol}
        return failed({"missing": raw, "protocols": protocols})

    def virtual_hosts_check(call: Call) -> Any:
        return {"status": "ok"}

    for path, handler in (
        ("overview", overview), ("whoami", whoami), ("nodes", nodes),
        ("nodes/{name}", node), ("extensions", extensions),
        ("cluster-name", cluster_name), ("aliveness-test/{vhost}", aliveness),
        ("health/checks/alarms", alarms_check),
        ("health/checks/local-alarms", local_alarms_check),
        ("health/checks/port-listener/{port}", port_check),
        ("health/checks/protocol-listener/{protocol}", protocol_check),
        ("health/checks/virtual-hosts", virtual_hosts_check),
    ):
        router.add("GET", path, handler)
