"""The set of logs under one data directory, and the timers that keep them healthy.

Owns what no single log can do for itself: the ``flush_ms`` timer, the periodic
retention pass, and closing every log on shutdown. Log names are relative paths
chosen by the broker core (``kafka/orders-0``, ``amqp/%2f/jobs``); this module does not
interpret them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from portask import metrics
from portask.storage.log import Log, LogConfig

log = logging.getLogger("portask.storage")

# Where removed log directories wait to be unlinked (see remove_dir).
TRASH = ".trash"


class LogDirectory:
    def __init__(
        self,
        root: Path,
        config: LogConfig,
        *,
        flush_ms: int | None,
        retention_check_ms: int,
    ) -> None:
        self.root = Path(root)
        self.config = config
        self.flush_ms = flush_ms
        self.retention_check_ms = retention_check_ms
        self.logs: dict[str, Log] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._to_unlink: list[Path] = []

    def open_log(self, name: str, config: LogConfig | None = None) -> Log:
        existing = self.logs.get(name)
        if existing is not None:
            return existing
        opened = Log.open(self.root / name, config or self.config)
        self.logs[name] = opened
        return opened

    def close_log(self, name: str) -> None:
        opened = self.logs.pop(name, None)
        if opened is not None:
            opened.close()

    def discard_log(self, name: str) -> None:
        """Close a log that is being deleted, without syncing it (``Log.discard``)."""
        opened = self.logs.pop(name, None)
        if opened is not None:
            opened.discard()

    def remove_dir(self, relative: str) -> None:
        """Remove the directory of deleted logs (closed first). It is renamed into the
        trash at once, so its name is free for a new log now, and unlinked by a thread:
        unlinking the segment files of a reset's worth of topics and queues takes
        hundreds of milliseconds the event loop should not wait for."""
        source = self.root / relative
        trash = self.root / TRASH
        target = trash / uuid.uuid4().hex
        try:
            trash.mkdir(exist_ok=True)
            os.rename(source, target)
        except FileNotFoundError:
            return
        except OSError:
            shutil.rmtree(source, ignore_errors=True)
            return
        self._unlink_later(target)

    def _unlink_later(self, path: Path) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            shutil.rmtree(path, ignore_errors=True)
            return
        # Collected, and handed to a thread once the current callback (a reset of a
        # hundred logs) has returned: a thread unlinking meanwhile would compete with it
        # for the GIL, and submitting starts threads.
        if not self._to_unlink:
            loop.call_soon(self._unlink_collected, loop)
        self._to_unlink.append(path)

    def _unlink_collected(self, loop: asyncio.AbstractEventLoop) -> None:
        paths, self._to_unlink = self._to_unlink, []
        loop.run_in_executor(None, _remove_trees, paths)

    def start(self) -> None:
        """Start the background flush and retention timers on the running loop."""
        if (self.root / TRASH).is_dir():
            self._unlink_later(self.root / TRASH)  # what a stop or crash left there
        if self.flush_ms is not None:
            self._tasks.append(asyncio.create_task(self._every(self.flush_ms, self.flush_due)))
        self._tasks.append(
            asyncio.create_task(self._every(self.retention_check_ms, self.apply_retention))
        )

    async def flush_due(self) -> None:
        """fdatasync every log with unflushed entries, off the event loop."""
        loop = asyncio.get_running_loop()
        for opened in list(self.logs.values()):
            if opened.closed:  # deleted (a topic, a queue) while an earlier log synced
                continue
            ticket = opened.begin_flush()
            if ticket is None:
                continue
            started = time.perf_counter()
            # The sync runs in a thread so appends continue meanwhile; the ticket holds
            # duplicated descriptors, so a roll or delete meanwhile is harmless.
            await loop.run_in_executor(None, ticket.sync)
            if not opened.closed:
                opened.complete_flush(ticket)
            metrics.STORAGE_FLUSH_DURATION.observe(time.perf_counter() - started)

    def apply_retention(self) -> int:
        deleted = 0
        for opened in list(self.logs.values()):
            deleted += opened.apply_retention()
        if deleted:
            metrics.STORAGE_RETENTION_DELETED_BYTES.inc(deleted)
        return deleted

    async def _every(self, interval_ms: int, action: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                result = action()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                # A failing pass must not stop later passes; the error names the log.
                log.exception("storage maintenance pass failed")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for name in list(self.logs):
            self.close_log(name)

    def segment_count(self) -> float:
        return float(sum(opened.segment_count for opened in self.logs.values()))

    def size_bytes(self) -> float:
        return float(sum(opened.size_bytes for opened in self.logs.values()))

    def log_count(self) -> float:
        return float(len(self.logs))


def _remove_trees(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
