"""RabbitMQ's topic permissions (3.10): ``/api/topic-permissions[/{vhost}/{user}]``,
``/api/users/{user}/topic-permissions`` and ``/api/vhosts/{vhost}/topic-permissions``.

A topic permission holds write and read expressions on routing keys for one user, vhost
and topic exchange (``{"exchange": "amq.topic", "write": "^{username}\\.", "read": ".*"}``);
AMQP enforces them as RabbitMQ does (``Channel.check_topic_access``). As in RabbitMQ's
``rabbit_mgmt_wm_topic_permission``: a user and vhost's topic permissions are listed
together (404 when there are none), PUT adds or replaces the one for its exchange (400
``vhost_or_user_not_found`` for an unknown user), and DELETE removes all of them, or
one with ``/{exchange}``. Changing them needs the administrator tag.
"""

from __future__ import annotations

from typing import Any

from portask.http.management import query
from portask.http.management.api import Call, Router, bad_request, not_found
from portask.http.management.view import BrokerView, InvalidUser, TopicPermission
from portask.http.server import Response


def _item(user: str, vhost: str, exchange: str, permission: TopicPermission
          ) -> dict[str, Any]:
    return {"user": user, "vhost": vhost, "exchange": exchange, **permission.as_dict()}


def register(router: Router, view: BrokerView) -> None:
    store = view.store

    def items(user: str | None = None, vhost: str | None = None) -> list[dict[str, Any]]:
        return [_item(u, v, e, p) for u, v, e, p in store.topic_permissions()
                if (user is None or u == user) and (vhost is None or v == vhost)]

    def all_permissions(call: Call) -> Any:
        return query.shape(items(), call.query, ["vhost", "user"])

    def user_permissions(call: Call) -> Any:
        if store.get(call.params["user"]) is None:
            raise not_found()
        return query.shape(items(user=call.params["user"]), call.query, ["vhost"])

    def vhost_permissions(call: Call) -> Any:
        vhost = view.vhost(call.params["vhost"]).name
        return query.shape(items(vhost=vhost), call.query, ["user"])

    def user_vhost(call: Call) -> list[dict[str, Any]]:
        """The user and vhost's topic permissions; 404 when either is unknown or none."""
        vhost = view.vhost(call.params["vhost"]).name
        user = call.params["user"]
        if store.get(user) is None:
            raise not_found()
        return items(user, vhost)

    def get(call: Call) -> Any:
        found = user_vhost(call)
        if not found:
            raise not_found()
        return found

    def put(call: Call) -> Any:
        user, vhost_name = call.params["user"], call.params["vhost"]
        found = store.get(user)
        if found is None or vhost_name not in {v.name for v in view.vhosts()}:
            raise bad_request("vhost_or_user_not_found")
        if found.configured:
            raise bad_request(f"user '{user}' is configured (auth.users / amqp.default_user) "
                              "and may do everything; create it over the API to restrict it")
        body = call.body()
        missing = [k for k in ("exchange", "write", "read") if k not in body]
        if missing:
            # rabbit_mgmt_util:with_decode's reason, printed as Erlang terms.
            raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
        existed = bool(items(user, vhost_name))
        try:
            store.set_topic_permission(user, vhost_name, str(body["exchange"]),
                                       str(body["write"]), str(body["read"]))
        except InvalidUser as exc:
            raise bad_request(str(exc)) from None
        return Response(204) if existed else Response(201)

    def delete(call: Call) -> Any:
        found = user_vhost(call)
        exchange = call.params.get("exchange")
        if not found:
            raise not_found()
        for item in found:
            if exchange is None or item["exchange"] == exchange:
                store.clear_topic_permission(item["user"], item["vhost"], item["exchange"])
        return None

    router.add("GET", "topic-permissions", all_permissions)
    router.add("GET", "users/{user}/topic-permissions", user_permissions)
    router.add("GET", "vhosts/{vhost}/topic-permissions", vhost_permissions)
    for path in ("topic-permissions/{vhost}/{user}",
                 "topic-permissions/{vhost}/{user}/{exchange}"):
        router.add("GET", path, get)
        router.add("PUT", path, put)
        router.add("DELETE", path, delete)
