"""The control API for tests, under ``/_portask/`` on the HTTP listener.

- ``POST /_portask/reset`` (``{"vhost": ..., "prefix": ...}``, both optional): delete
  topics, groups and their offsets, queues, exchanges, bindings and messages.
- ``GET /_portask/peek/topics/{topic}/{partition}?offset=&count=``: records, unconsumed.
- ``GET /_portask/peek/queues/{vhost}/{queue}``: messages, unconsumed, with filters
  (``http.control.peek``).
- ``POST /_portask/seed``, ``/_portask/snapshots/{name}`` (take, restore, list, delete),
  ``PUT/DELETE /_portask/vhosts/{name}`` (``http.control.state``).
- ``GET /_portask/wait/queue/{vhost}/{queue}?messages=N|consumers=N&timeout_ms=``,
  ``/_portask/wait/topic/{topic}?records=N``, ``/_portask/wait/group/{group}?state=&members=``:
  200 once true, 408 at the timeout.
- ``POST/GET/DELETE /_portask/faults``: add, list and clear fault rules.
- ``PUT /_portask/requests`` (``{"enabled": true, "size": N}``), ``GET`` (filters
  ``protocol``, ``api`` (a Kafka API or an AMQP method), ``topic``, ``client_id``,
  ``connection``, ``queue``, ``exchange``, ``errors=true``, ``since_ms``, ``limit``),
  ``DELETE``: the request log of both protocols.
- ``POST /_portask/alarms/{memory|disk}``, ``DELETE`` the same: raise or clear an alarm.
- ``POST /_portask/connections/close``: close every client connection.
- ``GET/POST /_portask/kafka/topology``: export and load topics and ACLs (topology.py).
- ``POST /_portask/listeners/{kafka|amqp}/refuse`` (``{"duration_ms": N,
  "close_existing": false}``), ``DELETE`` the same: reset new connections for a while.
- ``POST /_portask/storage/fail-syncs`` (``{"count": N}``), ``DELETE``: the next N
  fdatasyncs of the logs fail with EIO.

The caller has authenticated (the console's Basic check, as for ``/api/``). Errors are
``{"error": ..., "message": ...}`` as in the Kafka HTTP API. Waits poll broker state
every few milliseconds on the event loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from portask.http.control import topology
from portask.http.control.peek import register_peek
from portask.http.control.state import register_state
from portask.http.control.view import ControlError, ControlView
from portask.http.kafka.api import (
    MAX_RECORDS,
    Call,
    KafkaApiError,
    body_int,
    body_str,
    invalid,
    not_found,
    route,
)
from portask.http.kafka.records import read_options, record_item
from portask.http.kafka.view import KafkaView, Position
from portask.http.management.api import Router, to_json
from portask.http.server import Request, Response

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.http.management.view import BrokerView

PREFIX = "/_portask"
# How often a wait looks at broker state: well under a test's patience, and a check
# costs microseconds.
WAIT_POLL_S = 0.005
DEFAULT_WAIT_MS = 5000
MAX_WAIT_MS = 300_000
MAX_RULE_MS = 86_400_000  # a fault rule's duration: a day at most
GROUP_STATES = ("Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead")


class ControlApi:
    """Routes and shapes errors as the Kafka HTTP API does; a wait answers later."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        routed = route(self.router, request, PREFIX)
        if isinstance(routed, Response):
            return routed
        handler, call = routed
        try:
            result = handler(call)
        except KafkaApiError as err:
            return err.response()
        if isinstance(result, Response) or inspect.isawaitable(result):
            return result  # type: ignore[no-any-return]
        return Response(200, to_json(result))


def control_api(broker: Broker, management: BrokerView) -> ControlApi:
    view = ControlView(broker)
    kafka = KafkaView(broker, management)
    router = Router()
    _register_state(router, view, kafka)
    register_peek(router, view)
    register_state(router, view)
    _register_waits(router, view)
    _register_faults(router, view)
    _register_broker(router, view)
    _register_requests(router, view)
    topology.register(router, view)
    return ControlApi(router)


def _register_state(router: Router, view: ControlView, kafka: KafkaView) -> None:
    control = view.control

    def reset(call: Call) -> Any:
        body = call.body()
        try:
            result = control.reset(vhost=body_str(body, "vhost"),
                                   prefix=body_str(body, "prefix") or "")
        except ControlError as exc:
            raise invalid("vhost", str(exc)) from None
        return {"topics": result.topics, "groups": result.groups, "offsets": result.offsets,
                "queues": result.queues, "exchanges": result.exchanges,
                "messages": result.messages, "took_ms": result.took_ms}

    def peek_topic(call: Call) -> Any:
        topic = kafka.topic(call.params["topic"])
        try:
            index = int(call.params["partition"])
        except ValueError:
            raise invalid("partition", "partition must be an integer") from None
        partition = kafka.partition(topic, index)
        count = call.int_query("count", 10, minimum=1, maximum=MAX_RECORDS)
        offset = call.int_query("offset", 0, minimum=0)
        _, max_bytes, fmt = read_options(call)
        assert count is not None
        records, problems, _ = kafka.read(partition, Position(offset=offset), count, max_bytes)
        return {"topic": topic.name, "partition": index,
                "records": [record_item(index, r, fmt) for r in records],
                "unreadable": problems}

    router.add("POST", "reset", reset)
    router.add("GET", "peek/topics/{topic}/{partition}", peek_topic)


def _register_waits(router: Router, view: ControlView) -> None:
    def wait_queue(call: Call) -> Any:
        vhost, name = call.params["vhost"], call.params["queue"]
        messages = call.int_query("messages", minimum=0)
        consumers = call.int_query("consumers", minimum=0)
        if messages is None and consumers is None:
            raise invalid("messages", "give messages=N or consumers=N")

        def state() -> tuple[bool, dict[str, Any]]:
            counts = view.queue_counts(vhost, name)
            if counts is None:
                return False, {"exists": False}
            ready, consuming = counts
            done = ((messages is None or ready >= messages)
                    and (consumers is None or consuming >= consumers))
            return done, {"exists": True, "messages": ready, "consumers": consuming}

        return _wait(call, state)

    def wait_topic(call: Call) -> Any:
        name = call.params["topic"]
        wanted = call.int_query("records", 1, minimum=0)
        assert wanted is not None

        def state() -> tuple[bool, dict[str, Any]]:
            records = view.topic_records(name)
            if records is None:
                return False, {"exists": False}
            return records >= wanted, {"exists": True, "records": records}

        return _wait(call, state)

    def wait_group(call: Call) -> Any:
        group_id = call.params["group"]
        wanted_state = call.query.get("state") or None
        if wanted_state is not None and wanted_state not in GROUP_STATES:
            raise invalid("state", f"state must be one of {', '.join(GROUP_STATES)}")
        members = call.int_query("members", minimum=0)

        def state() -> tuple[bool, dict[str, Any]]:
            group = view.group(group_id)
            if group is None:
                return False, {"exists": False}
            current, count = view.group_state(group)
            done = ((wanted_state is None or current == wanted_state)
                    and (members is None or count == members))
            return done, {"exists": True, "state": current, "members": count}

        return _wait(call, state)

    router.add("GET", "wait/queue/{vhost}/{queue}", wait_queue)
    router.add("GET", "wait/topic/{topic}", wait_topic)
    router.add("GET", "wait/group/{group}", wait_group)


def _register_faults(router: Router, view: ControlView) -> None:
    control = view.control

    def add_fault(call: Call) -> Any:
        body = call.body()
        probability = body.get("probability")
        if probability is not None and (isinstance(probability, bool)
                                        or not isinstance(probability, int | float)):
            raise invalid("probability", "probability must be a number")
        times = body.get("times")
        if times == "once":
            times = 1
        elif times is not None:
            times = body_int(body, "times", minimum=1)
        try:
            rule = control.faults.add(
                protocol=body_str(body, "protocol", required=True) or "",
                action=body_str(body, "action", required=True) or "",
                api=body_str(body, "api"), topic=body_str(body, "topic"),
                partition=body_int(body, "partition", minimum=0, maximum=2**31 - 1),
                min_version=body_int(body, "min_version", minimum=0, maximum=32767),
                max_version=body_int(body, "max_version", minimum=0, maximum=32767),
                throttle_ms=body_int(body, "throttle_ms", 0, minimum=0,
                                     maximum=MAX_WAIT_MS) or 0,
                routing_key=body_str(body, "routing_key"),
                error=_kafka_error(body_str(body, "error")),
                delay_ms=body_int(body, "delay_ms", 0, minimum=0, maximum=MAX_WAIT_MS) or 0,
                times=times, probability=probability, method=body_str(body, "method"),
                queue=body_str(body, "queue"), exchange=body_str(body, "exchange"),
                code=body_int(body, "code", minimum=300, maximum=599),
                text=body_str(body, "text"), client=body_str(body, "client"),
                user=body_str(body, "user"),
                duration_ms=body_int(body, "duration_ms", minimum=1, maximum=MAX_RULE_MS))
        except ControlError as exc:
            raise KafkaApiError(400, "invalid_request", str(exc)) from None
        return Response(201, to_json(rule.describe()))

    def list_faults(call: Call) -> Any:
        return [rule.describe() for rule in control.faults.active()]

    def clear_faults(call: Call) -> Any:
        return {"cleared": control.faults.clear()}

    router.add("POST", "faults", add_fault)
    router.add("GET", "faults", list_faults)
    router.add("DELETE", "faults", clear_faults)



def _register_broker(router: Router, view: ControlView) -> None:
    """Broker-level faults: alarms, connections closed or refused."""
    control = view.control

    def alarm(call: Call) -> Any:
        resource = call.params["resource"]
        try:
            if call.request.method == "POST":
                control.raise_alarm(resource)
            else:
                control.clear_alarm(resource)
        except ControlError as exc:
            raise not_found(str(exc)) from None
        return {"alarms": sorted(view.broker.alarms.active)}

    def close_connections(call: Call) -> Any:
        return {"closed": control.close_all_connections()}

    def refuse(call: Call) -> Any:
        body = call.body() if call.request.method == "POST" else {}
        close_existing = body.get("close_existing", False)
        if not isinstance(close_existing, bool):
            raise invalid("close_existing", "close_existing must be true or false")
        duration = 0
        if call.request.method == "POST":
            duration = body_int(body, "duration_ms", minimum=1) or 0
            if not duration:
                raise invalid("duration_ms", "give duration_ms, the time to refuse for")
        try:
            closed = control.refuse_connections(call.params["listener"], duration,
                                                close_existing=close_existing)
        except ControlError as exc:
            raise invalid("listener", str(exc)) from None
        return {"closed": closed, "refusing": control.refusals()}

    def fail_syncs(call: Call) -> Any:
        count = 0
        if call.request.method == "POST":
            count = body_int(call.body(), "count", 1, minimum=0) or 0
        try:
            return {"failing_syncs": control.fail_syncs(count)}
        except ControlError as exc:
            raise invalid("count", str(exc)) from None

    router.add("POST", "storage/fail-syncs", fail_syncs)
    router.add("DELETE", "storage/fail-syncs", fail_syncs)
    router.add("POST", "alarms/{resource}", alarm)
    router.add("DELETE", "alarms/{resource}", alarm)
    router.add("POST", "connections/close", close_connections)
    router.add("POST", "listeners/{listener}/refuse", refuse)
    router.add("DELETE", "listeners/{listener}/refuse", refuse)


def _register_requests(router: Router, view: ControlView) -> None:
    control = view.control

    def requests(call: Call) -> Any:
        q = call.query
        errors_only = q.get("errors", "") in ("true", "1")
        entries = list(control.requests.find(protocol=q.get("protocol") or None,
                                             api=q.get("api") or None,
                                             topic=q.get("topic") or None,
                                             client_id=q.get("client_id") or None,
                                             connection=q.get("connection") or None,
                                             queue=q.get("queue") or None,
                                             exchange=q.get("exchange") or None,
                                             errors_only=errors_only,
                                             since_ms=call.int_query("since_ms", minimum=0)))
        limit = call.int_query("limit", len(entries), minimum=0)
        assert limit is not None
        return {"enabled": control.requests.enabled,
                "requests": [e.describe() for e in entries[len(entries) - limit:]]}

    def configure_requests(call: Call) -> Any:
        body = call.body()
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise invalid("enabled", "enabled must be true or false")
        try:
            control.requests.configure(enabled=enabled, size=body_int(body, "size"))
        except ControlError as exc:
            raise invalid("size", str(exc)) from None
        return {"enabled": control.requests.enabled,
                "size": control.requests.entries.maxlen}

    def clear_requests(call: Call) -> Any:
        return {"cleared": control.requests.clear()}

    router.add("GET", "requests", requests)
    router.add("PUT", "requests", configure_requests)
    router.add("DELETE", "requests", clear_requests)


def _kafka_error(name: str | None) -> str | None:
    """An error name as Kafka's docs spell it (NOT_LEADER_OR_FOLLOWER), checked here so
    that a typo is a 400 now and not a surprise at the first matching request."""
    if name is None:
        return None
    from kio.schema.errors import ErrorCode

    if name.lower() not in ErrorCode.__members__ or name.lower() == "none":
        raise invalid("error", f"unknown Kafka error {name!r}")
    return name.upper()


def _wait(call: Call, state: Callable[[], tuple[bool, dict[str, Any]]]
          ) -> Response | Awaitable[Response]:
    timeout_ms = call.int_query("timeout_ms", DEFAULT_WAIT_MS, minimum=0, maximum=MAX_WAIT_MS)
    assert timeout_ms is not None
    done, seen = state()
    if done:
        return Response(200, to_json({"ok": True, **seen}))

    async def poll() -> Response:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            await asyncio.sleep(WAIT_POLL_S)
            done, seen = state()
            if done:
                return Response(200, to_json({"ok": True, **seen}))
            if time.monotonic() >= deadline:
                return Response(408, to_json({"ok": False, "error": "timeout", **seen}))

    return poll()
