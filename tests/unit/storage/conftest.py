"""Fixtures for storage tests: logs in tmp_path that are always closed, and a clock."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portask.storage import Log, LogConfig


class FakeClock:
    """A clock the test moves by hand (seconds, like time.time)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: int) -> None:
        self.now += ms / 1000

    @property
    def ms(self) -> int:
        return int(self.now * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


OpenLog = Callable[..., Log]


@pytest.fixture
def open_log(log_dir: Path, clock: FakeClock) -> Iterator[OpenLog]:
    """Open the log in ``log_dir`` (with the fake clock); closes what is left open.

    Holds only weak references: ``del log`` in a test drops the log without closing
    it, which leaves the files exactly as kill -9 would.
    """
    opened: list[weakref.ref[Log]] = []

    def _open(config: LogConfig | None = None, **overrides: object) -> Log:
        cfg = config or LogConfig(**overrides)  # type: ignore[arg-type]
        log = Log.open(log_dir, cfg, clock=clock)
        opened.append(weakref.ref(log))
        return log

    yield _open
    for ref in opened:
        log = ref()
        if log is not None and not log.closed:
            log.close()


def _payload_for(offset: int, size: int | None = None) -> bytes:
    """Deterministic, offset-specific content, so a misplaced record cannot pass."""
    if size is None:
        size = 10 + offset % 200
    stamp = f"<{offset}>".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def _read_all(log: Log) -> list[tuple[int, int, int, bytes]]:
    """Every entry from the log start as plain tuples (copies, so maps can close)."""
    out = []
    offset = log.start_offset
    while offset < log.end_offset:
        records = log.read(offset, 1 << 20)
        for r in records:
            out.append((r.offset, r.count, r.timestamp, bytes(r.payload)))
        last = records[-1]
        offset = last.offset + last.count
    return out


# Helpers are handed out as fixtures: importing this conftest by name would be
# ambiguous next to tests/conftest.py.
@pytest.fixture
def payload_for() -> Callable[..., bytes]:
    return _payload_for


@pytest.fixture
def read_all() -> Callable[[Log], list[tuple[int, int, int, bytes]]]:
    return _read_all
