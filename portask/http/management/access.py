"""Vhosts, users and permissions. Users are the broker's one user store
(``portask/broker/user_store.py``): those from ``auth.users`` and ``amqp.default_user``
are administrators allowed everything on every vhost; users and permissions created here
(``PUT /api/users/{name}``, ``PUT /api/permissions/{vhost}/{user}``) are durable and
apply to AMQP at the next connection, as in RabbitMQ. ``PUT /api/vhosts/{name}`` creates
a durable vhost; ``DELETE`` removes it with its queues, exchanges, policies and
permissions, after closing its connections (320 ``vhost '...' is deleted``)."""

from __future__ import annotations

from typing import Any

from portask.http.management import query
from portask.http.management.api import Call, Router, bad_request, not_found
from portask.http.management.queues import counters, depth
from portask.http.management.view import (
    HASHING,
    BrokerView,
    InvalidUser,
    VirtualHost,
    user_json,
)
from portask.http.server import Response


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

    def put_vhost(call: Call) -> Any:
        name = call.params["name"]
        if len(name.encode()) > 255:
            raise bad_request("vhost names are at most 255 bytes")
        return Response(201) if view.create_vhost(name) else Response(204)

    def delete_vhost(call: Call) -> Any:
        if not view.delete_vhost(call.params["name"]):
            raise not_found()
        return None

    store = view.store

    def user_item(name: str) -> dict[str, Any]:
        found = store.get(name)
        if found is None:
            raise not_found()
        return user_json(found)

    def users(call: Call) -> Any:
        return query.shape([user_json(u) for u in store.users()], call.query, ["name"])

    def user(call: Call) -> Any:
        return user_item(call.params["name"])

    def put_user(call: Call) -> Any:
        body = call.body()
        tags = body.get("tags", "")
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request("tags must be a comma-separated string or a list of strings")
        algorithm = body.get("hashing_algorithm", HASHING)
        if algorithm != HASHING:
            raise bad_request(f"unsupported hashing_algorithm {algorithm!r}; "
                              f"only {HASHING} is supported")
        existed = store.get(call.params["name"]) is not None
        try:
            if "password" in body:
                store.put_user(call.params["name"], password=str(body["password"]),
                               tags=tuple(tags))
            elif "password_hash" in body:
                store.put_user(call.params["name"], password_hash=str(body["password_hash"]),
                               tags=tuple(tags))
            else:
                raise bad_request("password or password_hash must be set")
        except InvalidUser as exc:
            raise bad_request(str(exc)) from None
        return Response(204) if existed else Response(201)

    def delete_user(call: Call) -> Any:
        if not store.delete_user(call.params["name"]):
            raise not_found()
        return None

    def permission_items(vhosts: list[VirtualHost], names: list[str]) -> list[dict[str, Any]]:
        items = []
        for v in vhosts:
            for n in names:
                found = store.permission(n, v.name)
                if found is not None:
                    items.append({"user": n, "vhost": v.name, **found.as_dict()})
        return items

    def permissions(call: Call) -> Any:
        return query.shape(permission_items(view.vhosts(), view.user_names()), call.query,
                           ["vhost", "user"])

    def vhost_permissions(call: Call) -> Any:
        return query.shape(permission_items([view.vhost(call.params["name"])],
                                            view.user_names()), call.query, ["user"])

    def user_permissions(call: Call) -> Any:
        user_item(call.params["name"])
        return query.shape(permission_items(view.vhosts(), [call.params["name"]]),
                           call.query, ["vhost"])

    def permission(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        found = permission_items([vhost], [call.params["user"]])
        if not found:
            raise not_found()
        return found[0]

    def put_permission(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        name = call.params["user"]
        found = store.get(name)
        if found is None:
            raise bad_request(f"user '{name}' does not exist")
        if found.configured:
            raise bad_request(f"user '{name}' is configured (auth.users / amqp.default_user) "
                              "and may do everything; create it over the API to restrict it")
        body = call.body()
        try:
            values = [str(body.get(kind, "")) for kind in ("configure", "write", "read")]
            existed = store.permission(name, vhost.name) is not None
            store.set_permission(name, vhost.name, *values)
        except InvalidUser as exc:
            raise bad_request(str(exc)) from None
        return Response(204) if existed else Response(201)

    def delete_permission(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"])
        if not store.clear_permission(call.params["user"], vhost.name):
            raise not_found()
        return None

    router.add("GET", "vhosts", vhosts)
    router.add("GET", "vhosts/{name}", vhost)
    router.add("PUT", "vhosts/{name}", put_vhost)
    router.add("DELETE", "vhosts/{name}", delete_vhost)
    router.add("GET", "vhosts/{name}/permissions", vhost_permissions)
    router.add("GET", "users", users)
    router.add("GET", "users/{name}", user)
    router.add("PUT", "users/{name}", put_user)
    router.add("DELETE", "users/{name}", delete_user)
    router.add("GET", "users/{name}/permissions", user_permissions)
    router.add("GET", "permissions", permissions)
    router.add("GET", "permissions/{vhost}/{user}", permission)
    router.add("PUT", "permissions/{vhost}/{user}", put_permission)
    router.add("DELETE", "permissions/{vhost}/{user}", delete_permission)
