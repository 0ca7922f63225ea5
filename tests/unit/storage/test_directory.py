"""The log directory's background passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from portask.storage.directory import TRASH, LogDirectory
from portask.storage.log import LogConfig


async def test_a_log_closed_during_a_flush_pass_is_skipped(tmp_path: Path) -> None:
    # Found by the end-to-end fuzzer: a topic deleted while the flush pass was syncing
    # another log made the pass fail with "log ... is closed" and a traceback.
    logs = LogDirectory(tmp_path, LogConfig(segment_bytes=1 << 20), flush_ms=None,
                        retention_check_ms=60_000)
    first, deleted = logs.open_log("topics/a-0"), logs.open_log("topics/b-0")
    first.append(b"x" * 100)
    deleted.append(b"y" * 100)
    flush = asyncio.create_task(logs.flush_due())
    await asyncio.sleep(0)  # the pass is now syncing the first log in a thread
    logs.close_log("topics/b-0")
    await flush
    assert first.unflushed_entries == 0
    await logs.close()


async def test_a_removed_log_frees_its_name_at_once_and_its_files_soon(tmp_path: Path) -> None:
    logs = LogDirectory(tmp_path, LogConfig(segment_bytes=1 << 20), flush_ms=None,
                        retention_check_ms=60_000)
    old = logs.open_log("topics/a-0")
    old.append(b"old" * 100)
    logs.discard_log("topics/a-0")
    logs.remove_dir("topics/a-0")
    assert old.closed and not (tmp_path / "topics" / "a-0").exists()
    new = logs.open_log("topics/a-0")  # a topic made again under the same name
    assert new is not old and new.end_offset == 0
    for _ in range(200):
        if not any((tmp_path / TRASH).iterdir()):
            break
        await asyncio.sleep(0.01)
    assert list((tmp_path / TRASH).iterdir()) == []
    await logs.close()


async def test_what_a_crash_left_in_the_trash_is_removed_at_start(tmp_path: Path) -> None:
    left = tmp_path / TRASH / "deadbeef"
    left.mkdir(parents=True)
    (left / "00000000000000000000.log").write_bytes(b"z" * 4096)
    logs = LogDirectory(tmp_path, LogConfig(segment_bytes=1 << 20), flush_ms=None,
                        retention_check_ms=60_000)
    logs.start()
    for _ in range(200):
        if not (tmp_path / TRASH).exists():
            break
        await asyncio.sleep(0.01)
    assert not (tmp_path / TRASH).exists()
    await logs.close()
