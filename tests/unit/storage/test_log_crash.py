"""kill -9 of a real writer process: every acknowledged record must survive."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from portask.storage import Log, LogConfig

WRITER = Path(__file__).with_name("crash_writer.py")


def payload(offset: int, size: int) -> bytes:
    # Same function as crash_writer.payload; duplicated so the check is independent.
    stamp = f"{offset}:".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def run_writer_and_kill(directory: Path, seed: int, policy: str, run_for: float
                        ) -> list[tuple[int, int, int]]:
    """Start the writer, let it run, SIGKILL it; returns the acknowledged entries."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory), str(seed), policy],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acked: list[tuple[int, int, int]] = []
    started = threading.Event()

    def read_acks() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith(b"\n"):
                break  # cut off by the kill: not a complete acknowledgement
            offset, count, size = map(int, line.split())
            acked.append((offset, count, size))
            started.set()

    reader = threading.Thread(target=read_acks)
    reader.start()
    try:
        if not started.wait(timeout=10):
            proc.kill()
            assert proc.stderr is not None
            pytest.fail(f"writer never acknowledged: {proc.stderr.read().decode()}")
        time.sleep(run_for)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    rng = random.Random(1234)
    acknowledged: dict[int, tuple[int, int]] = {}
    for run, policy in enumerate(["none", "flush_messages", "fsync_always"]):
        acked = run_writer_and_kill(directory, seed=run, policy=policy,
                                    run_for=rng.uniform(0.3, 1.2))
        assert acked, "the writer acknowledged nothing"
        for offset, count, size in acked:
            acknowledged[offset] = (count, size)

        log = Log.open(directory, LogConfig(segment_bytes=256 * 1024, segment_ms=None))
        try:
            entries = []
            offset = log.start_offset
            while offset < log.end_offset:
                for r in log.read(offset, 1 << 20):
                    entries.append((r.offset, r.count, bytes(r.payload)))
                    offset = r.offset + r.count
            # Contiguous from 0: no gaps, no duplicates, no overlaps.
            expected_offset = 0
            for entry_offset, count, data in entries:
                assert entry_offset == expected_offset
                assert data == payload(entry_offset, len(data))
                expected_offset += count
            assert expected_offset == log.end_offset
            stored = {o: (c, len(d)) for o, c, d in entries}
            missing = {o: v for o, v in acknowledged.items() if stored.get(o) != v}
            assert not missing, f"run {run}: acknowledged entries lost: {sorted(missing)[:5]}"
            # Whatever the writer had written but not acknowledged may survive too;
            # the next run continues from here, so make it the new truth.
            acknowledged = {o: v for o, v in stored.items()}
        finally:
            log.close()
