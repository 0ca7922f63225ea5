"""InitProducerId (key 22), versions 0-4.

    v0  a producer id and epoch for an idempotent or transactional producer
    v1  same as v0
    v2  flexible
    v3  the current producer id and epoch, so a producer can bump its epoch after an
        error and keep its id (KIP-360)
    v4  PRODUCER_FENCED may be answered

A transactional id goes to the transaction coordinator (broker/kafka/transactions.py), which
fences any earlier producer using the same id by bumping the epoch and aborting its
open transaction. The sequence checks that idempotence promises are in Produce (see
producer_state.py).

With ``kafka.authorizer``: WRITE on the transactional id (else
TRANSACTIONAL_ID_AUTHORIZATION_FAILED); an idempotent producer needs IDEMPOTENT_WRITE
on the cluster or WRITE on any topic (else CLUSTER_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import (
    Operation,
    ResourceType,
    allowed,
    cluster_allowed,
)
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

# Kafka's transaction.max.timeout.ms default.
MAX_TRANSACTION_TIMEOUT_MS = 900_000


@api(ApiKey.INIT_PRODUCER_ID, (0, 4))
def init_producer_id(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.INIT_PRODUCER_ID, ctx.api_version)

    def answer(error: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
        return registry.make(
            types.InitProducerIdResponse, throttle_time=NO_THROTTLE,
            error_code=error, producer_id=producer_id, producer_epoch=epoch,
        )

    if ctx.server.authorizer is not None:
        refused = _refusal(ctx, request.transactional_id)
        if refused is not None:
            return answer(refused)
    if request.transactional_id is not None:
        timeout_ms = int(request.transaction_timeout.total_seconds() * 1000)
        if not 0 < timeout_ms <= MAX_TRANSACTION_TIMEOUT_MS:
            return answer(ErrorCode.invalid_transaction_timeout)
        return answer(ErrorCode.none,
                      *ctx.broker.transactions.init(request.transactional_id, timeout_ms))
    ids = ctx.broker.producer_ids
    current = getattr(request, "producer_id", -1)
    if current >= 0:
        bumped = ids.bump(current, request.producer_epoch)
        if bumped is None:
            return answer(ErrorCode.invalid_producer_epoch)
        return answer(ErrorCode.none, *bumped)
    return answer(ErrorCode.none, *ids.new())


def _refusal(ctx: RequestContext, transactional_id: str | None) -> ErrorCode | None:
    """WRITE on the transactional id; without one, IDEMPOTENT_WRITE on the cluster or
    WRITE on some topic (Kafka 3's rule, since idempotence is on by default)."""
    if transactional_id is not None:
        if allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
            return None
        return ErrorCode.transactional_id_authorization_failed
    authorizer = ctx.server.authorizer
    assert authorizer is not None
    conn = ctx.connection
    if cluster_allowed(ctx, Operation.IDEMPOTENT_WRITE) or authorizer.authorize_any(
            conn.principal, conn.host, Operation.WRITE, ResourceType.TOPIC):
        return None
    return ErrorCode.cluster_authorization_failed
