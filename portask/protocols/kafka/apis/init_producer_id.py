"""InitProducerId (key 22) and the idempotence checks Produce applies.

InitProducerId v0-v4: v1 same as v0; v2 flexible; v3 carries the current producer id
and epoch so a producer can bump its epoch after an error (KIP-360); v4 same. A
transactional id goes to the transaction coordinator (see txn.py), which fences any
earlier producer using the same id by bumping the epoch and aborting its open
transaction.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from portask.broker.producers import SequencedBatch
from portask.broker.topics import Partition
from portask.protocols.kafka import records, registry
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import RequestContext

INIT_PRODUCER_ID = 22
# Kafka's transaction.max.timeout.ms default.
MAX_TRANSACTION_TIMEOUT_MS = 900_000


@api(INIT_PRODUCER_ID, "init_producer_id", (0, 4))
def init_producer_id(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(INIT_PRODUCER_ID, ctx.api_version)

    def answer(error: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
        return registry.make(
            types.InitProducerIdResponse, throttle_time=datetime.timedelta(0),
            error_code=error, producer_id=producer_id, producer_epoch=epoch,
        )

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


def sequenced(info: records.BatchInfo, base_offset: int) -> SequencedBatch:
    last = (info.base_sequence + info.last_offset_delta) % (2**31)
    return SequencedBatch(info.producer_id, info.producer_epoch, info.base_sequence, last,
                          base_offset)


def ensure_rebuilt(partition: Partition) -> None:
    """After a restart, learn recent producer batches from the newest segment."""
    state = partition.producers
    if not state.rebuilt:
        state.rebuild(_tail_batches(partition))


def _tail_batches(partition: Partition) -> Iterator[SequencedBatch]:
    log = partition.log
    offset = max(log.segment_base_offsets[-1], log.start_offset)
    while offset < log.end_offset:
        entries = log.read(offset, 4 << 20)
        if not entries:
            return
        for entry in entries:
            for info in records.parse_batches(entry.payload):
                if info.producer_id >= 0 and not info.is_control:
                    yield sequenced(info, entry.offset)
            offset = entry.offset + entry.count
