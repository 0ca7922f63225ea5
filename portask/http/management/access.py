"""Vhosts, users and permissions, read-only: users come from ``auth.users`` and
``amqp.default_user``, every user may use every vhost (Portask has no per-user
permissions yet), and all are administrators as far as this API is concerned."""

from __future__ import annotations

from typing import Any

from portask.http.management import query
from portask.http.management.api import Call, Router, not_found
from portask.http.management.queues import counters, depth
from portask.http.management.view import BrokerView, VirtualHost

_ALL = {"configure": ".*", "write": ".*", "read": ".*"}


def vhost_item(view: BrokerView, vhost: VirtualHost) -> dict[str, Any]:
    key = ("vhost", vhost.name)
    totals: dict[str, float] = {"messages": 0, "messages_ready": 0, "messages_unacknowledged": 0}
    for queue in list(vhost.queues.values()):
        for name, value in depth(queue).items():
            totals[name] += value
    t = vhost.totals()
    stats = {"publish": vhost.published(), "deliver_get": t.deliver_get, "ack": t.ack,
             "redeliver": t.redeliver, "deliver": t.deliver, "get": t.get,
             "deliver_no_ack": t.deliver_no_ack, "get_no_ack": t.get_no_ack,
             "get_empty": t.get_empty}
    return {"name": vhost.name, "description": "", "tags": [], "tracing": False,
            "cluster_state": {view.node(): "running"},
            **view.rates.detailed(key, totals),
            "message_stats": view.rates.detailed(key, stats)}


def samples(view: BrokerView) -> list[tuple[tuple[str, ...], dict[str, float]]]:
    out = []
    for vhost in view.vhosts():
        values: dict[str, float] = {}
        for queue in list(vhost.queues.values()):
            for name, value in {**depth(queue), **counters(view, queue)}.items():
                values[name] = values.get(name, 0) + value
        values["publish"] = vhost.published()
        out.append((("vhost", vhost.name), values))
    return out


def register(router: Router, view: BrokerView) -> None:
    def vhosts(call: Call) -> Any:
        return query.shape([vhost_item(view, v) for v in view.vhosts()], call.query, ["name"])

    def vhost(call: Call) -> Any:
        return query.pick(vhost_item(view, view.vhost(call.params["name"])),
                          query.columns(call.query))

    def user_item(name: str) -> dict[str, Any]:
        return {"name": name, "tags": ["administrator"], "limits": {}}

    def users(call: Call) -> Any:
        return query.shape([user_item(n) for n in view.user_names()], call.query, ["name"])

    def user(call: Call) -> Any:
        if call.params["name"] not in view.user_names():
            raise not_found()
        return user_item(call.params["name"])

    def permission_items(vhosts: list[VirtualHost], names: list[str]) -> list[dict[str, Any]]:
        return [{"user": n, "vhost": v.name, **_ALL} for v in vhosts for n in names]

    def permissions(call: Call) -> Any:
        return query.shape(permission_items(view.vhosts(), view.user_names()), call.query,
                           ["vhost", "user"])

    def vhost_permissions(call: Call) -> Any:
        return query.shape(permission_items([view.vhost(call.params["name"])],
                                            view.user_names()), call.query, ["user"])

    def user_permissions(call: Call) -> Any:
        if call.params["name"] not in view.user_names():
            raise not_found()
        return query.shape(permission_items(view.vhosts(), [call.params["name"]]),
                           call.query, ["vhost"])

    def permission(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        if call.params["user"] not in view.user_names():
            raise not_found()
        return permission_items([vhost], [call.params["user"]])[0]

    router.add("GET", "vhosts", vhosts)
    router.add("GET", "vhosts/{name}", vhost)
    router.add("GET", "vhosts/{name}/permissions", vhost_permissions)
    router.add("GET", "users", users)
    router.add("GET", "users/{name}", user)
    router.add("GET", "users/{name}/permissions", user_permissions)
    router.add("GET", "permissions", permissions)
    router.add("GET", "permissions/{vhost}/{user}", permission)
