"""Transactions: AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn (26),
TxnOffsetCommit (28).

AddPartitionsToTxn, versions 0-4:
    v1  same as v0
    v2  PRODUCER_FENCED may be answered
    v3  flexible
    v4  several transactions per request, and verify_only (KIP-890: brokers ask the
        coordinator whether a partition is in a transaction before appending)
AddOffsetsToTxn, versions 0-3:
    v1  same as v0
    v2  PRODUCER_FENCED may be answered
    v3  flexible
EndTxn, versions 0-3:
    v1  same as v0
    v2  PRODUCER_FENCED may be answered
    v3  flexible
TxnOffsetCommit, versions 0-3:
    v1  same as v0
    v2  committed leader epochs
    v3  flexible; member id, generation and group.instance.id

The coordinator (broker/kafka/transactions.py) keeps each transaction's state. Ending one
writes a control batch (commit or abort marker) into every partition it touched
(txn_markers.py); read_committed fetches stop at the last stable offset and list the
aborted spans so consumers drop aborted records. InitProducerId for a transactional id
is in init_producer_id.py.

With ``kafka.authorizer``, as Kafka checks them: WRITE on the transactional id for all
four (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); WRITE on each topic added to a transaction
and READ on each topic whose offsets it commits (TOPIC_AUTHORIZATION_FAILED); READ on
the group whose offsets it commits (GROUP_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.transactions import TxnError, TxnState
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, per_partition

ERRORS = {
    TxnError.INVALID_PRODUCER_ID_MAPPING: ErrorCode.invalid_producer_id_mapping,
    TxnError.PRODUCER_FENCED: ErrorCode.producer_fenced,
    TxnError.INVALID_TXN_STATE: ErrorCode.invalid_txn_state,
    TxnError.CONCURRENT_TRANSACTIONS: ErrorCode.concurrent_transactions,
}


def _code(error: TxnError | None) -> ErrorCode:
    return ErrorCode.none if error is None else ERRORS[error]


def _refused_group(ctx: RequestContext, txn_id: str, group_id: str) -> ErrorCode | None:
    """WRITE on the transactional id, then READ on the group, as Kafka checks them."""
    if ctx.server.authorizer is None:
        return None
    if not allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return ErrorCode.transactional_id_authorization_failed
    if not allowed(ctx, Operation.READ, ResourceType.GROUP, group_id):
        return ErrorCode.group_authorization_failed
    return None


def _refused_topics(ctx: RequestContext, txn_id: str | None, topics: set[str],
                    operation: Operation) -> dict[str, ErrorCode] | None:
    """None when all is allowed; else the error of each refused topic (every topic
    when the transactional id itself is refused)."""
    if ctx.server.authorizer is None:
        return None
    if txn_id is not None and not allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID,
                                          txn_id):
        return dict.fromkeys(topics, ErrorCode.transactional_id_authorization_failed)
    refused = {name: ErrorCode.topic_authorization_failed for name in topics
               if not allowed(ctx, operation, ResourceType.TOPIC, name)}
    return refused or None


@api(ApiKey.ADD_PARTITIONS_TO_TXN, (0, 4))
def add_partitions_to_txn(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.ADD_PARTITIONS_TO_TXN, ctx.api_version)
    if ctx.api_version >= 4:
        return _batched(ctx, types, request)
    codes = _add(
        ctx,
        request.v3_and_below_transactional_id,
        request.v3_and_below_producer_id,
        request.v3_and_below_producer_epoch,
        request.v3_and_below_topics,
    )
    return registry.make(
        types.AddPartitionsToTxnResponse,
        throttle_time=NO_THROTTLE,
        results_by_topic_v3_and_below=_topic_results(types, request.v3_and_below_topics, codes),
    )


def _batched(ctx: RequestContext, types: Any, request: Any) -> Any:
    """v4: several transactions, each added to or only verified (``verify_only``: are
    these partitions in the transaction?), as Kafka's coordinator answers other brokers."""
    results = []
    for t in request.transactions:
        if t.verify_only:
            codes = _verify(ctx, t.transactional_id, t.producer_id, t.producer_epoch, t.topics)
        else:
            codes = _add(ctx, t.transactional_id, t.producer_id, t.producer_epoch, t.topics)
        results.append(
            registry.make(
                types.AddPartitionsToTxnResult,
                transactional_id=t.transactional_id,
                topic_results=_topic_results(types, t.topics, codes),
            )
        )
    return registry.make(
        types.AddPartitionsToTxnResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        results_by_transaction=tuple(results),
    )


def _add(
    ctx: RequestContext, transactional_id: str, producer_id: int, epoch: int, topics: Any
) -> dict[tuple[str, int], ErrorCode]:
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    refused = _refused_topics(ctx, transactional_id, {name for name, _ in wanted},
                              Operation.WRITE)
    if refused is not None:
        # Nothing is added; the partitions not refused get OPERATION_NOT_ATTEMPTED.
        return {k: refused.get(k[0], ErrorCode.operation_not_attempted) for k in wanted}
    unknown = {k for k in wanted if ctx.broker.topics.partition(*k) is None}
    if unknown:
        # Kafka adds nothing when any partition is unknown; the rest get OPERATION_NOT_ATTEMPTED.
        return {
            k: ErrorCode.unknown_topic_or_partition
            if k in unknown
            else ErrorCode.operation_not_attempted
            for k in wanted
        }
    error = ctx.broker.transactions.add_partitions(transactional_id, producer_id, epoch, wanted)
    return dict.fromkeys(wanted, _code(error))


def _verify(
    ctx: RequestContext, transactional_id: str, producer_id: int, epoch: int, topics: Any
) -> dict[tuple[str, int], ErrorCode]:
    """Kafka's handleVerifyPartitionsInTransaction: the producer must own the transaction,
    then each partition is NONE if it is in it, else INVALID_TXN_STATE."""
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    coordinator = ctx.broker.transactions
    if not transactional_id:
        return dict.fromkeys(wanted, ErrorCode.invalid_request)
    error = coordinator.check(transactional_id, producer_id, epoch)
    if error is not None:
        return dict.fromkeys(wanted, _code(error))
    return {
        k: ErrorCode.none
        if coordinator.contains(transactional_id, k)
        else ErrorCode.invalid_txn_state
        for k in wanted
    }


def _topic_results(types: Any, topics: Any, codes: dict[tuple[str, int], ErrorCode]) -> Any:
    return per_partition(
        topics,
        types.AddPartitionsToTxnTopicResult,
        lambda t, p: registry.make(
            types.AddPartitionsToTxnPartitionResult,
            partition_index=p,
            partition_error_code=codes[(t.name, p)],
        ),
        partitions_field="results_by_partition",
    )


@api(ApiKey.ADD_OFFSETS_TO_TXN, (0, 3))
def add_offsets_to_txn(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.ADD_OFFSETS_TO_TXN, ctx.api_version)
    refused = _refused_group(ctx, request.transactional_id, request.group_id)
    if refused is not None:
        return registry.make(types.AddOffsetsToTxnResponse, throttle_time=NO_THROTTLE,
                             error_code=refused)
    error = ctx.broker.transactions.add_group(
        request.transactional_id, request.producer_id, request.producer_epoch, request.group_id
    )
    return registry.make(
        types.AddOffsetsToTxnResponse, throttle_time=NO_THROTTLE, error_code=_code(error)
    )


@api(ApiKey.TXN_OFFSET_COMMIT, (0, 3))
def txn_offset_commit(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.TXN_OFFSET_COMMIT, ctx.api_version)
    coordinator = ctx.broker.transactions
    error = coordinator.check(request.transactional_id, request.producer_id, request.producer_epoch)
    txn = coordinator.transactions.get(request.transactional_id)
    if error is None and (
        txn is None or txn.state is not TxnState.ONGOING or request.group_id not in txn.groups
    ):
        error = TxnError.INVALID_TXN_STATE

    refused = _refused_group(ctx, request.transactional_id, request.group_id)
    topic_refused = _refused_topics(ctx, None, {t.name for t in request.topics},
                                    Operation.READ) if refused is None else None

    def answer(t: Any, p: Any) -> Any:
        code = _code(error)
        if refused is not None or (topic_refused and t.name in topic_refused):
            code = refused if refused is not None else ErrorCode.topic_authorization_failed
        elif error is None and ctx.broker.topics.partition(t.name, p.partition_index) is None:
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
        return registry.make(
            types.TxnOffsetCommitResponsePartition,
            partition_index=p.partition_index,
            error_code=code,
        )

    return registry.make(
        types.TxnOffsetCommitResponse,
        throttle_time=NO_THROTTLE,
        topics=per_partition(request.topics, types.TxnOffsetCommitResponseTopic, answer),
    )


@api(ApiKey.END_TXN, (0, 3))
def end_txn(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.END_TXN, ctx.api_version)
    if ctx.server.authorizer is not None and not allowed(
            ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        return registry.make(types.EndTxnResponse, throttle_time=NO_THROTTLE,
                             error_code=ErrorCode.transactional_id_authorization_failed)
    error = ctx.broker.transactions.end(
        request.transactional_id, request.producer_id, request.producer_epoch, request.committed
    )
    return registry.make(types.EndTxnResponse, throttle_time=NO_THROTTLE, error_code=_code(error))
