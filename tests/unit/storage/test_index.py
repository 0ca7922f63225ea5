"""The sparse offset index on its own: appends, searches, recovery of its length."""

from __future__ import annotations

from pathlib import Path

import pytest

from portask.storage.index import ENTRY_SIZE, OffsetIndex


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    return tmp_path / "00000000000000000000.index"


def fill(index: OffsetIndex, n: int) -> None:
    # Entry i: relative offset 10*i, position 100*i, timestamps rising by 5 with a dip
    # that the running max hides.
    for i in range(n):
        index.append(10 * i, 100 * i, 1000 + 5 * i)


def test_new_index_is_preallocated_and_empty(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 4096)
    try:
        assert index.entries == 0
        assert index.capacity == 4096 // ENTRY_SIZE
        assert index_path.stat().st_size == 4096
        assert index.lookup(5) == -1
    finally:
        index.close()


def test_lookup_finds_last_entry_at_or_below_target(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 1 << 16)
    try:
        fill(index, 1000)
        assert index.lookup(0) == 0
        assert index.lookup(9) == 0
        assert index.lookup(10) == 1
        assert index.lookup(4321) == 432
        assert index.lookup(9990) == 999
        assert index.lookup(10**9) == 999
        assert index.entry(432) == (4320, 43200, 1000 + 5 * 432)
    finally:
        index.close()


def test_lookup_position_and_timestamp(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 1 << 16)
    try:
        fill(index, 100)
        assert index.lookup_position(0) == 0
        assert index.lookup_position(99) == 0
        assert index.lookup_position(100) == 1
        assert index.lookup_position(10**6) == 99
        assert index.first_reaching_timestamp(0) == 0
        assert index.first_reaching_timestamp(1000) == 0
        assert index.first_reaching_timestamp(1001) == 1
        assert index.first_reaching_timestamp(1000 + 5 * 99) == 99
        assert index.first_reaching_timestamp(10**9) == 100
    finally:
        index.close()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 255, 256])
def test_reopen_recovers_entry_count_by_binary_search(index_path: Path, n: int) -> None:
    index = OffsetIndex.open(index_path, 256 * ENTRY_SIZE)
    fill(index, n)
    index.close()  # not sealed: the file keeps its pre-allocated zeros
    reopened = OffsetIndex.open(index_path, 256 * ENTRY_SIZE)
    try:
        assert reopened.entries == n
        assert reopened.is_consistent(10**9)
    finally:
        reopened.close()


def test_single_entry_with_zero_timestamp_is_indistinguishable_from_none(
    index_path: Path,
) -> None:
    # (0, 0, 0) is all zeros: the segment rebuilds it from the log, so this is safe.
    index = OffsetIndex.open(index_path, 4096)
    index.append(0, 0, 0)
    index.close()
    reopened = OffsetIndex.open(index_path, 4096)
    try:
        assert reopened.entries == 0
    finally:
        reopened.close()


def test_full_index_refuses_appends(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 3 * ENTRY_SIZE)
    try:
        fill(index, 3)
        assert index.is_full
        with pytest.raises(IndexError):
            index.append(100, 1000, 0)
    finally:
        index.close()


def test_seal_shrinks_file_and_activate_extends_it(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 4096)
    try:
        fill(index, 5)
        index.seal()
        assert index_path.stat().st_size == 5 * ENTRY_SIZE
        assert index.is_full
        index.activate(4096)
        assert index_path.stat().st_size == 4096
        assert index.entries == 5
        index.append(50, 500, 2000)
        assert index.lookup(55) == 5
    finally:
        index.close()


def test_truncate_entries_zeroes_the_rest(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 4096)
    fill(index, 10)
    index.truncate_entries(4)
    assert index.entries == 4
    index.close()
    reopened = OffsetIndex.open(index_path, 4096)
    try:
        assert reopened.entries == 4
        assert reopened.last() == (30, 300, 1015)
    finally:
        reopened.close()


def test_is_consistent_rejects_disorder_bad_size_and_out_of_bounds(index_path: Path) -> None:
    index = OffsetIndex.open(index_path, 4096)
    try:
        fill(index, 10)
        assert index.is_consistent(10**6)
        assert not index.is_consistent(900)  # last entry points at 900: past the end
    finally:
        index.close()

    with index_path.open("r+b") as f:
        f.seek(5 * ENTRY_SIZE)
        f.write((7).to_bytes(4, "little"))  # relative offset going backwards
    index = OffsetIndex.open(index_path, 4096)
    try:
        assert not index.is_consistent(10**6)
    finally:
        index.close()

    with index_path.open("r+b") as f:
        f.truncate(10 * ENTRY_SIZE + 3)
    index = OffsetIndex.open(index_path, None)
    try:
        assert not index.is_consistent(10**6)
    finally:
        index.close()
