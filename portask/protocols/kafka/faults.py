"""Fault rules and the request log, applied to Kafka requests (the control API).

The server calls ``handle`` instead of the API's handler only while
``Control.kafka_hooked`` is set (a Kafka fault rule is installed or the request log is
on), so a broker without either pays one attribute read per request.

Actions, as a client sees them:

- ``error``: the answer carries the named error on every partition of the request
  (Produce and Fetch); the client handles it as it would from a real broker
  (NOT_LEADER_OR_FOLLOWER: refresh metadata and retry).
- ``delay``: the answer comes ``delay_ms`` later (answers behind it wait, in order).
- ``drop``: no answer; the client's request times out. Later answers on that
  connection wait behind it, as they would behind a lost one.
- ``close``: the connection is closed without an answer.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from portask.broker.control import FaultRule, RequestEntry
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis import fetch, produce
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode


def api_name(schema: str) -> str:
    """The API's name as Kafka's protocol guide writes it: "produce" -> "Produce"."""
    return "".join(part.capitalize() for part in schema.split("_"))


def known_apis() -> frozenset[str]:
    return frozenset(api_name(api.schema) for api in registry.APIS.values())


def handle(ctx: RequestContext, api: registry.Api, request: Any, size: int) -> Any:
    """What the connection answers with: the handler's answer, or a fault's."""
    control = ctx.broker.control
    name = api_name(api.schema)
    topics = _topics(ctx.api_key, request)
    rule = control.faults.take("kafka", name, topics) if control.faults.kafka else None
    log = control.requests
    entry = None
    if log.enabled:
        entry = log.add(RequestEntry(
            protocol="kafka", api=name, version=ctx.api_version, client_id=ctx.client_id,
            connection=_peer(ctx.connection.peer), topics=topics, size=size,
            details=_details(ctx.api_key, request),
            fault=rule.action if rule is not None else None,
            error=rule.error if rule is not None and rule.action == "error" else None))
    if rule is None:
        started = time.perf_counter()
        result = api.handler(ctx, request)
        if entry is not None:
            if inspect.isawaitable(result):
                return _timed(result, entry, started)
            entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return result
    return _fault(ctx, api, request, rule)


def _fault(ctx: RequestContext, api: registry.Api, request: Any, rule: FaultRule) -> Any:
    loop = asyncio.get_running_loop()
    if rule.action == "delay":
        return _delayed(ctx, api, request, rule.delay_ms)
    if rule.action == "drop":
        return loop.create_future()  # never answered; cancelled when the connection goes
    if rule.action == "close":
        ctx.connection.close()
        return loop.create_future()
    assert rule.error is not None
    return error_answer(ctx, request, int(ErrorCode[rule.error.lower()]))


def error_answer(ctx: RequestContext, request: Any, code: int) -> Any:
    """The answer of a Produce or Fetch with ``code`` on every partition asked for."""
    if ctx.api_key == ApiKey.PRODUCE:
        if request.acks == 0:
            return None
        answers = [(t.name, [produce._Result(p.index, code) for p in t.partition_data])
                   for t in request.topic_data]
        return [produce._encode(ctx.api_version, answers)]
    if ctx.api_key == ApiKey.FETCH:
        topics = fetch._resolve(ctx, request)
        for _, _, wanted in topics:
            for w in wanted:
                w.error = code
        return fetch._encode(ctx.api_version, request, topics, ErrorCode.none)
    raise ValueError(f"error faults apply to Produce and Fetch, not API key {ctx.api_key}")


async def _delayed(ctx: RequestContext, api: registry.Api, request: Any, delay_ms: int) -> Any:
    await asyncio.sleep(delay_ms / 1000)
    result = api.handler(ctx, request)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _timed(result: Any, entry: RequestEntry, started: float) -> Any:
    try:
        return await result
    finally:
        entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)


def _topics(api_key: int, request: Any) -> tuple[str, ...]:
    if api_key == ApiKey.PRODUCE:
        return tuple(t.name for t in request.topic_data)
    if api_key == ApiKey.FETCH:
        return tuple(t.topic for t in request.topics if getattr(t, "topic", None))
    if api_key in (ApiKey.LIST_OFFSETS, ApiKey.OFFSET_COMMIT):
        return tuple(t.name for t in request.topics)
    if api_key == ApiKey.METADATA and request.topics:
        return tuple(t.name for t in request.topics if t.name)
    return ()


def _details(api_key: int, request: Any) -> dict[str, Any]:
    """What tests assert on, per API: acks of a Produce, offsets of a commit."""
    if api_key == ApiKey.PRODUCE:
        return {"acks": request.acks,
                "transactional_id": getattr(request, "transactional_id", None),
                "partitions": sum(len(t.partition_data) for t in request.topic_data)}
    if api_key == ApiKey.OFFSET_COMMIT:
        return {"group_id": request.group_id,
                "offsets": [{"topic": t.name, "partition": p.partition_index,
                             "offset": p.committed_offset}
                            for t in request.topics for p in t.partitions]}
    if api_key == ApiKey.FETCH:
        return {"max_wait_ms": int(request.max_wait.total_seconds() * 1000),
                "isolation_level": int(getattr(request, "isolation_level", 0))}
    return {}


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
