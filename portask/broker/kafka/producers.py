"""Idempotent producers: producer ids, epochs and per-partition sequence checks.

A producer that asks for an id stamps each batch with (id, epoch, first sequence);
the partition accepts the next sequence, answers a retry of one of the producer's
last five batches with the offset it already got (no second append), refuses a gap
with OUT_OF_ORDER_SEQUENCE and an old epoch with INVALID_PRODUCER_EPOCH. State is
kept in memory per partition and rebuilt lazily from the log's tail after a
restart: the protocol layer supplies the batches, since only it can read them.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from portask.broker.definitions import PRODUCER_IDS, Definitions

# Kafka keeps the last five batches per producer, matching max.in.flight=5.
RECENT_BATCHES = 5
_ID_BLOCK = 1000
MAX_EPOCH = 32767
MAX_SEQUENCE = 2**31 - 1


class Verdict(enum.Enum):
    APPEND = "append"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order_sequence"
    FENCED_EPOCH = "invalid_producer_epoch"


@dataclass(frozen=True, slots=True)
class SequencedBatch:
    """What the log holds of one producer batch (never the records themselves)."""

    producer_id: int
    epoch: int
    first_sequence: int
    last_sequence: int
    base_offset: int


@dataclass(slots=True)
class _ProducerEntry:
    epoch: int
    recent: collections.deque[SequencedBatch] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_BATCHES)
    )


def next_sequence(sequence: int) -> int:
    return 0 if sequence == MAX_SEQUENCE else sequence + 1


class PartitionProducers:
    """Sequence state of every producer that wrote to one partition."""

    def __init__(self) -> None:
        self._entries: dict[int, _ProducerEntry] = {}
        self.rebuilt = False

    def rebuild(self, batches: Iterable[SequencedBatch]) -> None:
        for batch in batches:
            self.record(batch)
        self.rebuilt = True

    def check(
        self, producer_id: int, epoch: int, first_sequence: int, last_sequence: int
    ) -> tuple[Verdict, int]:
        """Verdict for an incoming batch, and for a duplicate the offset it already has."""
        entry = self._entries.get(producer_id)
        if entry is None:
            # No state (a new producer, or one whose batches left the log): accept.
            return Verdict.APPEND, -1
        if epoch < entry.epoch:
            return Verdict.FENCED_EPOCH, -1
        if epoch > entry.epoch:
            return (Verdict.APPEND, -1) if first_sequence == 0 else (Verdict.OUT_OF_ORDER, -1)
        for batch in entry.recent:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return Verdict.DUPLICATE, batch.base_offset
        last = entry.recent[-1].last_sequence if entry.recent else None
        if last is not None and first_sequence != next_sequence(last):
            return Verdict.OUT_OF_ORDER, -1
        return Verdict.APPEND, -1

    def record(self, batch: SequencedBatch) -> None:
        entry = self._entries.get(batch.producer_id)
        if entry is None or batch.epoch > entry.epoch:
            entry = self._entries[batch.producer_id] = _ProducerEntry(batch.epoch)
        entry.recent.append(batch)


class ProducerIds:
    """Allocates producer ids that are never reused, persisting them in blocks."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self._next = int(definitions.get(PRODUCER_IDS, "next_block", 0))
        self._block_end = self._next
        # Epochs handed out per id, so that a producer re-initialising gets a bump.
        self._epochs: dict[int, int] = {}

    def new(self) -> tuple[int, int]:
        if self._next >= self._block_end:
            self._block_end = self._next + _ID_BLOCK
            # Persist the block's end first: after a crash ids restart past it.
            self.definitions.put(PRODUCER_IDS, "next_block", self._block_end)
        producer_id = self._next
        self._next += 1
        self._epochs[producer_id] = 0
        return producer_id, 0

    def adopt(self, producer_id: int, epoch: int) -> None:
        """Record an id and epoch handed out by the transaction coordinator."""
        self._epochs[producer_id] = epoch

    def bump(self, producer_id: int, epoch: int) -> tuple[int, int] | None:
        """KIP-360 epoch bump for a producer we issued; None if we cannot vouch for it."""
        current = self._epochs.get(producer_id)
        if current is None or current != epoch:
            return None
        if epoch >= MAX_EPOCH:
            return self.new()
        self._epochs[producer_id] = epoch + 1
        return producer_id, epoch + 1
