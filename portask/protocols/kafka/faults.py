"""Fault rules and the request log, applied to Kafka requests (the control API).

The server calls ``handle`` instead of the API's handler only while
``Control.kafka_hooked`` is set (a Kafka fault rule is installed or the request log is
on), so a broker without either pays one attribute read per request.

Actions, as a client sees them:

- ``error``: the answer carries the named error on every topic, partition, group or
  key the request names (Produce, Fetch, OffsetCommit, CreateTopics, ...), or in its
  top-level error code where the API has no such lists (FindCoordinator, JoinGroup,
  Heartbeat, InitProducerId, ...); the request itself is not carried out. The client
  handles it as it would from a real broker (NOT_LEADER_OR_FOLLOWER: refresh metadata
  and retry). Metadata keeps its broker list and carries the error on the topics.
- ``throttle``: the request is carried out and its answer says ``throttle_time_ms``;
  clients (KIP-219) hold their next requests to this broker back that long.
- ``delay``: the answer comes ``delay_ms`` later (answers behind it wait, in order).
- ``drop``: no answer; the client's request times out. Later answers on that
  connection wait behind it, as they would behind a lost one.
- ``close``: the connection is closed without an answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import inspect
import time
from typing import Any

from kio.serial import entity_reader

from portask.broker.control import FaultRule, RequestEntry
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis import fetch, produce
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.error_answers import error_response
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.wire import INT32


def api_name(schema: str) -> str:
    """The API's name as Kafka's protocol guide writes it: "produce" -> "Produce"."""
    return "".join(part.capitalize() for part in schema.split("_"))


def known_apis() -> frozenset[str]:
    return frozenset(api_name(api.schema) for api in registry.APIS.values())


def handle(ctx: RequestContext, api: registry.Api, request: Any, size: int) -> Any:
    """What the connection answers with: the handler's answer, or a fault's; while the
    request log is on, encoded here (so its size and error codes are known)."""
    control = ctx.broker.control
    name = api_name(api.schema)
    topics = _topics(ctx, request)
    rule = (control.faults.take("kafka", name, ctx.api_version, topics, ctx.client_id,
                                ctx.connection.authenticated_user,
                                lambda: _partitions(ctx, request))
            if control.faults.kafka else None)
    log = control.requests
    if not log.enabled:
        return api.handler(ctx, request) if rule is None else _fault(ctx, api, request, rule)
    entry = log.add(RequestEntry(
        protocol="kafka", api=name, version=ctx.api_version, client_id=ctx.client_id,
        connection=_peer(ctx.connection.peer), topics=topics, size=size,
        details=_details(ctx.api_key, request), partitions=_partitions(ctx, request),
        fault=rule.action if rule is not None else None,
        error=rule.error if rule is not None and rule.action == "error" else None))
    started = time.perf_counter()
    result = api.handler(ctx, request) if rule is None else _fault(ctx, api, request, rule)
    if inspect.isawaitable(result):
        return _logged_later(ctx, api, result, entry, started)
    return _logged(ctx, api, result, entry, started)


def _logged(ctx: RequestContext, api: registry.Api, answer: Any, entry: RequestEntry,
            started: float) -> Any:
    entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    if answer is None:  # acks=0: nothing goes back
        entry.response_size = 0
        return None
    if not api.min_version <= ctx.api_version <= api.max_version:
        return answer  # an ApiVersions the server answers at v0 itself
    schema = registry.schema(ctx.api_key, ctx.api_version)
    if isinstance(answer, list):
        entry.response_size = sum(len(b) for b in answer)
        entry.errors = _error_names(_reader(schema.response_type)(b"".join(answer), 0)[0])
        return answer
    entry.errors = _error_names(answer)
    body = registry.encode(schema, answer)
    entry.response_size = len(body)
    return [body]


async def _logged_later(ctx: RequestContext, api: registry.Api, result: Any,
                        entry: RequestEntry, started: float) -> Any:
    return _logged(ctx, api, await result, entry, started)


_READERS: dict[type, Any] = {}


def _reader(response_type: type) -> Any:
    """kio's reader of a hand-encoded answer (Produce, Fetch), for the error codes."""
    reader = _READERS.get(response_type)
    if reader is None:
        reader = _READERS[response_type] = entity_reader(response_type)
    return reader


def _error_names(entity: Any) -> list[str]:
    """The distinct errors of an answer, by Kafka's name, in the order they appear."""
    found: dict[str, None] = {}
    _walk_errors(entity, found)
    return list(found)


def _walk_errors(entity: Any, found: dict[str, None]) -> None:
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.metadata.get("kafka_type") == "error_code":
            if value:
                found[ErrorCode(value).name.upper()] = None
        elif isinstance(value, tuple):
            for item in value:
                if dataclasses.is_dataclass(item):
                    _walk_errors(item, found)
        elif dataclasses.is_dataclass(value):
            _walk_errors(value, found)


def _fault(ctx: RequestContext, api: registry.Api, request: Any, rule: FaultRule) -> Any:
    loop = asyncio.get_running_loop()
    if rule.action == "delay":
        return _delayed(ctx, api, request, rule.delay_ms)
    if rule.action == "drop":
        return loop.create_future()  # never answered; cancelled when the connection goes
    if rule.action == "close":
        ctx.connection.close()
        return loop.create_future()
    if rule.action == "throttle":
        result = api.handler(ctx, request)
        if inspect.isawaitable(result):
            return _throttled_later(ctx, result, rule.throttle_ms)
        return throttled(ctx, result, rule.throttle_ms)
    assert rule.error is not None
    return error_answer(ctx, api, request, int(ErrorCode[rule.error.lower()]))


def error_answer(ctx: RequestContext, api: registry.Api, request: Any, code: int) -> Any:
    """The answer to ``request`` with ``code`` on everything it asked about."""
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
    if ctx.api_key == ApiKey.METADATA:
        result = api.handler(ctx, request)
        if inspect.isawaitable(result):
            return _metadata_error_later(result, request, code)
        return _metadata_error(result, request, code)
    return error_response(ctx.api_key, ctx.api_version, request, code)


def _metadata_error(answer: Any, request: Any, code: int) -> Any:
    """The brokers as they are (clients need them to go on), the error on each topic
    asked for (all of them when the request names none), without partitions, as Kafka
    answers a topic it cannot serve."""
    asked = {t.name for t in request.topics or () if t.name} if request.topics else None
    topics = tuple(dataclasses.replace(t, error_code=ErrorCode(code), partitions=())
                   if asked is None or t.name in asked else t for t in answer.topics)
    return dataclasses.replace(answer, topics=topics)


async def _metadata_error_later(result: Any, request: Any, code: int) -> Any:
    return _metadata_error(await result, request, code)


def throttled(ctx: RequestContext, answer: Any, throttle_ms: int) -> Any:
    """``answer`` saying the client is throttled for ``throttle_ms``. The hand-encoded
    answers carry throttle_time_ms at a fixed place: first in a Fetch (v1+), last
    before the tagged fields in a Produce (v1+)."""
    if answer is None:
        return None
    if isinstance(answer, list):
        if ctx.api_version < 1 or not answer:
            return answer
        if ctx.api_key == ApiKey.FETCH:
            head = bytes(answer[0])
            return [INT32.pack(throttle_ms) + head[4:], *answer[1:]]
        if ctx.api_key == ApiKey.PRODUCE:
            body = bytes(answer[0])
            end = len(body) - (1 if ctx.api_version >= 9 else 0)  # the tagged fields
            return [body[:end - 4] + INT32.pack(throttle_ms) + body[end:]]
        return answer
    if any(f.name == "throttle_time" for f in dataclasses.fields(answer)):
        return dataclasses.replace(answer,
                                   throttle_time=datetime.timedelta(milliseconds=throttle_ms))
    return answer


async def _throttled_later(ctx: RequestContext, result: Any, throttle_ms: int) -> Any:
    return throttled(ctx, await result, throttle_ms)


async def _delayed(ctx: RequestContext, api: registry.Api, request: Any, delay_ms: int) -> Any:
    await asyncio.sleep(delay_ms / 1000)
    result = api.handler(ctx, request)
    if inspect.isawaitable(result):
        result = await result
    return result


# Where requests list the topics they name: a list of names or of entries with a
# name (``topic`` in some APIs, only ``topic_id`` in Fetch v13+), possibly inside a
# list of groups or transactions.
_TOPIC_LISTS = ("topics", "topic_data", "topic_names", "v3_and_below_topics",
                "topic_partitions", "subscribed_topic_names")
_NESTED_LISTS = ("groups", "transactions")


def _topics(ctx: RequestContext, request: Any) -> tuple[str, ...]:
    if request is None:
        return ()
    found: list[str] = []
    _collect(ctx, request, found)
    for outer in _NESTED_LISTS:
        for entry in getattr(request, outer, None) or ():
            if not isinstance(entry, str):
                _collect(ctx, entry, found)
    return tuple(found)


def _collect(ctx: RequestContext, holder: Any, found: list[str],
             partitions: list[tuple[str, int]] | None = None) -> None:
    for attribute in _TOPIC_LISTS:
        for entry in getattr(holder, attribute, None) or ():
            if isinstance(entry, str):
                found.append(entry)
                continue
            name = getattr(entry, "name", None) or getattr(entry, "topic", None)
            if not name and getattr(entry, "topic_id", None) is not None:
                topic = ctx.broker.topics.by_id(entry.topic_id)
                name = topic.name if topic is not None else None
            if isinstance(name, str) and name:
                found.append(name)
                if partitions is not None:
                    partitions.extend((name, index) for index in _indexes(entry))


# Where a topic entry lists its partitions: plain indexes or entries with an index.
_PARTITION_LISTS = ("partitions", "partition_data", "partition_indexes")
_INDEX_FIELDS = ("partition_index", "partition", "index")


def _indexes(entry: Any) -> list[int]:
    for attribute in _PARTITION_LISTS:
        items = getattr(entry, attribute, None)
        if isinstance(items, tuple):
            return [item if isinstance(item, int) else next(
                (getattr(item, f) for f in _INDEX_FIELDS if hasattr(item, f)), -1)
                for item in items]
    return []


def _partitions(ctx: RequestContext, request: Any) -> list[tuple[str, int]]:
    """Every (topic, partition) the request names, for the request log."""
    if request is None:
        return []
    found: list[str] = []
    partitions: list[tuple[str, int]] = []
    _collect(ctx, request, found, partitions)
    for outer in _NESTED_LISTS:
        for entry in getattr(request, outer, None) or ():
            if not isinstance(entry, str):
                _collect(ctx, entry, found, partitions)
    return partitions


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
    if request is None:
        return {}
    # Other APIs: the ids that say whose request it was (group, member, transaction).
    return {name: value for name in _ID_FIELDS
            if isinstance(value := getattr(request, name, None), str | int | tuple)
            and not isinstance(value, bool)}


_ID_FIELDS = ("group_id", "member_id", "generation_id", "transactional_id", "producer_id",
              "key", "coordinator_keys", "protocol_type")


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
