"""Syncing off the event loop: the background fdatasync of rolled segments, and the part
of a flush that may run in a thread (``FlushTicket``)."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from portask.storage import files
from portask.storage.checkpoint import RecoveryPoint

_sync_executor: ThreadPoolExecutor | None = None


def _sync_and_close(fds: tuple[int, ...]) -> None:
    try:
        for fd in fds:
            files.datasync(fd)
    finally:
        for fd in fds:
            os.close(fd)


def background_sync(fds: tuple[int, ...]) -> Future[None]:
    """fdatasync off the event loop: syncing a full 128 MiB segment takes 50-100 ms here.

    One small pool for every log, so thousands of partitions do not mean thousands of
    threads.
    """
    global _sync_executor
    if _sync_executor is None:
        _sync_executor = ThreadPoolExecutor(max_workers=2,
                                            thread_name_prefix="portask-storage-sync")
    return _sync_executor.submit(_sync_and_close, fds)


class RollSync(NamedTuple):
    future: Future[None]
    recovery_point: RecoveryPoint  # the start of the segment after the one being synced
    appended: int
    generation: int


class FlushTicket:
    """The part of a flush that may run in a thread: fdatasync of duplicated fds.

    ``Log.begin_flush`` creates it on the loop, ``sync`` may run in an executor, and
    ``Log.complete_flush`` (on the loop again) records the result. The descriptors are
    duplicates, so a segment deleted or rolled meanwhile cannot close them under us.
    """

    __slots__ = ("_fds", "_roll_syncs", "appended", "generation", "recovery_point")

    def __init__(self, fds: tuple[int, ...], roll_syncs: tuple[Future[None], ...],
                 recovery_point: RecoveryPoint, appended: int, generation: int) -> None:
        self._fds = fds
        self._roll_syncs = roll_syncs
        self.recovery_point = recovery_point
        self.appended = appended
        self.generation = generation

    def sync(self) -> None:
        """Wait for segments rolled before the ticket to be synced, then sync the rest."""
        try:
            for future in self._roll_syncs:
                future.result()
            for fd in self._fds:
                files.datasync(fd)
        finally:
            self.discard()

    def discard(self) -> None:
        """Close the descriptors without syncing (when the flush is abandoned)."""
        fds, self._fds = self._fds, ()
        for fd in fds:
            os.close(fd)
