"""Produce (key 0).

Served from v3 (the first with magic-2 record batches). v4 same as v3; v5 adds
log_start_offset to the answer; v6-v7 same; v8 adds per-record errors and an error
message; v9 is flexible; v10 adds current-leader hints on NOT_LEADER errors (never
sent by a single node). acks=0 gets no answer at all.

Batches are validated (size, magic, CRC-32C, max.message.bytes; compressed records
must decompress within kafka.max_uncompressed_batch_bytes, as Kafka's LogValidator
checks; no control batches from clients), stamped with the offset the log assigns and
stored as received. An append the disk refuses is KAFKA_STORAGE_ERROR for that
partition. The reply is hand-encoded: it is on the hot path and kio's writer
costs ~15x more.
"""

from __future__ import annotations

import time
from typing import Any

from portask import metrics
from portask.broker.producers import Verdict
from portask.broker.topics import Partition
from portask.protocols.kafka import compression, records
from portask.protocols.kafka.apis import init_producer_id as producers
from portask.protocols.kafka.apis import transactions as txn
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import RequestContext
from portask.protocols.kafka.wire import (
    EMPTY_TAGS,
    INT16,
    INT32,
    INT64,
    array_length,
    nullable_string,
    string,
)

KEY = 0
_PARTITION = INT32.size + INT16.size
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


@api(KEY, "produce", (3, 10))
def handle(ctx: RequestContext, request: Any) -> list[bytes] | None:
    started = time.perf_counter()
    acks = request.acks
    topics = ctx.broker.topics
    answers: list[tuple[str, list[_Result]]] = []
    for topic_data in request.topic_data:
        name = topic_data.name
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
            result, count = _append(ctx, partition, part.records, request.transactional_id)
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


def _append(
    ctx: RequestContext, partition: Partition, data: bytes | None, transactional_id: str | None
) -> tuple[_Result, int]:
    result = _Result(partition.index, ErrorCode.none)
    if not data:
        result.error, result.message = ErrorCode.invalid_record, "no record batch in the request"
        return result, 0
    configs = ctx.broker.topics.effective_configs(partition.topic)
    limit = int(configs["max.message.bytes"])
    try:
        batches = records.parse_batches(data)
    except records.InvalidBatch as exc:
        result.error, result.message = exc.code, str(exc)
        return result, 0
    uncompressed_limit = int(ctx.server.settings.kafka.max_uncompressed_batch_bytes)
    for info in batches:
        if info.size > limit:
            result.error = ErrorCode.message_too_large
            result.message = f"record batch of {info.size} bytes exceeds max.message.bytes {limit}"
            return result, 0
        if info.is_control:
            # Only the broker writes transaction markers, as in Kafka.
            result.error = ErrorCode.invalid_record
            result.message = "clients may not write control batches"
            return result, 0
        try:
            records.check_records(
                memoryview(data)[info.start : info.start + info.size], info, uncompressed_limit
            )
        except records.InvalidBatch as exc:
            result.error, result.message = exc.code, str(exc)
            return result, 0
    if "compact" in configs["cleanup.policy"]:
        for info in batches:
            batch_view = memoryview(data)[info.start : info.start + info.size]
            try:
                keys = records.record_keys(batch_view, uncompressed_limit)
            except records.InvalidBatch as exc:
                result.error, result.message = exc.code, str(exc)
                return result, 0
            if any(key is None for _, key, _, _ in keys):
                result.error = ErrorCode.invalid_record
                result.message = "compacted topic cannot accept a record without a key"
                return result, 0
    log_append_time = configs["message.timestamp.type"] == "LogAppendTime"
    wanted = configs["compression.type"]
    codec = None if wanted == "producer" else compression.NAMES[wanted]
    # Recompress every batch before appending any, so a bad one appends nothing.
    prepared = []
    for info in batches:
        source = memoryview(data)[info.start : info.start + info.size]
        if codec is None or codec == info.compression:
            prepared.append((info, source))
            continue
        try:
            prepared.append((info, records.recompress(source, info, codec, uncompressed_limit)))
        except compression.CodecError as exc:
            result.error, result.message = ErrorCode.corrupt_message, str(exc)
            return result, 0
    now_ms = int(time.time() * 1000)
    count = 0
    for info, batch in prepared:
        if info.is_transactional:
            refusal = _transaction_refusal(ctx, partition, info, transactional_id)
            if refusal is not None:
                result.error, result.message = refusal
                return result, count
        if info.producer_id >= 0:
            producers.ensure_rebuilt(partition)
            verdict, offset = partition.producers.check(
                info.producer_id,
                info.producer_epoch,
                info.base_sequence,
                producers.sequenced(info, -1).last_sequence,
            )
            if verdict is Verdict.DUPLICATE:
                # A retry of a batch already stored: answer with its offset, append nothing.
                if result.base_offset < 0:
                    result.base_offset = offset
                continue
            if verdict is not Verdict.APPEND:
                result.error = _VERDICT_ERRORS[verdict]
                result.message = (
                    f"producer {info.producer_id} epoch {info.producer_epoch} "
                    f"sequence {info.base_sequence}: {verdict.value}"
                )
                return result, count
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
            # is tried against the disk again.
            result.error = ErrorCode.kafka_storage_error
            result.message = f"cannot append to the partition log: {exc}"
            result.base_offset = -1
            return result, count
        if info.producer_id >= 0:
            partition.producers.record(producers.sequenced(info, appended))
        if info.is_transactional:
            txn.note_transactional_append(ctx.server, partition, info.producer_id, appended)
        if result.base_offset < 0:
            result.base_offset = appended
        count += info.records_count
    if log_append_time:
        result.log_append_time = now_ms
    result.log_start_offset = partition.log_start_offset
    return result, count


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
    txn.ensure_rebuilt(ctx.server, partition)
    return None


def _encode(version: int, answers: list[tuple[str, list[_Result]]]) -> bytes:
    flexible = version >= 9
    out = [array_length(len(answers), flexible)]
    for name, results in answers:
        out.append(string(name, flexible))
        out.append(array_length(len(results), flexible))
        for r in results:
            out.append(INT32.pack(r.partition) + INT16.pack(r.error) + INT64.pack(r.base_offset))
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
    out.append(INT32.pack(0))  # throttle_time_ms
    if flexible:
        out.append(EMPTY_TAGS)
    return b"".join(out)
