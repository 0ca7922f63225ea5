"""Transactions: the coordinator's bookkeeping and each partition's open/aborted spans.

The coordinator maps a transactional id to a producer id and epoch, tracks which
partitions and consumer groups a transaction touched, and ends it by asking the
protocol layer to write a commit or abort marker into each partition (the marker's
bytes are the protocol's business). Its state is durable, so that after a crash
the transactions that were open are aborted rather than left dangling.

A partition remembers, per producer, where its open transaction began (the last
stable offset is the earliest of those) and the spans of aborted transactions, which
read_committed readers use to skip aborted records.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from portask.broker.definitions import CONSUMER_OFFSETS, TRANSACTIONS, Definitions
from portask.broker.kafka.producers import MAX_EPOCH, ProducerIds

log = logging.getLogger("portask.broker")

PartitionKey = tuple[str, int]


class TxnState(enum.Enum):
    EMPTY = "Empty"
    ONGOING = "Ongoing"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"


class TxnError(enum.Enum):
    """Refusals, named after the Kafka errors the protocol layer maps them to."""

    INVALID_PRODUCER_ID_MAPPING = "invalid_producer_id_mapping"
    PRODUCER_FENCED = "producer_fenced"
    INVALID_TXN_STATE = "invalid_txn_state"
    CONCURRENT_TRANSACTIONS = "concurrent_transactions"


@dataclass
class Transaction:
    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    started_ms: int = -1
    partitions: set[PartitionKey] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    # (group, topic, partition) -> (offset, leader epoch, metadata), applied on commit.
    pending_offsets: dict[tuple[str, str, int], tuple[int, int, str | None]] = field(
        default_factory=dict
    )

    def record(self) -> dict[str, Any]:
        return {
            "producer_id": self.producer_id, "epoch": self.epoch, "timeout_ms": self.timeout_ms,
            "state": self.state.value, "started_ms": self.started_ms,
            "partitions": sorted(self.partitions), "groups": sorted(self.groups),
        }


# Writes a commit (True) or abort (False) marker for a transaction into a partition.
MarkerWriter = Callable[[Transaction, PartitionKey, bool], None]


class TransactionCoordinator:
    def __init__(self, definitions: Definitions, producer_ids: ProducerIds) -> None:
        self.definitions = definitions
        self.producer_ids = producer_ids
        self.transactions: dict[str, Transaction] = {}
        self.write_marker: MarkerWriter | None = None
        self._timer: asyncio.Task[None] | None = None

    def load(self, write_marker: MarkerWriter) -> None:
        """Restore transactions; abort the ones a crash left open."""
        self.write_marker = write_marker
        for tid, rec in self.definitions.items(TRANSACTIONS):
            txn = Transaction(
                str(tid), int(rec["producer_id"]), int(rec["epoch"]), int(rec["timeout_ms"]),
                TxnState(rec["state"]), int(rec["started_ms"]),
                {(str(t), int(p)) for t, p in rec["partitions"]}, set(rec["groups"]),
            )
            self.transactions[txn.transactional_id] = txn
            self.producer_ids.adopt(txn.producer_id, txn.epoch)
            if txn.state is TxnState.ONGOING:
                log.warning("aborting a transaction left open by a restart",
                            extra={"fields": {"transactional_id": txn.transactional_id}})
                self._finish(txn, commit=False)

    def start(self, check_interval_s: float = 1.0) -> None:
        self._timer = asyncio.create_task(self._expire_loop(check_interval_s))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def init(self, transactional_id: str, timeout_ms: int) -> tuple[int, int]:
        """InitProducerId for a transactional id: fence any older producer with it."""
        txn = self.transactions.get(transactional_id)
        if txn is None:
            producer_id, epoch = self.producer_ids.new()
            txn = Transaction(transactional_id, producer_id, epoch, timeout_ms)
            self.transactions[transactional_id] = txn
        else:
            if txn.state is TxnState.ONGOING:
                self._finish(txn, commit=False)
            self._bump(txn)
            txn.timeout_ms = timeout_ms
            txn.state = TxnState.EMPTY
        self._persist(txn)
        return txn.producer_id, txn.epoch

    def check(self, transactional_id: str, producer_id: int, epoch: int) -> TxnError | None:
        txn = self.transactions.get(transactional_id)
        if txn is None or txn.producer_id != producer_id:
            return TxnError.INVALID_PRODUCER_ID_MAPPING
        if epoch != txn.epoch:
            return TxnError.PRODUCER_FENCED
        return None

    def add_partitions(
        self, transactional_id: str, producer_id: int, epoch: int, keys: list[PartitionKey]
    ) -> TxnError | None:
        return self._add(transactional_id, producer_id, epoch, "partitions", set(keys))

    def add_group(
        self, transactional_id: str, producer_id: int, epoch: int, group: str
    ) -> TxnError | None:
        return self._add(transactional_id, producer_id, epoch, "groups", {group})

    def _add(
        self, transactional_id: str, producer_id: int, epoch: int, what: str, items: set[Any]
    ) -> TxnError | None:
        """Add partitions or groups to the producer's transaction, opening one if needed."""
        error = self.check(transactional_id, producer_id, epoch)
        if error is not None:
            return error
        txn = self.transactions[transactional_id]
        self._begin(txn)
        members: set[Any] = getattr(txn, what)
        if not items <= members:
            members.update(items)
            self._persist(txn)
        return None

    def stage_offset(
        self, transactional_id: str, group: str, topic: str, partition: int,
        offset: int, leader_epoch: int, metadata: str | None,
    ) -> None:
        txn = self.transactions[transactional_id]
        txn.pending_offsets[(group, topic, partition)] = (offset, leader_epoch, metadata)

    def contains(self, transactional_id: str, key: PartitionKey) -> bool:
        txn = self.transactions.get(transactional_id)
        return txn is not None and txn.state is TxnState.ONGOING and key in txn.partitions

    def end(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool
    ) -> TxnError | None:
        error = self.check(transactional_id, producer_id, epoch)
        if error is not None:
            return error
        txn = self.transactions[transactional_id]
        if txn.state is TxnState.ONGOING:
            self._finish(txn, commit)
            return None
        # A retried EndTxn whose first attempt completed gets the same answer again.
        done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        return None if txn.state is done else TxnError.INVALID_TXN_STATE

    def _begin(self, txn: Transaction) -> None:
        if txn.state is not TxnState.ONGOING:
            txn.state = TxnState.ONGOING
            txn.started_ms = int(time.time() * 1000)
            txn.partitions.clear()
            txn.groups.clear()
            txn.pending_offsets.clear()

    def _finish(self, txn: Transaction, commit: bool) -> None:
        assert self.write_marker is not None
        for key in sorted(txn.partitions):
            self.write_marker(txn, key, commit)
        if commit:
            now = int(time.time() * 1000)
            for (group, topic, partition), (offset, epoch, meta) in txn.pending_offsets.items():
                okey: Hashable = (group, topic, partition)
                self.definitions.put(CONSUMER_OFFSETS, okey, (offset, epoch, meta, now))
        txn.state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        txn.partitions.clear()
        txn.groups.clear()
        txn.pending_offsets.clear()
        self._persist(txn)

    def _bump(self, txn: Transaction) -> None:
        if txn.epoch >= MAX_EPOCH - 1:
            txn.producer_id, txn.epoch = self.producer_ids.new()
        else:
            txn.epoch += 1
            self.producer_ids.adopt(txn.producer_id, txn.epoch)

    def _persist(self, txn: Transaction) -> None:
        self.definitions.put(TRANSACTIONS, txn.transactional_id, txn.record())

    def expire(self, now_ms: int | None = None) -> list[str]:
        """Abort transactions open longer than their timeout, fencing their producer."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        expired = []
        for txn in list(self.transactions.values()):
            if txn.state is TxnState.ONGOING and now_ms - txn.started_ms > txn.timeout_ms:
                log.info("aborting a transaction past its timeout",
                         extra={"fields": {"transactional_id": txn.transactional_id,
                                           "timeout_ms": txn.timeout_ms}})
                self._finish(txn, commit=False)
                # The producer that let it time out must not continue with its epoch.
                self._bump(txn)
                self._persist(txn)
                expired.append(txn.transactional_id)
        return expired

    async def _expire_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.expire()
            except Exception:
                log.exception("transaction timeout pass failed")


class PartitionTransactions:
    """Open and aborted transaction spans of one partition, keyed by producer id."""

    def __init__(self) -> None:
        self.ongoing: dict[int, int] = {}  # producer id -> first offset of its open txn
        self.aborted: list[tuple[int, int, int]] = []  # (producer id, first, marker offset)
        self.rebuilt = False

    def begin(self, producer_id: int, offset: int) -> None:
        self.ongoing.setdefault(producer_id, offset)

    def end(self, producer_id: int, marker_offset: int, commit: bool) -> None:
        first = self.ongoing.pop(producer_id, None)
        if not commit and first is not None:
            self.aborted.append((producer_id, first, marker_offset))

    def last_stable_offset(self, high_watermark: int) -> int:
        return min(self.ongoing.values(), default=high_watermark)

    def aborted_between(self, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions overlapping [start, end)."""
        return [(pid, first) for pid, first, last in self.aborted if first < end and last >= start]

    def forget_before(self, offset: int) -> None:
        self.aborted = [a for a in self.aborted if a[2] >= offset]
