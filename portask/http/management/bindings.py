"""Bindings: list (all, per vhost, per source/destination pair), create, show, delete.

Every queue has RabbitMQ's implicit binding from the default exchange, listed first
as there. ``properties_key`` follows rabbit_mgmt_format:pack_binding_props: ``~`` for
an empty routing key without arguments, else the quoted routing key, plus ``~`` and a
hash of the arguments when there are any (the hash is Portask's own, not Erlang's).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from portask.http.management import query
from portask.http.management.api import Call, Router, bad_request, not_found
from portask.http.management.view import API_OWNER, BrokerView, VirtualHost, broker_errors
from portask.http.server import Response


def _quote(text: str) -> str:
    return quote_plus(text).replace("~", "%7E")


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    if not arguments:
        return "~" if routing_key == "" else _quote(routing_key)
    digest = hashlib.md5(json.dumps(arguments, sort_keys=True, default=str).encode(),
                         usedforsecurity=False).digest()[:4]
    return _quote(routing_key) + "~" + _quote(base64.urlsafe_b64encode(digest).decode()
                                              .rstrip("="))


def _item(vhost: str, source: str, dest: str, dest_type: str, routing_key: str,
          arguments: dict[str, Any]) -> dict[str, Any]:
    return {"source": source, "vhost": vhost, "destination": dest,
            "destination_type": dest_type, "routing_key": routing_key,
            "arguments": arguments, "properties_key": properties_key(routing_key, arguments)}


def binding_items(view: BrokerView, vhost: VirtualHost) -> list[dict[str, Any]]:
    items = [_item(vhost.name, "", q, "queue", q, {}) for q in list(vhost.queues)]
    for exchange in list(vhost.exchanges.values()):
        if not exchange.name:
            continue
        for binding in list(exchange.bindings.values()):
            dest = binding.destination
            dest_type = "queue" if dest.name in vhost.queues and \
                vhost.queues[dest.name] is dest else "exchange"
            items.append(_item(vhost.name, exchange.name, dest.name, dest_type,
                               binding.routing_key, binding.arguments))
    return items


def _unpack(key: str) -> tuple[str, str]:
    if key == "~":
        return "", ""
    routing_key, _, args_hash = key.partition("~")
    return unquote_plus(routing_key), unquote_plus(args_hash)


_KINDS = {"q": "queue", "e": "exchange"}


def register(router: Router, view: BrokerView) -> None:
    def listing(call: Call) -> Any:
        items = [b for v in view.scoped(call.params.get("vhost"))
                 for b in binding_items(view, v)]
        return query.shape(items, call.query, [])

    def between(call: Call) -> list[dict[str, Any]]:
        vhost = view.vhost(call.params["vhost"])
        kind = _KINDS.get(call.params["kind"])
        if kind is None:
            raise not_found()
        source, dest = call.params["source"], call.params["destination"]
        if source not in vhost.exchanges:
            raise not_found()
        if (kind == "queue" and dest not in vhost.queues) or (
                kind == "exchange" and dest not in vhost.exchanges):
            raise not_found()
        return [b for b in binding_items(view, vhost)
                if b["source"] == source and b["destination"] == dest
                and b["destination_type"] == kind]

    def create(call: Call) -> Response:
        vhost = view.vhost(call.params["vhost"])
        kind = _KINDS.get(call.params["kind"])
        if kind is None:
            raise not_found()
        body = call.body()
        routing_key = body.get("routing_key", "")
        arguments = body.get("arguments") or {}
        if not isinstance(routing_key, str) or not isinstance(arguments, dict):
            raise bad_request("routing_key must be a string and arguments an object")
        source, dest = call.params["source"], call.params["destination"]
        with broker_errors():
            if kind == "queue":
                vhost.bind_queue(dest, source, routing_key, arguments, API_OWNER)
            else:
                vhost.bind_exchange(dest, source, routing_key, arguments)
        key = properties_key(routing_key, arguments)
        location = "/api/bindings/" + "/".join(
            quote_plus(p) for p in (vhost.name, "e", source, call.params["kind"], dest, key))
        return Response(201, headers=[("Location", location)])

    def _find(call: Call) -> dict[str, Any]:
        # As RabbitMQ unpacks it: the part before "~" is the (quoted) routing key, so
        # both "a.*" and the listed "a.%2A" name the same binding.
        wanted = _unpack(call.params["props"])
        for item in between(call):
            if _unpack(item["properties_key"]) == wanted:
                return item
        raise not_found()

    def show(call: Call) -> dict[str, Any]:
        return _find(call)

    def delete(call: Call) -> None:
        item = _find(call)
        vhost = view.vhost(call.params["vhost"])
        with broker_errors():
            if item["destination_type"] == "queue":
                vhost.unbind_queue(item["destination"], item["source"], item["routing_key"],
                                   item["arguments"], API_OWNER)
            else:
                vhost.unbind_exchange(item["destination"], item["source"],
                                      item["routing_key"], item["arguments"])

    router.add("GET", "bindings", listing)
    router.add("GET", "bindings/{vhost}", listing)
    router.add("GET", "bindings/{vhost}/e/{source}/{kind}/{destination}", between)
    router.add("POST", "bindings/{vhost}/e/{source}/{kind}/{destination}", create)
    router.add("GET", "bindings/{vhost}/e/{source}/{kind}/{destination}/{props}", show)
    router.add("DELETE", "bindings/{vhost}/e/{source}/{kind}/{destination}/{props}", delete)
