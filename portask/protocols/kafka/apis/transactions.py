"""Transactions: AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn (26),
TxnOffsetCommit (28), DescribeTransactions (65), ListTransactions (66).

AddPartitionsToTxn v0-v3 (v3 flexible; v4 is the broker-to-broker batched form and is
not served); AddOffsetsToTxn v0-v3 and EndTxn v0-v3 (v3 flexible); TxnOffsetCommit
v0-v3 (v2 leader epochs, v3 flexible with group generation fields);
DescribeTransactions v0; ListTransactions v0-v1 (v1 adds the duration filter).

Ending a transaction writes a control batch (commit or abort marker) into every
partition it touched; read_committed fetches stop at the last stable offset and list
the aborted spans so consumers drop aborted records. InitProducerId for a
transactional id lives in producers.py and calls the coordinator here.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from portask.broker.metadata import TXN_PARTITIONS
from portask.broker.topics import Partition
from portask.broker.transactions import Transaction, TxnError, TxnState
from portask.protocols.kafka import records, registry
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import KafkaServer, RequestContext
from portask.storage import LogRecord

logger = logging.getLogger("portask.kafka")

ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT = 24, 25, 26, 28
DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 65, 66
_NO_THROTTLE = datetime.timedelta(0)
# Kafka answers -1 ms for a transaction that has not started; kio writes datetimes as
# epoch milliseconds, so this is the instant that encodes as -1.
_NOT_STARTED = datetime.datetime.fromtimestamp(-0.001, datetime.UTC)
# An unknown transactional id gets the schema's default, 0, as Kafka answers it.
_UNKNOWN = datetime.datetime.fromtimestamp(0, datetime.UTC)
ERRORS = {
    TxnError.INVALID_PRODUCER_ID_MAPPING: ErrorCode.invalid_producer_id_mapping,
    TxnError.PRODUCER_FENCED: ErrorCode.producer_fenced,
    TxnError.INVALID_TXN_STATE: ErrorCode.invalid_txn_state,
    TxnError.CONCURRENT_TRANSACTIONS: ErrorCode.concurrent_transactions,
}


def _code(error: TxnError | None) -> ErrorCode:
    return ErrorCode.none if error is None else ERRORS[error]


def attach(server: KafkaServer) -> None:
    """Give the coordinator its marker writer and abort what a crash left open."""
    broker = server.broker
    broker.transactions.load(lambda txn, key, commit: write_marker(server, txn, key, commit))
    broker.transactions.start()


def write_marker(server: KafkaServer, txn: Transaction, key: tuple[str, int], commit: bool) -> None:
    partition = server.broker.topics.partition(*key)
    if partition is None:  # the topic was deleted meanwhile: nothing to mark
        return
    ensure_rebuilt(server, partition)
    now = int(time.time() * 1000)
    marker = records.control_batch(txn.producer_id, txn.epoch, commit, now)
    records.stamp(marker, partition.high_watermark)
    offset = partition.append(marker, 1, now)
    partition.transactions.end(txn.producer_id, offset, commit)


def note_transactional_append(
    server: KafkaServer, partition: Partition, pid: int, offset: int
) -> None:
    state = partition.transactions
    if not state.ongoing and not state.aborted:
        key = (partition.topic.name, partition.index)
        if not server.broker.definitions.get(TXN_PARTITIONS, key):
            server.broker.definitions.put(TXN_PARTITIONS, key, True)
    state.begin(pid, offset)


def ensure_rebuilt(server: KafkaServer, partition: Partition) -> None:
    """After a restart, recover open and aborted spans by reading the partition's batches."""
    state = partition.transactions
    if state.rebuilt:
        return
    state.rebuilt = True
    key = (partition.topic.name, partition.index)
    if not server.broker.definitions.get(TXN_PARTITIONS, key):
        return
    log = partition.log
    offset = log.start_offset
    while offset < log.end_offset:
        entries = log.read(offset, 4 << 20)
        if not entries:
            break
        for entry in entries:
            for info in records.parse_batches(entry.payload):
                if info.is_control:
                    state.end(info.producer_id, entry.offset, _is_commit(partition, entry))
                elif info.is_transactional:
                    state.begin(info.producer_id, entry.offset)
            offset = entry.offset + entry.count


def _is_commit(partition: Partition, entry: LogRecord) -> bool:
    try:
        return records.control_type(entry.payload) == records.CONTROL_COMMIT
    except records.InvalidBatch as exc:
        # Only a client could have written such a marker (before Produce refused control
        # batches). Taking it as an abort keeps read_committed consumers from seeing data
        # that was never committed.
        logger.warning(
            "unreadable transaction marker taken as an abort",
            extra={"fields": {"topic": partition.topic.name, "partition": partition.index,
                              "offset": entry.offset, "detail": str(exc)}},
        )
        return False


@api(ADD_PARTITIONS, "add_partitions_to_txn", (0, 3))
def add_partitions_to_txn(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ADD_PARTITIONS, ctx.api_version)
    topics = ctx.broker.topics
    wanted = [(t.name, p) for t in request.v3_and_below_topics for p in t.partitions]
    unknown = {k for k in wanted if topics.partition(*k) is None}
    if unknown:
        # Kafka adds nothing when any partition is unknown; the rest get OPERATION_NOT_ATTEMPTED.
        codes = {
            k: ErrorCode.unknown_topic_or_partition
            if k in unknown
            else ErrorCode.operation_not_attempted
            for k in wanted
        }
    else:
        error = ctx.broker.transactions.add_partitions(
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            wanted,
        )
        codes = dict.fromkeys(wanted, _code(error))
    results = []
    for t in request.v3_and_below_topics:
        results.append(
            registry.make(
                types.AddPartitionsToTxnTopicResult,
                name=t.name,
                results_by_partition=tuple(
                    registry.make(
                        types.AddPartitionsToTxnPartitionResult,
                        partition_index=p,
                        partition_error_code=codes[(t.name, p)],
                    )
                    for p in t.partitions
                ),
            )
        )
    return registry.make(
        types.AddPartitionsToTxnResponse,
        throttle_time=_NO_THROTTLE,
        results_by_topic_v3_and_below=tuple(results),
    )


@api(ADD_OFFSETS, "add_offsets_to_txn", (0, 3))
def add_offsets_to_txn(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ADD_OFFSETS, ctx.api_version)
    error = ctx.broker.transactions.add_group(
        request.transactional_id, request.producer_id, request.producer_epoch, request.group_id
    )
    return registry.make(
        types.AddOffsetsToTxnResponse, throttle_time=_NO_THROTTLE, error_code=_code(error)
    )


@api(TXN_OFFSET_COMMIT, "txn_offset_commit", (0, 3))
def txn_offset_commit(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(TXN_OFFSET_COMMIT, ctx.api_version)
    coordinator = ctx.broker.transactions
    error = coordinator.check(request.transactional_id, request.producer_id, request.producer_epoch)
    txn = coordinator.transactions.get(request.transactional_id)
    if error is None and (
        txn is None or txn.state is not TxnState.ONGOING or request.group_id not in txn.groups
    ):
        error = TxnError.INVALID_TXN_STATE
    topics_out = []
    for t in request.topics:
        partitions = []
        for p in t.partitions:
            code = _code(error)
            if error is None and ctx.broker.topics.partition(t.name, p.partition_index) is None:
                code = ErrorCode.unknown_topic_or_partition
            elif error is None:
                coordinator.stage_offset(
                    request.transactional_id,
                    request.group_id,
                    t.name,
                    p.partition_index,
                    p.committed_offset,
                    getattr(p, "committed_leader_epoch", -1),
                    p.committed_metadata,
                )
            partitions.append(
                registry.make(
                    types.TxnOffsetCommitResponsePartition,
                    partition_index=p.partition_index,
                    error_code=code,
                )
            )
        topics_out.append(
            registry.make(
                types.TxnOffsetCommitResponseTopic, name=t.name, partitions=tuple(partitions)
            )
        )
    return registry.make(
        types.TxnOffsetCommitResponse, throttle_time=_NO_THROTTLE, topics=tuple(topics_out)
    )


@api(END_TXN, "end_txn", (0, 3))
def end_txn(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(END_TXN, ctx.api_version)
    error = ctx.broker.transactions.end(
        request.transactional_id, request.producer_id, request.producer_epoch, request.committed
    )
    return registry.make(types.EndTxnResponse, throttle_time=_NO_THROTTLE, error_code=_code(error))


@api(DESCRIBE_TRANSACTIONS, "describe_transactions", (0, 0))
def describe_transactions(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(DESCRIBE_TRANSACTIONS, ctx.api_version)
    states = []
    for tid in request.transactional_ids:
        txn = ctx.broker.transactions.transactions.get(tid)
        if txn is None:
            states.append(
                registry.make(
                    types.TransactionState,
                    error_code=ErrorCode.transactional_id_not_found,
                    transactional_id=tid,
                    transaction_state="",
                    transaction_timeout=_NO_THROTTLE,
                    transaction_start_time=_UNKNOWN,
                    producer_id=-1,
                    producer_epoch=-1,
                    topics=(),
                )
            )
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(txn.partitions):
            by_topic.setdefault(topic, []).append(partition)
        start = (
            datetime.datetime.fromtimestamp(txn.started_ms / 1000, datetime.UTC)
            if txn.started_ms >= 0
            else _NOT_STARTED
        )
        states.append(
            registry.make(
                types.TransactionState,
                error_code=ErrorCode.none,
                transactional_id=tid,
                transaction_state=txn.state.value,
                transaction_timeout=datetime.timedelta(milliseconds=txn.timeout_ms),
                transaction_start_time=start,
                producer_id=txn.producer_id,
                producer_epoch=txn.epoch,
                topics=tuple(
                    registry.make(types.TopicData, topic=t, partitions=tuple(ps))
                    for t, ps in by_topic.items()
                ),
            )
        )
    return registry.make(
        types.DescribeTransactionsResponse,
        throttle_time=_NO_THROTTLE,
        transaction_states=tuple(states),
    )


@api(LIST_TRANSACTIONS, "list_transactions", (0, 1))
def list_transactions(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(LIST_TRANSACTIONS, ctx.api_version)
    known = {s.value for s in TxnState}
    wanted_states = set(request.state_filters)
    wanted_pids = set(request.producer_id_filters)
    min_duration = getattr(request, "duration_filter", -1)
    now = int(time.time() * 1000)
    states = []
    for txn in ctx.broker.transactions.transactions.values():
        if wanted_states and txn.state.value not in wanted_states:
            continue
        if wanted_pids and txn.producer_id not in wanted_pids:
            continue
        if min_duration >= 0 and (txn.started_ms < 0 or now - txn.started_ms < min_duration):
            continue
        states.append(
            registry.make(
                types.TransactionState,
                transactional_id=txn.transactional_id,
                producer_id=txn.producer_id,
                transaction_state=txn.state.value,
            )
        )
    return registry.make(
        types.ListTransactionsResponse,
        throttle_time=_NO_THROTTLE,
        error_code=ErrorCode.none,
        unknown_state_filters=tuple(sorted(wanted_states - known)),
        transaction_states=tuple(states),
    )
