from __future__ import annotations

from pathlib import Path

from portask.broker.definitions import CONSUMER_OFFSETS, Definitions
from portask.broker.kafka.producers import ProducerIds
from portask.broker.kafka.transactions import (
    PartitionTransactions,
    Transaction,
    TransactionCoordinator,
    TxnError,
    TxnState,
)


def _coordinator(tmp_path: Path) -> tuple[TransactionCoordinator, list, Definitions]:
    defs = Definitions(tmp_path).open()
    markers: list[tuple[str, tuple[str, int], bool]] = []
    coordinator = TransactionCoordinator(defs, ProducerIds(defs))

    def write(txn: Transaction, key: tuple[str, int], commit: bool) -> None:
        markers.append((txn.transactional_id, key, commit))

    coordinator.load(write)
    return coordinator, markers, defs


def test_commit_writes_markers_and_applies_staged_offsets(tmp_path: Path) -> None:
    coordinator, markers, defs = _coordinator(tmp_path)
    pid, epoch = coordinator.init("t1", 60_000)
    assert coordinator.add_partitions("t1", pid, epoch, [("a", 0), ("a", 1)]) is None
    assert coordinator.add_group("t1", pid, epoch, "g") is None
    coordinator.stage_offset("t1", "g", "src", 0, 42, -1, "m")
    assert defs.get(CONSUMER_OFFSETS, ("g", "src", 0)) is None
    assert coordinator.end("t1", pid, epoch, commit=True) is None
    assert markers == [("t1", ("a", 0), True), ("t1", ("a", 1), True)]
    assert defs.get(CONSUMER_OFFSETS, ("g", "src", 0))[:3] == (42, -1, "m")
    assert coordinator.transactions["t1"].state is TxnState.COMPLETE_COMMIT
    # A retried EndTxn gets the same answer; the opposite outcome is refused.
    assert coordinator.end("t1", pid, epoch, commit=True) is None
    assert coordinator.end("t1", pid, epoch, commit=False) is TxnError.INVALID_TXN_STATE


def test_reinit_fences_and_aborts_the_open_transaction(tmp_path: Path) -> None:
    coordinator, markers, _ = _coordinator(tmp_path)
    pid, epoch = coordinator.init("t1", 60_000)
    coordinator.add_partitions("t1", pid, epoch, [("a", 0)])
    pid2, epoch2 = coordinator.init("t1", 60_000)
    assert (pid2, epoch2) == (pid, epoch + 1)
    assert markers == [("t1", ("a", 0), False)]
    assert coordinator.add_partitions("t1", pid, epoch, [("a", 0)]) is TxnError.PRODUCER_FENCED


def test_open_transactions_are_aborted_after_a_restart(tmp_path: Path) -> None:
    coordinator, _, defs = _coordinator(tmp_path)
    pid, epoch = coordinator.init("t1", 60_000)
    coordinator.add_partitions("t1", pid, epoch, [("a", 2)])
    defs.close()
    again, markers, _ = _coordinator(tmp_path)
    assert markers == [("t1", ("a", 2), False)]
    assert again.transactions["t1"].state is TxnState.COMPLETE_ABORT


def test_expiry_aborts_and_bumps_the_epoch(tmp_path: Path) -> None:
    coordinator, markers, _ = _coordinator(tmp_path)
    pid, epoch = coordinator.init("t1", 1000)
    coordinator.add_partitions("t1", pid, epoch, [("a", 0)])
    started = coordinator.transactions["t1"].started_ms
    assert coordinator.expire(started + 500) == []
    assert coordinator.expire(started + 1500) == ["t1"]
    assert markers == [("t1", ("a", 0), False)]
    assert coordinator.end("t1", pid, epoch, commit=True) is TxnError.PRODUCER_FENCED


def test_partition_spans_give_the_last_stable_offset_and_aborted_ranges() -> None:
    spans = PartitionTransactions()
    spans.begin(7, 10)
    spans.begin(8, 12)
    spans.begin(7, 15)  # the same transaction continues: its start stays 10
    assert spans.last_stable_offset(20) == 10
    spans.end(7, 16, commit=False)
    assert spans.last_stable_offset(20) == 12
    spans.end(8, 17, commit=True)
    assert spans.last_stable_offset(20) == 20
    assert spans.aborted_between(0, 11) == [(7, 10)]
    assert spans.aborted_between(17, 30) == []
