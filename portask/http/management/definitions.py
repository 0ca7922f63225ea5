"""GET /api/definitions[/{vhost}]: export in RabbitMQ's definitions JSON, so that a
real RabbitMQ (``rabbitmqadmin import``, ``load_definitions``) can take it.

As RabbitMQ exports: exclusive queues, the default and ``amq.*`` exchanges and the
default exchange's implicit bindings are left out; passwords are exported as
RabbitMQ's salted SHA-256 hashes (``rabbit_password_hashing_sha256``).

POST /api/definitions[/{vhost}] imports such a document (``broker/amqp/
definitions_import.py``): 204 when done, 400 with the entry at fault and why, and
nothing changed, when it cannot be.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from portask.http.management.api import Call, Router, bad_request
from portask.http.management.bindings import binding_items
from portask.http.management.view import (
    RABBITMQ_VERSION,
    BrokerView,
    InvalidDefinitions,
    VirtualHost,
    user_json,
)
from portask.http.server import Response


def rabbit_password_hash(password: str) -> str:
    """RabbitMQ's format: base64(salt(4) + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _vhost_objects(view: BrokerView, vhost: VirtualHost, with_vhost: bool) -> dict[str, Any]:
    scope = {"vhost": vhost.name} if with_vhost else {}
    queues = [{"name": q.name, **scope, "durable": bool(q.durable),
               "auto_delete": bool(q.auto_delete), "arguments": q.arguments}
              for q in list(vhost.queues.values()) if not q.exclusive]
    exported = {q["name"] for q in queues}
    exchanges = [{"name": e.name, **scope, "type": e.kind, "durable": e.durable,
                  "auto_delete": e.auto_delete, "internal": e.internal,
                  "arguments": e.arguments}
                 for e in list(vhost.exchanges.values())
                 if e.name and not e.name.startswith("amq.")]
    bindings = []
    for b in binding_items(view, vhost):
        if not b["source"] or (b["destination_type"] == "queue"
                               and b["destination"] not in exported):
            continue
        item = {k: b[k] for k in ("source", "vhost", "destination", "destination_type",
                                  "routing_key", "arguments")}
        if not with_vhost:
            del item["vhost"]
        bindings.append(item)
    policies = []
    for policy in sorted(vhost.policies.values(), key=lambda p: p.name):
        item = policy.as_json()
        if not with_vhost:
            del item["vhost"]
        policies.append(item)
    return {"queues": queues, "exchanges": exchanges, "bindings": bindings,
            "policies": policies}


def register(router: Router, view: BrokerView) -> None:
    def export_all(call: Call) -> dict[str, Any]:
        vhosts = view.vhosts()
        objects: dict[str, list[Any]] = {"queues": [], "exchanges": [], "bindings": [],
                                         "policies": []}
        for vhost in vhosts:
            for key, items in _vhost_objects(view, vhost, True).items():
                objects[key].extend(items)
        passwords = dict(view.users.passwords())
        passwords.setdefault(view.settings.amqp.default_user,
                             view.settings.amqp.default_password)
        return {
            "rabbit_version": RABBITMQ_VERSION, "rabbitmq_version": RABBITMQ_VERSION,
            "product_name": "Portask", "product_version": view.product()["product_version"],
            # Configured users' hashes are made from their passwords at each export.
            "users": [{**user_json(u), "password_hash": u.password_hash
                       or rabbit_password_hash(passwords.get(u.name, ""))}
                      for u in view.store.users()],
            "vhosts": [{"name": v.name, "limits": [], "metadata": {"description": "",
                                                                    "tags": []}}
                       for v in vhosts],
            "permissions": [{"user": n, "vhost": v.name, **p.as_dict()}
                            for v in vhosts for n in view.user_names()
                            if (p := view.store.permission(n, v.name)) is not None],
            "topic_permissions": [{"user": u, "vhost": v, "exchange": e, **p.as_dict()}
                                  for u, v, e, p in view.store.topic_permissions()],
            "parameters": [],
            "global_parameters": [{"name": "cluster_name", "value": view.cluster_name()}],
            **objects,
        }

    def export_vhost(call: Call) -> dict[str, Any]:
        vhost = view.vhost(call.params["vhost"])
        return {"rabbit_version": RABBITMQ_VERSION, "rabbitmq_version": RABBITMQ_VERSION,
                "product_name": "Portask",
                "product_version": view.product()["product_version"],
                "parameters": [], **_vhost_objects(view, vhost, False)}

    def import_into(call: Call, vhost: str | None) -> Response:
        try:
            view.import_definitions(call.body(), vhost)
        except InvalidDefinitions as exc:
            raise bad_request(str(exc)) from None
        return Response(204)

    def import_all(call: Call) -> Response:
        return import_into(call, None)

    def import_vhost(call: Call) -> Response:
        return import_into(call, view.vhost(call.params["vhost"]).name)

    router.add("GET", "definitions", export_all)
    router.add("GET", "definitions/{vhost}", export_vhost)
    router.add("POST", "definitions", import_all)
    router.add("POST", "definitions/{vhost}", import_vhost)
