"""File-system steps more than one store needs."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

# fdatasyncs still to fail (the control API's "make the next N fsyncs fail"). Read
# without the lock first: a sync pays one global read while none is asked for.
_failing_syncs = 0
_failing_lock = threading.Lock()


def fail_next_syncs(count: int) -> None:
    """Make the next ``count`` data syncs raise EIO, as on a failing disk (0: none)."""
    global _failing_syncs
    with _failing_lock:
        _failing_syncs = max(0, count)


def failing_syncs() -> int:
    return _failing_syncs


def datasync(fd: int) -> None:
    """``os.fdatasync``, or EIO while injected failures remain. Segments, indexes and
    flushes sync through here; background syncs run in threads, hence the lock."""
    global _failing_syncs
    if _failing_syncs:
        with _failing_lock:
            if _failing_syncs > 0:
                _failing_syncs -= 1
                raise OSError(errno.EIO, "fdatasync failed (injected by the control API)")
    os.fdatasync(fd)


def fsync_directory(directory: Path | str) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
