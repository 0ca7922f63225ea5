"""GET/PUT/DELETE /api/policies[/{vhost}[/{name}]], as RabbitMQ 3.10's management API.

A policy takes effect at once on the queues it matches (``broker/amqp/policies.py``
says which keys Portask applies and how they combine with x-arguments). A refused
policy is a 400 whose reason is RabbitMQ's ``Validation failed`` text.
"""

from __future__ import annotations

from typing import Any

from portask.http.management import query
from portask.http.management.api import Call, Router, bad_request, not_found
from portask.http.management.view import BrokerView, InvalidPolicy, parse_policy
from portask.http.server import Response


def register(router: Router, view: BrokerView) -> None:
    def items(vhost: str | None) -> list[dict[str, Any]]:
        return [p.as_json() for v in view.scoped(vhost)
                for p in sorted(v.policies.values(), key=lambda p: p.name)]

    def all_policies(call: Call) -> Any:
        return query.shape(items(None), call.query, ["vhost", "name"])

    def vhost_policies(call: Call) -> Any:
        return query.shape(items(call.params["vhost"]), call.query, ["name"])

    def policy(call: Call) -> Any:
        found = view.vhost(call.params["vhost"]).policies.get(call.params["name"])
        if found is None:
            raise not_found()
        return found.as_json()

    def put_policy(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        name = call.params["name"]
        try:
            new = parse_policy(vhost.name, name, call.body())
        except InvalidPolicy as exc:
            raise bad_request(f"Validation failed\n\n{exc}\n") from None
        existed = name in vhost.policies
        vhost.set_policy(new)
        return Response(204) if existed else Response(201)

    def delete_policy(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        if not vhost.clear_policy(call.params["name"]):
            raise not_found()
        return None

    router.add("GET", "policies", all_policies)
    router.add("GET", "policies/{vhost}", vhost_policies)
    router.add("GET", "policies/{vhost}/{name}", policy)
    router.add("PUT", "policies/{vhost}/{name}", put_policy)
    router.add("DELETE", "policies/{vhost}/{name}", delete_policy)
