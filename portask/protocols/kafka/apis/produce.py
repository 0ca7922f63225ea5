"""Produce (key 0), versions 0-10.

    v0   message sets of magic 0 or 1 (see message_sets.py), no throttle time
    v1   throttle time
    v2   log append time in the answer
    v3   magic-2 record batches only; transactional id
    v4   same as v3
    v5   log_start_offset in the answer
    v6   same as v5
    v7   same as v6
    v8   per-record errors and an error message in the answer
    v9   flexible
    v10  current-leader hints on NOT_LEADER errors (never sent by a single node)

acks=0 gets no answer at all. A v0-v2 message set is converted once into one
uncompressed magic-2 batch (bad framing or CRC-32: CORRUPT_MESSAGE), which then takes
the same path as any batch; v3+ requests never touch that code.

Batches are validated (size, magic, CRC-32C, max.message.bytes; compressed records
must decompress within kafka.max_uncompressed_batch_bytes, as Kafka's LogValidator
checks; no control batches from clients), stamped with the offset the log assigns and
stored as received. With ``kafka.authorizer``, a topic the principal may not WRITE is
TOPIC_AUTHORIZATION_FAILED and a transactional id it may not WRITE is
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, for every partition. An append the disk refuses
is KAFKA_STORAGE_ERROR for that partition. The reply is hand-encoded: it is on the hot
path and kio's writer costs ~15x more.
"""

from __future__ import annotations

import time
from typing import Any

from portask import metrics
from portask.broker.kafka.producers import Verdict
from portask.broker.kafka.topics import Partition
from portask.broker.log import compression
from portask.protocols.kafka import message_sets, producer_state, records, txn_markers
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
    nullable_string,
    string,
)

_NO_TIME = INT64.pack(-1)
_VERDICT_ERRORS = {
    Verdict.OUT_OF_ORDER: ErrorCode.out_of_order_sequence_number,
    Verdict.FENCED_EPOCH: ErrorCode.invalid_producer_epoch,
}


class _Result:
    __slots__ = (
        "base_offset",
        "error",
        "log_append_time",
        "log_start_offset",
        "message",
        "partition",
    )

    def __init__(self, partition: int, error: int, message: str | None = None) -> None:
        self.partition = partition
        self.error = error
        self.message = message
        self.base_offset = -1
        self.log_append_time = -1
        self.log_start_offset = -1


class _Refused(Exception):
    """A partition's data is refused: the error code and message of its answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@api(ApiKey.PRODUCE, (0, 10))
def produce(ctx: RequestContext, request: Any) -> list[bytes] | None:
    started = time.perf_counter()
    acks = request.acks
    topics = ctx.broker.topics
    legacy = ctx.api_version < 3
    transactional_id = None if legacy else request.transactional_id
    answers: list[tuple[str, list[_Result]]] = []
    # None unless kafka.authorizer: then one comparison per topic, nothing per record.
    authorizer = ctx.server.authorizer
    for topic_data in request.topic_data:
        name = topic_data.name
        if authorizer is not None:
            refused = _refusal(ctx, name, request.transactional_id)
            if refused is not None:
                answers.append((name, [_Result(p.index, refused)
                                       for p in topic_data.partition_data]))
                continue
        topic = topics.get(name)
        results = []
        produced = produced_bytes = 0
        for part in topic_data.partition_data:
            if acks not in (0, 1, -1):
                results.append(_Result(part.index, ErrorCode.invalid_required_acks))
                continue
            partition = topics.partition(name, part.index) if topic is not None else None
            if partition is None:
                results.append(_Result(part.index, ErrorCode.unknown_topic_or_partition))
                continue
            data = part.records
            if legacy:
                try:
                    data = message_sets.to_record_batch(
                        data or b"", int(ctx.server.settings.kafka.max_uncompressed_batch_bytes)
                    )
                except message_sets.InvalidMessageSet as exc:
                    results.append(_Result(part.index, exc.code, str(exc)))
                    continue
            result, count = _append(ctx, partition, data, transactional_id)
            results.append(result)
            if result.error == 0:
                produced += count
                produced_bytes += len(part.records)
        if produced:
            metrics.MESSAGES_PRODUCED.labels("kafka", name, "").inc(produced)
            metrics.BYTES_PRODUCED.labels("kafka", name, "").inc(produced_bytes)
            metrics.PUBLISH_DURATION.labels("kafka", name, "").observe(
                time.perf_counter() - started
            )
        answers.append((name, results))
    if acks == 0:
        return None
    return [_encode(ctx.api_version, answers)]


def _refusal(ctx: RequestContext, topic: str, transactional_id: str | None) -> int | None:
    """Kafka's checks, in its order: WRITE on the transactional id, then on the topic."""
    if transactional_id is not None and not allowed(
            ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
        return ErrorCode.transactional_id_authorization_failed
    if not allowed(ctx, Operation.WRITE, ResourceType.TOPIC, topic):
        return ErrorCode.topic_authorization_failed
    return None


def _append(
    ctx: RequestContext, partition: Partition, data: bytes | None, transactional_id: str | None
) -> tuple[_Result, int]:
    """Append a partition's batches; the answer and how many records were stored."""
    result = _Result(partition.index, ErrorCode.none)
    count = 0
    configs = ctx.broker.topics.effective_configs(partition.topic)
    log_append_time = configs["message.timestamp.type"] == "LogAppendTime"
    uncompressed_limit = int(ctx.server.settings.kafka.max_uncompressed_batch_bytes)
    try:
        prepared = _prepare(data, configs, uncompressed_limit)
        now_ms = int(time.time() * 1000)
        for info, batch in prepared:
            duplicate_of = _admit(ctx, partition, info, transactional_id)
            if duplicate_of is None:
                offset = _store(ctx, partition, info, batch, log_append_time, now_ms)
                count += info.records_count
            else:
                # A retry of a batch already stored: answer with its offset, append nothing.
                offset = duplicate_of
            if result.base_offset < 0:
                result.base_offset = offset
    except _Refused as refused:
        # Batches appended before the refused one stay; the answer says how far it got.
        result.error, result.message = refused.code, refused.message
        if refused.code == ErrorCode.kafka_storage_error:
            result.base_offset = -1
        return result, count
    if log_append_time:
        result.log_append_time = now_ms
    result.log_start_offset = partition.log_start_offset
    return result, count


def _prepare(
    data: bytes | None, configs: dict[str, str], uncompressed_limit: int
) -> list[tuple[records.BatchInfo, memoryview | bytearray]]:
    """The request's batches, validated and in the topic's codec, before any is appended,
    so that a bad batch appends nothing. Raises _Refused."""
    if not data:
        raise _Refused(ErrorCode.invalid_record, "no record batch in the request")
    limit = int(configs["max.message.bytes"])
    try:
        batches = records.parse_batches(data)
    except records.InvalidBatch as exc:
        raise _Refused(exc.code, str(exc)) from None
    for info in batches:
        if info.size > limit:
            raise _Refused(
                ErrorCode.message_too_large,
                f"record batch of {info.size} bytes exceeds max.message.bytes {limit}",
            )
        if info.is_control:
            # Only the broker writes transaction markers, as in Kafka.
            raise _Refused(ErrorCode.invalid_record, "clients may not write control batches")
        try:
            records.check_records(
                memoryview(data)[info.start : info.start + info.size], info, uncompressed_limit
            )
        except records.InvalidBatch as exc:
            raise _Refused(exc.code, str(exc)) from None
    if "compact" in configs["cleanup.policy"]:
        _check_keys(data, batches, uncompressed_limit)
    wanted = configs["compression.type"]
    codec = None if wanted == "producer" else compression.NAMES[wanted]
    prepared = []
    for info in batches:
        source: memoryview | bytearray = memoryview(data)[info.start : info.start + info.size]
        if codec is not None and codec != info.compression:
            source = _recompressed(source, info, codec, uncompressed_limit)
        prepared.append((info, source))
    return prepared


def _check_keys(data: bytes, batches: list[records.BatchInfo], uncompressed_limit: int) -> None:
    """A compacted topic keeps the latest record per key, so every record needs a key."""
    for info in batches:
        batch_view = memoryview(data)[info.start : info.start + info.size]
        try:
            keys = records.record_keys(batch_view, uncompressed_limit)
        except records.InvalidBatch as exc:
            raise _Refused(exc.code, str(exc)) from None
        if any(key is None for _, key, _, _ in keys):
            raise _Refused(
                ErrorCode.invalid_record, "compacted topic cannot accept a record without a key"
            )


def _recompressed(
    source: memoryview, info: records.BatchInfo, codec: int, uncompressed_limit: int
) -> bytearray:
    """The batch under the topic's compression.type instead of the producer's codec."""
    try:
        return records.recompress(source, info, codec, uncompressed_limit)
    except compression.CodecError as exc:
        raise _Refused(ErrorCode.corrupt_message, str(exc)) from None


def _admit(
    ctx: RequestContext,
    partition: Partition,
    info: records.BatchInfo,
    transactional_id: str | None,
) -> int | None:
    """Check a batch against its transaction and its producer's sequence. Returns None
    to append it, or the offset of the stored batch it repeats; raises _Refused."""
    if info.is_transactional:
        refusal = _transaction_refusal(ctx, partition, info, transactional_id)
        if refusal is not None:
            raise _Refused(*refusal)
    if info.producer_id < 0:
        return None
    producer_state.ensure_rebuilt(partition)
    verdict, offset = partition.producers.check(
        info.producer_id,
        info.producer_epoch,
        info.base_sequence,
        producer_state.sequenced(info, -1).last_sequence,
    )
    if verdict is Verdict.DUPLICATE:
        return offset
    if verdict is not Verdict.APPEND:
        raise _Refused(
            _VERDICT_ERRORS[verdict],
            f"producer {info.producer_id} epoch {info.producer_epoch} "
            f"sequence {info.base_sequence}: {verdict.value}",
        )
    return None


def _store(
    ctx: RequestContext,
    partition: Partition,
    info: records.BatchInfo,
    batch: memoryview | bytearray,
    log_append_time: bool,
    now_ms: int,
) -> int:
    """Append an admitted batch at the end of the log; returns its base offset."""
    base = partition.high_watermark
    timestamp = now_ms if log_append_time or info.max_timestamp < 0 else info.max_timestamp
    try:
        if log_append_time or isinstance(batch, bytearray):
            batch = bytearray(batch) if log_append_time else batch
            records.stamp(batch, base)
            if log_append_time:
                records.set_log_append_time(batch, now_ms)
            appended = partition.append(batch, info.offset_count, timestamp)
        else:
            # The common case: the batch as sent, its first bytes restamped apart.
            appended = partition.append(
                batch[records.STAMP_SIZE :], info.offset_count, timestamp,
                prefix=records.stamped_prefix(batch, base),
            )
    except OSError as exc:
        # A full disk or a failing one: Kafka answers this for a log dir it cannot
        # write. The log is left as it was, reads go on, and the producer's retry
        # is tried against the disk again; no offset of this partition is answered.
        raise _Refused(
            ErrorCode.kafka_storage_error, f"cannot append to the partition log: {exc}"
        ) from None
    if info.producer_id >= 0:
        partition.producers.record(producer_state.sequenced(info, appended))
    if info.is_transactional:
        txn_markers.note_transactional_append(ctx.broker, partition, info.producer_id, appended)
    return appended


def _transaction_refusal(
    ctx: RequestContext,
    partition: Partition,
    info: records.BatchInfo,
    transactional_id: str | None,
) -> tuple[ErrorCode, str] | None:
    """Why a transactional batch may not be appended, or None if it may."""
    coordinator = ctx.broker.transactions
    if transactional_id is None:
        return ErrorCode.invalid_request, "transactional batch without a transactional id"
    error = coordinator.check(transactional_id, info.producer_id, info.producer_epoch)
    if error is not None:
        return (
            ErrorCode.invalid_producer_epoch,
            f"transactional id {transactional_id!r}: {error.value}",
        )
    if not coordinator.contains(transactional_id, (partition.topic.name, partition.index)):
        return (
            ErrorCode.invalid_txn_state,
            f"partition {partition.index} was not added to transaction {transactional_id!r}",
        )
    txn_markers.ensure_rebuilt(ctx.broker, partition)
    return None


def _encode(version: int, answers: list[tuple[str, list[_Result]]]) -> bytes:
    flexible = version >= 9
    out = [array_length(len(answers), flexible)]
    for name, results in answers:
        out.append(string(name, flexible))
        out.append(array_length(len(results), flexible))
        for r in results:
            out.append(INT32.pack(r.partition) + INT16.pack(r.error) + INT64.pack(r.base_offset))
            if version >= 2:
                out.append(INT64.pack(r.log_append_time) if r.log_append_time >= 0 else _NO_TIME)
            if version >= 5:
                out.append(INT64.pack(r.log_start_offset))
            if version >= 8:
                out.append(array_length(0, flexible))  # record_errors
                out.append(nullable_string(r.message, flexible))
            if flexible:
                out.append(EMPTY_TAGS)
        if flexible:
            out.append(EMPTY_TAGS)
    if version >= 1:
        out.append(INT32.pack(0))  # throttle_time_ms
    if flexible:
        out.append(EMPTY_TAGS)
    return b"".join(out)
