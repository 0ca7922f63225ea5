"""Connections, channels and consumers, from the broker's client registry."""

from __future__ import annotations

from typing import Any

from portask.http.management import query
from portask.http.management.api import Call, Router, not_found
from portask.http.management.view import BrokerView


def register(router: Router, view: BrokerView) -> None:
    def connection_items() -> list[dict[str, Any]]:
        return [{
            "name": c.name, "node": view.node(), "type": "network", "protocol": c.protocol,
            "user": c.user, "vhost": c.vhost, "state": c.state, "channels": len(c.channels),
            "host": c.host, "port": c.port, "peer_host": c.peer_host,
            "peer_port": c.peer_port, "ssl": False, "auth_mechanism": "PLAIN",
            "connected_at": c.connected_at_ms, "timeout": c.heartbeat_s,
            "frame_max": c.frame_max, "channel_max": c.channel_max,
            "client_properties": c.client_properties,
        } for c in view.connections()]

    def channel_items() -> list[dict[str, Any]]:
        out = []
        for c in view.connections():
            for ch in c.channels:
                out.append({
                    "name": f"{c.name} ({ch.number})", "number": ch.number,
                    "node": view.node(), "user": c.user, "vhost": ch.vhost,
                    "connection_details": {"name": c.name, "peer_host": c.peer_host,
                                           "peer_port": c.peer_port},
                    "state": "running", "confirm": ch.confirm,
                    "transactional": ch.transactional,
                    "consumer_count": len(ch.consumers),
                    "messages_unacknowledged": ch.messages_unacknowledged,
                    "prefetch_count": ch.prefetch_count,
                    "global_prefetch_count": ch.global_prefetch_count,
                })
        return out

    def consumer_items(vhost: str | None) -> list[dict[str, Any]]:
        out = []
        for c in view.connections():
            for ch in c.channels:
                for con in ch.consumers:
                    if vhost is not None and con.vhost != vhost:
                        continue
                    out.append({
                        "consumer_tag": con.tag, "exclusive": con.exclusive,
                        "ack_required": con.ack_required, "prefetch_count": con.prefetch_count,
                        "active": True, "activity_status": "up", "arguments": {},
                        "priority": con.priority,
                        "queue": {"name": con.queue, "vhost": con.vhost},
                        "channel_details": {
                            "name": f"{c.name} ({ch.number})", "number": ch.number,
                            "connection_name": c.name, "peer_host": c.peer_host,
                            "peer_port": c.peer_port, "user": c.user, "node": view.node()},
                    })
        return out

    def connections(call: Call) -> Any:
        return query.shape(connection_items(), call.query, [])

    def vhost_connections(call: Call) -> Any:
        name = view.vhost(call.params["vhost"]).name
        return query.shape([c for c in connection_items() if c["vhost"] == name],
                           call.query, [])

    def connection(call: Call) -> Any:
        for item in connection_items():
            if item["name"] == call.params["name"]:
                return item
        raise not_found()

    def connection_channels(call: Call) -> Any:
        name = call.params["name"]
        if not any(c["name"] == name for c in connection_items()):
            raise not_found()
        return query.shape([ch for ch in channel_items()
                            if ch["connection_details"]["name"] == name], call.query, [])

    def channels(call: Call) -> Any:
        return query.shape(channel_items(), call.query, [])

    def vhost_channels(call: Call) -> Any:
        name = view.vhost(call.params["vhost"]).name
        return query.shape([c for c in channel_items() if c["vhost"] == name], call.query, [])

    def channel(call: Call) -> Any:
        for item in channel_items():
            if item["name"] == call.params["name"]:
                return item
        raise not_found()

    def consumers(call: Call) -> Any:
        vhost = call.params.get("vhost")
        if vhost is not None:
            view.vhost(vhost)
        return query.shape(consumer_items(vhost), call.query, [])

    router.add("GET", "connections", connections)
    router.add("GET", "vhosts/{vhost}/connections", vhost_connections)
    router.add("GET", "connections/{name}", connection)
    router.add("GET", "connections/{name}/channels", connection_channels)
    router.add("GET", "channels", channels)
    router.add("GET", "vhosts/{vhost}/channels", vhost_channels)
    router.add("GET", "channels/{name}", channel)
    router.add("GET", "consumers", consumers)
    router.add("GET", "consumers/{vhost}", consumers)
