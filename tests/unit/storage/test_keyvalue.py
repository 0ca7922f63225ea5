from __future__ import annotations

import os
from pathlib import Path

import pytest

from portask.storage.keyvalue import KeyValueStore, KeyValueStoreError


def test_values_survive_reopen(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path).open()
    store.put("topics", "orders", {"partitions": 3, "config": {"retention.ms": "1000"}})
    store.put("offsets", ("group", "orders", 0), 42)
    store.put("topics", "gone", {"partitions": 1})
    store.delete("topics", "gone")
    store.close()

    again = KeyValueStore(tmp_path).open()
    assert again.get("topics", "orders") == {"partitions": 3, "config": {"retention.ms": "1000"}}
    assert again.get("offsets", ("group", "orders", 0)) == 42
    assert again.get("topics", "gone") is None
    assert dict(again.items("topics")) == {
        "orders": {"partitions": 3, "config": {"retention.ms": "1000"}}
    }


def test_changes_survive_a_crash_without_close(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path, fsync=False).open()
    for i in range(100):
        store.put("offsets", ("g", "t", i % 3), i)
    # No close(): the process "dies" here; the change log holds everything.
    again = KeyValueStore(tmp_path).open()
    assert [again.get("offsets", ("g", "t", p)) for p in range(3)] == [99, 97, 98]


def test_torn_last_change_is_dropped_and_earlier_ones_kept(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path).open()
    store.put("q", "a", 1)
    store.put("q", "b", 2)
    changes = store.changes_path
    size = changes.stat().st_size
    with open(changes, "r+b") as fh:
        fh.truncate(size - 3)
    again = KeyValueStore(tmp_path).open()
    assert again.get("q", "a") == 1
    assert again.get("q", "b") is None


def test_many_changes_compact_into_the_snapshot(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path, fsync=False).open()
    for i in range(60_000):
        store.put("offsets", "k", "x" * 20 + str(i))
    assert store.changes_path.stat().st_size < 2 << 20
    store.close()
    assert KeyValueStore(tmp_path).open().get("offsets", "k").endswith("59999")


def test_damaged_snapshot_is_refused_with_the_path(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path).open()
    store.put("q", "a", 1)
    store.close()
    data = bytearray(store.snapshot_path.read_bytes())
    data[-1] ^= 0xFF
    store.snapshot_path.write_bytes(bytes(data))
    with pytest.raises(KeyValueStoreError, match=str(store.snapshot_path)):
        KeyValueStore(tmp_path).open()


def test_snapshot_replace_is_atomic_no_temp_left(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path).open()
    store.put("q", "a", 1)
    store.close()
    assert sorted(os.listdir(tmp_path)) == ["definitions.changes", "definitions.snapshot"]


def test_a_batch_of_changes_is_kept_like_single_ones(tmp_path: Path) -> None:
    store = KeyValueStore(tmp_path, fsync=True).open()
    for i in range(10):
        store.put("queues", ("/", f"q{i}"), {"durable": True})
    with store.batch():
        for i in range(10):
            store.delete("queues", ("/", f"q{i}"))
        with store.batch():  # nested: one sync, at the outer end
            store.put("queues", ("/", "kept"), {"durable": True})
    # No close(): what the batch wrote is in the change log.
    again = KeyValueStore(tmp_path).open()
    assert [k for k, _ in again.items("queues")] == [("/", "kept")]
