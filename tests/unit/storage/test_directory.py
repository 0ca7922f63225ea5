"""The log directory's background passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from portask.storage.directory import LogDirectory
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
