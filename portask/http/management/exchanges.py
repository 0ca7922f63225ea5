"""Exchanges: list, show, declare (PUT), delete, publish, and their bindings."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from portask.http.management import query
from portask.http.management.api import Call, Router, bad_request, not_found, parse_bool
from portask.http.management.bindings import binding_items
from portask.http.management.view import BrokerView, VirtualHost, broker_errors, new_message
from portask.http.server import Response


def url_name(name: str) -> str:
    """In URLs the default exchange is ``amq.default`` (its name is empty)."""
    return "" if name == "amq.default" else name


def exchange_item(view: BrokerView, vhost: VirtualHost, exchange: Any) -> dict[str, Any]:
    key = ("exchange", vhost.name, exchange.name)
    published = exchange.published + exchange.published_flushed
    policy = vhost.exchange_policy(exchange.name) if exchange.name else None
    return {
        "name": exchange.name, "vhost": vhost.name,
        "type": exchange.kind, "durable": exchange.durable,
        "auto_delete": exchange.auto_delete, "internal": exchange.internal,
        "arguments": exchange.arguments,
        "policy": policy.name if policy is not None else None, "user_who_performed_action": "",
        "message_stats": view.rates.detailed(key, {"publish_in": published}),
    }


def samples(view: BrokerView) -> list[tuple[tuple[str, ...], dict[str, float]]]:
    return [(("exchange", vhost.name, e.name),
             {"publish_in": e.published + e.published_flushed})
            for vhost in view.vhosts() for e in list(vhost.exchanges.values())]


def register(router: Router, view: BrokerView) -> None:
    def exchange(vhost: VirtualHost, name: str) -> Any:
        found = vhost.exchanges.get(url_name(name))
        if found is None:
            raise not_found()
        return found

    def listing(call: Call) -> Any:
        items = [exchange_item(view, v, e) for v in view.scoped(call.params.get("vhost"))
                 for e in list(v.exchanges.values())]
        return query.shape(items, call.query, ["vhost", "name"])

    def show(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        return query.pick(exchange_item(view, vhost, exchange(vhost, call.params["name"])),
                          query.columns(call.query))

    def declare(call: Call) -> Response:
        vhost = view.vhost(call.params["vhost"])
        name = url_name(call.params["name"])
        body = call.body()
        kind = body.get("type")
        if not isinstance(kind, str) or not kind:
            raise bad_request("type missing")
        arguments = body.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise bad_request("arguments must be an object")
        existed = name in vhost.exchanges
        with broker_errors():
            vhost.declare_exchange(
                name, kind, durable=parse_bool(body.get("durable"), "durable"),
                auto_delete=parse_bool(body.get("auto_delete"), "auto_delete"),
                internal=parse_bool(body.get("internal"), "internal"), arguments=arguments)
        return Response(204 if existed else 201)

    def delete(call: Call) -> None:
        vhost = view.vhost(call.params["vhost"])
        exchange(vhost, call.params["name"])
        with broker_errors():
            vhost.delete_exchange(url_name(call.params["name"]),
                                  if_unused=call.query.get("if-unused") == "true")

    def publish(call: Call) -> dict[str, Any]:
        vhost = view.vhost(call.params["vhost"])
        body = call.body()
        for required in ("routing_key", "properties", "payload", "payload_encoding"):
            if required not in body:
                raise bad_request(f"{required} missing")
        payload, encoding = body["payload"], body["payload_encoding"]
        if not isinstance(payload, str):
            raise bad_request("payload_not_string")
        if encoding == "string":
            data = payload.encode()
        elif encoding == "base64":
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request("not_base64") from None
        else:
            raise bad_request(f"unsupported_encoding: {encoding}")
        properties = body["properties"] or {}
        routing_key = body["routing_key"]
        if not isinstance(properties, dict) or not isinstance(routing_key, str):
            raise bad_request("properties must be an object and routing_key a string")
        codec = vhost.codec
        if codec is None:
            raise bad_request("publishing needs the AMQP listener")
        try:
            raw = codec.from_plain(properties)
        except ValueError as err:
            raise bad_request(str(err)) from None
        expiration = properties.get("expiration")
        if expiration is not None and not (isinstance(expiration, str) and expiration.isdigit()):
            raise bad_request(f"invalid expiration '{expiration}': no_integer")
        with broker_errors():
            target = vhost.exchange_for_publish(url_name(call.params["name"]))
            message = new_message(
                target.name, routing_key, raw, data,
                persistent=properties.get("delivery_mode") == 2,
                priority=int(properties.get("priority") or 0),
                expiration=int(expiration) if expiration is not None else None)
            routed, accepted = vhost.publish(target, message,
                                             lambda: properties.get("headers") or None)
            view.commit()
        if not accepted:
            raise bad_request("Unable to publish message. Check queue limits.")
        return {"routed": routed > 0}

    def bindings(call: Call, role: str) -> Any:
        vhost = view.vhost(call.params["vhost"])
        name = exchange(vhost, call.params["name"]).name
        items = [b for b in binding_items(view, vhost)
                 if b[role] == name and (role == "source" or b["destination_type"] == "exchange")]
        return query.shape(items, call.query, [])

    router.add("GET", "exchanges", listing)
    router.add("GET", "exchanges/{vhost}", listing)
    router.add("GET", "exchanges/{vhost}/{name}", show)
    router.add("PUT", "exchanges/{vhost}/{name}", declare)
    router.add("DELETE", "exchanges/{vhost}/{name}", delete)
    router.add("POST", "exchanges/{vhost}/{name}/publish", publish)
    router.add("GET", "exchanges/{vhost}/{name}/bindings/source",
               lambda call: bindings(call, "source"))
    router.add("GET", "exchanges/{vhost}/{name}/bindings/destination",
               lambda call: bindings(call, "destination"))
