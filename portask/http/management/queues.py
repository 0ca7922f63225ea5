"""Queues: list, show, declare (PUT), delete, purge, get, and a queue's bindings."""

from __future__ import annotations

import base64
from typing import Any

from portask.http.management import query
from portask.http.management.api import (
    ApiError,
    Call,
    Router,
    bad_request,
    parse_bool,
    parse_int,
)
from portask.http.management.bindings import binding_items
from portask.http.management.view import API_OWNER, AnyQueue, BrokerView, broker_errors
from portask.http.server import Response

_ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
             "reject_requeue_false")


def counters(view: BrokerView, queue: AnyQueue) -> dict[str, float]:
    # Read straight from the queue (as vhosts.QueueTotals.add does): this runs per queue
    # for every list request and every sample, so no intermediate objects.
    delivered = queue.delivered + queue.delivered_flushed
    gets = queue.gets
    return {"publish": queue.published_total, "deliver_get": delivered,
            "ack": queue.acked_total,
            "redeliver": queue.redelivered + queue.redelivered_flushed,
            "deliver": delivered - gets, "deliver_no_ack": queue.deliveries_no_ack,
            "get": gets, "get_no_ack": queue.gets_no_ack, "get_empty": queue.gets_empty}


def depth(queue: AnyQueue) -> dict[str, float]:
    ready = queue.message_count
    unacked = queue.unacked
    return {"messages": ready + unacked, "messages_ready": ready,
            "messages_unacknowledged": unacked}


def queue_item(view: BrokerView, vhost: str, queue: AnyQueue,
               now: float | None = None) -> dict[str, Any]:
    key = ("queue", vhost, queue.name)
    rates = view.rates
    if now is None:
        now = rates.clock()
    store = getattr(queue, "store", None)
    owner = view.broker.amqp.get(vhost) if view.broker.amqp is not None else None
    policy = owner.queue_policy(queue.name) if owner is not None else None
    item: dict[str, Any] = {
        "name": queue.name, "vhost": vhost, "type": queue.args.kind,
        "durable": bool(queue.durable), "auto_delete": bool(queue.auto_delete),
        "exclusive": queue.exclusive, "arguments": queue.arguments,
        "node": view.node(), "state": "running",
        "policy": policy.name if policy is not None else None,
        "effective_policy_definition": dict(policy.definition) if policy is not None
        else {},
        "consumers": queue.consumer_count,
        # Message content held in memory: durable queues keep theirs in the log.
        "memory": 0 if queue.on_disk or store is None else int(store.bytes),
    }
    rates.detailed(key, depth(queue), into=item, now=now)
    item["message_stats"] = rates.detailed(key, counters(view, queue), now=now)
    idle = rates.idle_since(key)
    if idle is not None:
        item["idle_since"] = idle
    return item


def samples(view: BrokerView) -> list[tuple[tuple[str, ...], dict[str, float]]]:
    out = []
    for vhost in view.vhosts():
        for queue in list(vhost.queues.values()):
            out.append((("queue", vhost.name, queue.name),
                        {**depth(queue), **counters(view, queue)}))
    return out


def register(router: Router, view: BrokerView) -> None:
    def listing(call: Call) -> Any:
        now = view.rates.clock()  # one instant for the whole list, as one sample
        items = [queue_item(view, vhost.name, q, now)
                 for vhost in view.scoped(call.params.get("vhost"))
                 for q in list(vhost.queues.values())]
        return query.shape(items, call.query, ["vhost", "name"])

    def show(call: Call) -> Any:
        vhost, name = call.params["vhost"], call.params["name"]
        return query.pick(queue_item(view, vhost, view.queue(vhost, name)),
                          query.columns(call.query))

    def declare(call: Call) -> Response:
        vhost = view.vhost(call.params["vhost"])
        name = call.params["name"]
        body = call.body()
        arguments = body.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise bad_request("arguments must be an object")
        existed = name in vhost.queues
        with broker_errors():
            vhost.declare_queue(
                name, owner=API_OWNER,
                durable=parse_bool(body.get("durable"), "durable"),
                auto_delete=parse_bool(body.get("auto_delete"), "auto_delete"),
                arguments=arguments)
        return Response(204 if existed else 201)

    def delete(call: Call) -> None:
        vhost = view.vhost(call.params["vhost"])
        name = call.params["name"]
        if name not in vhost.queues:
            raise ApiError(404, "Object Not Found", "Not Found")
        with broker_errors():
            vhost.delete_queue(name, owner=API_OWNER,
                               if_unused=call.query.get("if-unused") == "true",
                               if_empty=call.query.get("if-empty") == "true")

    def purge(call: Call) -> None:
        vhost = view.vhost(call.params["vhost"])
        view.queue(vhost.name, call.params["name"])
        with broker_errors():
            vhost.purge_queue(call.params["name"], API_OWNER)

    def get(call: Call) -> list[dict[str, Any]]:
        vhost = view.vhost(call.params["vhost"])
        body = call.body()
        for required in ("ackmode", "count", "encoding"):
            if required not in body:
                raise bad_request(f"{required} missing")
        ackmode = body["ackmode"]
        if ackmode not in _ACKMODES:
            raise bad_request(f"Invalid ackmode value: {ackmode}. Valid values are: "
                              + ", ".join(_ACKMODES))
        count = parse_int(body["count"], "count")
        encoding = body["encoding"]
        if encoding not in ("auto", "base64"):
            raise bad_request("Unsupported encoding. Please use auto or base64.")
        truncate = body.get("truncate")
        limit = None if truncate in (None, "") else parse_int(truncate, "truncate")
        with broker_errors():
            queue = vhost.queue(call.params["name"], API_OWNER)
            if queue.is_stream:
                raise bad_request("basic.get not supported by stream queues")
            no_ack = ackmode == "ack_requeue_false"
            taken: list[tuple[Any, Any, bool]] = []
            for _ in range(max(count, 0)):
                got = queue.get(no_ack)  # type: ignore[union-attr]
                if got is None:
                    break
                taken.append(got)
            queue.delivered += len(taken)
            remaining = queue.message_count
            codec = vhost.codec
            out = []
            for i, (_ref, message, redelivered) in enumerate(taken):
                payload = bytes(message.body)
                shown = payload if limit is None else payload[:limit]
                item: dict[str, Any] = {
                    "payload_bytes": len(payload), "redelivered": redelivered,
                    "exchange": message.exchange, "routing_key": message.routing_key,
                    # As RabbitMQ reports it: what was left when this one was taken.
                    "message_count": remaining + len(taken) - i - 1,
                    "properties": codec.to_plain(message.properties) if codec else {},
                }
                text = None
                if encoding == "auto":
                    try:
                        text = shown.decode()
                    except UnicodeDecodeError:
                        text = None
                if text is not None:
                    item.update(payload=text, payload_encoding="string")
                else:
                    item.update(payload=base64.b64encode(shown).decode(),
                                payload_encoding="base64")
                out.append(item)
            refs = [ref for ref, _m, _r in taken]
            if refs and not no_ack:
                if ackmode in ("ack_requeue_true", "reject_requeue_true"):
                    queue.requeue(refs)  # back at the head, in their order
                else:
                    queue.reject(refs)  # dead-lettered when the queue has a DLX
        return out

    def bindings(call: Call) -> Any:
        vhost = call.params["vhost"]
        queue = view.queue(vhost, call.params["name"])
        items = [b for b in binding_items(view, view.vhost(vhost))
                 if b["destination_type"] == "queue" and b["destination"] == queue.name]
        return query.shape(items, call.query, [])

    router.add("GET", "queues", listing)
    router.add("GET", "queues/{vhost}", listing)
    router.add("GET", "queues/{vhost}/{name}", show)
    router.add("PUT", "queues/{vhost}/{name}", declare)
    router.add("DELETE", "queues/{vhost}/{name}", delete)
    router.add("DELETE", "queues/{vhost}/{name}/contents", purge)
    router.add("POST", "queues/{vhost}/{name}/get", get)
    router.add("GET", "queues/{vhost}/{name}/bindings", bindings)
