"""Fetch (key 1), versions 0-16.

    v0   answers in message sets of magic 0 (see message_sets.py)
    v1   throttle time
    v2   message sets of magic 1 (timestamps)
    v3   max_bytes for the whole answer (KIP-74)
    v4   isolation level, last stable offset, aborted transactions; record batches
    v5   log_start_offset
    v6   same as v5
    v7   fetch sessions (KIP-227)
    v8   same as v7
    v9   current leader epoch in the request
    v10  same as v9 (zstd allowed)
    v11  rack id; preferred read replica in the answer (KIP-392)
    v12  flexible; diverging epochs
    v13  topics by id (KIP-516)
    v14  same as v13
    v15  replica state instead of replica id (a consumer sends neither)
    v16  node endpoints on NOT_LEADER (never sent by a single node)

Long poll: the answer waits until ``min_bytes`` are available or ``max_wait_ms`` has
passed, woken by appends to any partition in the request. Fetch sessions are declined
(session id 0 in every answer, which KIP-227 allows), so every request is a full
fetch. Stored batches are written out as memoryview slices of the segment maps,
never copied or re-encoded, from v4 on; v0-v3 answers are converted from them into
message sets, as Kafka down-converts for old fetchers (control batches dropped,
compressed batches decompressed, offsets kept, headers lost).
With ``kafka.authorizer``, READ on each topic (else TOPIC_AUTHORIZATION_FAILED for its
partitions; checked once per topic per request).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

from portask import metrics
from portask.broker.kafka.topics import Partition
from portask.protocols.kafka import message_sets, txn_markers
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.wire import (
    EMPTY_TAGS,
    INT16,
    INT32,
    INT64,
    array_length,
    bytes_length,
    string,
    uuid_bytes,
)
from portask.storage import OffsetOutOfRange

READ_COMMITTED = 1
_NO_LIMIT = 2**31 - 1  # Fetch v0-2 have no max_bytes for the whole answer
_NULL_ARRAY = INT32.pack(-1)


class _Wanted:
    """One requested partition and, once read, what goes back."""

    __slots__ = ("aborted", "error", "fetch_offset", "index", "lso", "max_bytes", "partition",
                 "records", "size")

    def __init__(
        self, index: int, fetch_offset: int, max_bytes: int, partition: Partition | None, error: int
    ) -> None:
        self.index = index
        self.fetch_offset = fetch_offset
        self.max_bytes = max_bytes
        self.partition = partition
        self.error = error
        self.records: list[Any] = []
        self.size = 0
        self.lso = -1
        self.aborted: list[tuple[int, int]] = []


@api(ApiKey.FETCH, (0, 16))
def fetch(ctx: RequestContext, request: Any) -> list[Any] | Awaitable[list[Any]]:
    version = ctx.api_version
    # Fetch sessions exist from v7 on; older requests have no session id to check.
    if version >= 7 and request.session_id != 0:
        return _encode(version, request, [], ErrorCode.fetch_session_id_not_found)
    topics = _resolve(ctx, request)
    committed = version >= 4 and request.isolation_level == READ_COMMITTED
    total = _read_all(ctx, topics, getattr(request, "max_bytes", _NO_LIMIT), committed)
    max_wait_ms = request.max_wait.total_seconds() * 1000
    if total >= request.min_bytes or max_wait_ms <= 0 or _has_error(topics):
        return _respond(ctx, request, topics)
    return _long_poll(ctx, request, topics, max_wait_ms)


def _resolve(
    ctx: RequestContext, request: Any
) -> list[tuple[str, uuid.UUID | None, list[_Wanted]]]:
    registry = ctx.broker.topics
    by_id = ctx.api_version >= 13
    checked = ctx.server.authorizer is not None  # else no check at all (kafka.authorizer)
    out = []
    for entry in request.topics:
        if by_id:
            topic = registry.by_id(entry.topic_id)
            name = topic.name if topic is not None else ""
            missing = ErrorCode.unknown_topic_id
        else:
            name = entry.topic
            topic = registry.get(name)
            missing = ErrorCode.unknown_topic_or_partition
        if checked and not allowed(ctx, Operation.READ, ResourceType.TOPIC, name):
            topic, missing = None, ErrorCode.topic_authorization_failed
        wanted = []
        for p in entry.partitions:
            partition = registry.partition(name, p.partition) if topic is not None else None
            error = ErrorCode.none if partition is not None else missing
            wanted.append(
                _Wanted(p.partition, p.fetch_offset, p.partition_max_bytes, partition, error)
            )
        out.append((name, getattr(entry, "topic_id", None), wanted))
    return out


def _read_all(
    ctx: RequestContext, topics: list[tuple[str, uuid.UUID | None, list[_Wanted]]],
    max_bytes: int, committed: bool,
) -> int:
    total = 0
    for _, _, wanted in topics:
        for w in wanted:
            if w.partition is None:
                continue
            if w.partition.log.closed:  # the topic was deleted while this fetch waited
                w.partition, w.error = None, ErrorCode.unknown_topic_or_partition
                w.records, w.size = [], 0
                continue
            txn_markers.ensure_rebuilt(ctx.broker, w.partition)
            spans = w.partition.transactions
            w.lso = spans.last_stable_offset(w.partition.high_watermark)
            budget = min(w.max_bytes, max_bytes - total)
            # KIP-74: the first batch of the answer is sent whole even past the limits,
            # so a consumer never stalls behind a batch bigger than its fetch size.
            if budget <= 0 and total > 0:
                w.records, w.size = [], 0
                continue
            try:
                entries = w.partition.read(w.fetch_offset, max(budget, 0), min_one=total == 0)
            except OffsetOutOfRange:
                w.error = ErrorCode.offset_out_of_range
                w.records, w.size = [], 0
                continue
            if committed:
                # read_committed sees nothing at or past the last stable offset, and is
                # told which aborted transactions the answer overlaps.
                entries = [e for e in entries if e.offset < w.lso]
                if entries and spans.aborted:
                    end = entries[-1].offset + entries[-1].count
                    w.aborted = spans.aborted_between(w.fetch_offset, end)
            w.records = [e.payload for e in entries]
            w.size = sum(len(p) for p in w.records)
            total += w.size
    return total


def _has_error(topics: list[tuple[str, uuid.UUID | None, list[_Wanted]]]) -> bool:
    return any(w.error for _, _, wanted in topics for w in wanted)


async def _long_poll(
    ctx: RequestContext,
    request: Any,
    topics: list[tuple[str, uuid.UUID | None, list[_Wanted]]],
    max_wait_ms: float,
) -> list[Any]:
    loop = asyncio.get_running_loop()
    committed = ctx.api_version >= 4 and request.isolation_level == READ_COMMITTED
    max_bytes = getattr(request, "max_bytes", _NO_LIMIT)
    deadline = loop.time() + max_wait_ms / 1000
    partitions = [w.partition for _, _, wanted in topics for w in wanted if w.partition]
    # Read before the first wait: this coroutine starts a loop turn after the handler
    # read nothing, and an append in between woke no one. Nothing runs between a read
    # and _next_append's watch, so no append is missed.
    while True:
        total = _read_all(ctx, topics, max_bytes, committed)
        remaining = deadline - loop.time()
        if total >= request.min_bytes or _has_error(topics) or remaining <= 0:
            return _respond(ctx, request, topics)
        await _next_append(partitions, remaining)


async def _next_append(partitions: list[Partition], timeout: float) -> None:
    """Wait until any of the partitions grows, or the timeout passes."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for p in partitions:
        p.watch(waiter)
    try:
        await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        pass
    finally:
        for p in partitions:
            p.unwatch(waiter)


def _respond(
    ctx: RequestContext, request: Any, topics: list[tuple[str, uuid.UUID | None, list[_Wanted]]]
) -> list[Any]:
    if ctx.api_version < 4:
        _down_convert(ctx, topics)
    for name, _, wanted in topics:
        count = sum(len(w.records) for w in wanted)
        if count:
            size = sum(w.size for w in wanted)
            metrics.MESSAGES_CONSUMED.labels("kafka", name, "").inc(count)
            metrics.BYTES_CONSUMED.labels("kafka", name, "").inc(size)
    return _encode(ctx.api_version, request, topics, ErrorCode.none)


def _down_convert(
    ctx: RequestContext, topics: list[tuple[str, uuid.UUID | None, list[_Wanted]]]
) -> None:
    """Replace what was read with the message set a v0-v3 fetcher reads."""
    magic = 0 if ctx.api_version < 2 else 1
    limit = int(ctx.server.settings.kafka.max_uncompressed_batch_bytes)
    for _, _, wanted in topics:
        for w in wanted:
            if not w.records:
                continue
            try:
                data = message_sets.from_record_batches(
                    w.records, w.fetch_offset, magic, w.max_bytes, limit
                )
            except message_sets.InvalidMessageSet:
                data, w.error = b"", ErrorCode.corrupt_message
            w.records = [data] if data else []
            w.size = len(data)


def _encode(
    version: int,
    request: Any,
    topics: list[tuple[str, uuid.UUID | None, list[_Wanted]]],
    error: int,
) -> list[Any]:
    """[head, batch slices..., next head, ...]: stored bytes go out as they are."""
    flexible = version >= 12
    committed = version >= 4 and request.isolation_level == READ_COMMITTED
    head = [INT32.pack(0)] if version >= 1 else []  # throttle_time_ms
    if version >= 7:
        head.append(INT16.pack(error) + INT32.pack(0))  # error, session id (none kept)
    head.append(array_length(len(topics), flexible))
    out: list[Any] = []
    for name, topic_id, wanted in topics:
        head.append(uuid_bytes(topic_id) if version >= 13 else string(name, flexible))
        head.append(array_length(len(wanted), flexible))
        for w in wanted:
            p = w.partition
            high = p.high_watermark if p is not None and not w.error else -1
            start = p.log_start_offset if p is not None and not w.error else -1
            head.append(INT32.pack(w.index) + INT16.pack(w.error) + INT64.pack(high))
            if version < 4:
                # v0-v3 end the partition header here: no LSO, log start or aborted list.
                head.append(bytes_length(w.size, flexible))
                out.append(b"".join(head))
                out.extend(w.records)
                head = []
                continue
            head.append(INT64.pack(w.lso if p is not None and not w.error else -1))
            if version >= 5:
                head.append(INT64.pack(start))
            # aborted_transactions: null unless read_committed asked.
            if committed:
                head.append(array_length(len(w.aborted), flexible))
                for producer_id, first_offset in w.aborted:
                    head.append(INT64.pack(producer_id) + INT64.pack(first_offset))
                    if flexible:
                        head.append(EMPTY_TAGS)
            else:
                head.append(b"\x00" if flexible else _NULL_ARRAY)
            if version >= 11:
                head.append(INT32.pack(-1))  # preferred read replica: none
            head.append(bytes_length(w.size, flexible))
            out.append(b"".join(head))
            out.extend(w.records)
            head = [EMPTY_TAGS] if flexible else []
        if flexible:
            head.append(EMPTY_TAGS)
    if flexible:
        head.append(EMPTY_TAGS)
    out.append(b"".join(head))
    return out
