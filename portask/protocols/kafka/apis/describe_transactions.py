"""Transaction introspection: DescribeTransactions (65), ListTransactions (66).

DescribeTransactions, version 0:
    v0  state, timeout, start time, producer and partitions of transactional ids (KIP-664)
ListTransactions, versions 0-1:
    v0  transactional ids, filtered by state and producer id (KIP-664)
    v1  a minimum duration filter (KIP-994)

With ``kafka.authorizer``: DESCRIBE on a transactional id to describe it (else
TRANSACTIONAL_ID_AUTHORIZATION_FAILED); ListTransactions lists only those ids.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from portask.broker.kafka.transactions import TxnState
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

# Kafka answers -1 ms for a transaction that has not started; kio writes datetimes as
# epoch milliseconds, so this is the instant that encodes as -1.
_NOT_STARTED = datetime.datetime.fromtimestamp(-0.001, datetime.UTC)
# An unknown transactional id gets the schema's defaults, 0, as Kafka answers it.
_UNKNOWN = datetime.datetime.fromtimestamp(0, datetime.UTC)
_UNKNOWN_TIMEOUT = datetime.timedelta(0)


@api(ApiKey.DESCRIBE_TRANSACTIONS, (0, 0))
def describe_transactions(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_TRANSACTIONS, ctx.api_version)
    states = []
    checked = ctx.server.authorizer is not None
    for tid in request.transactional_ids:
        txn = ctx.broker.transactions.transactions.get(tid)
        refused = checked and not allowed(ctx, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID,
                                          tid)
        if txn is None or refused:
            states.append(
                registry.make(
                    types.TransactionState,
                    error_code=ErrorCode.transactional_id_authorization_failed if refused
                    else ErrorCode.transactional_id_not_found,
                    transactional_id=tid,
                    transaction_state="",
                    transaction_timeout=_UNKNOWN_TIMEOUT,
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
        throttle_time=NO_THROTTLE,
        transaction_states=tuple(states),
    )


@api(ApiKey.LIST_TRANSACTIONS, (0, 1))
def list_transactions(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.LIST_TRANSACTIONS, ctx.api_version)
    known = {s.value for s in TxnState}
    wanted_states = set(request.state_filters)
    wanted_pids = set(request.producer_id_filters)
    min_duration = getattr(request, "duration_filter", -1)
    now = int(time.time() * 1000)
    states = []
    checked = ctx.server.authorizer is not None
    for txn in ctx.broker.transactions.transactions.values():
        if checked and not allowed(ctx, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID,
                                   txn.transactional_id):
            continue  # Kafka lists only the ids the principal may DESCRIBE
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
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        unknown_state_filters=tuple(sorted(wanted_states - known)),
        transaction_states=tuple(states),
    )
