"""Smoke test of ``tools/loadtest.py kafka``: a tiny run that must account for every message.

The tool is what the published figures come from, so a change that makes it drop,
miscount or mistime messages should fail here rather than in a benchmark table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

LOADTEST = Path(__file__).resolve().parents[3] / "tools" / "loadtest.py"


def test_loadtest_kafka_reports_every_message_and_sane_latency(
    kafka_broker, topic_name: Callable[[], str]
) -> None:
    count = 2000
    cmd = [
        sys.executable, str(LOADTEST), "kafka",
        "--bootstrap", f"127.0.0.1:{kafka_broker.kafka_port}",
        "--topic", topic_name(), "--create", "--partitions", "3",
        "--producers", "1", "--consumers", "1", "--count", str(count),
        "--message-size", "256", "--linger-ms", "1",
        "--drain-timeout", "3", "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["published"] == count
    assert result["delivered"] == count
    assert result["publish_msg_s"] > 0 and result["deliver_msg_s"] > 0
    # Every 16th message is timed at full speed: 125 samples of 2000.
    assert result["latency_samples"] == count // 16
    # Positive (the clock is shared) and far below the run's own length.
    assert 0 < result["latency_p50_ms"] <= result["latency_p99_ms"] <= result["latency_max_ms"]
    assert result["latency_max_ms"] < 10_000
    # The broker found on the bootstrap port is the fixture's process.
    assert result["resources"]["broker_pid"] == kafka_broker.proc.pid
    assert result["resources"]["broker_cpu_pct"] >= 0
