"""Idempotent producers in Kafka's record format: what Produce's sequence checks read.

The broker core's PartitionProducers keeps the recent batches of each producer and
judges a new one (append, duplicate, out of order, fenced); this module turns a batch
header into what it judges, and after a restart feeds it the batches of the newest
segment, the first time a produce to the partition needs them.
"""

from __future__ import annotations

from collections.abc import Iterator

from portask.broker.kafka.producers import SequencedBatch
from portask.broker.kafka.topics import Partition
from portask.protocols.kafka import records


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
    for entry in partition.scan(max(log.segment_base_offsets[-1], log.start_offset)):
        for info in records.parse_batches(entry.payload):
            if info.producer_id >= 0 and not info.is_control:
                yield sequenced(info, entry.offset)
