"""The checkpoint file on a full disk: routine ones are skipped, durable ones raise."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from portask.storage import Log, LogConfig


def test_a_routine_checkpoint_that_cannot_be_written_is_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log.open(tmp_path / "log", LogConfig(segment_bytes=4096, segment_ms=None))
    for i in range(100):
        log.append(b"%03d" % i)
    real_open = os.open

    def no_space(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if str(path).endswith("checkpoint.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", no_space)
    ticket = log.begin_flush()  # the periodic flush, as LogDirectory runs it
    assert ticket is not None
    ticket.sync()
    log.complete_flush(ticket)  # the data is synced; only its checkpoint is skipped
    assert not log.needs_flush
    with pytest.raises(OSError):
        log.delete_before(50)  # a new log start must be on disk before it counts
    monkeypatch.undo()
    log.close()
    again = Log.open(tmp_path / "log", LogConfig(segment_bytes=4096, segment_ms=None))
    assert [bytes(r.payload) for r in again.read(again.start_offset, 1 << 20)][-1] == b"099"
    again.close()
