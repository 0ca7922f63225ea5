"""Smoke test of the C AMQP load tool (tools/amqp_load.c, `make amqp-load`): it builds
against librabbitmq-dev (.ci/run installs it) and accounts for every message it sends
in one-second runs against a broker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.broker_process import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]


def test_amqp_load_delivers_everything_it_published(broker: BrokerProcess) -> None:
    # One test for both runs: a second xdist worker must not relink the binary while
    # the first one runs it.
    built = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "amqp-load"],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    for extra in ([], ["--persistent", "--confirms", "--max-backlog", "1000"]):
        done = subprocess.run(
            [str(ROOT / "build" / "amqp-load"), "--port", str(broker.amqp_port),
             "--duration", "1", "--size", "256", "--json", *extra],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        [result] = json.loads(done.stdout)
        assert result["published"] > 0, extra
        assert result["delivered"] == result["published"], (extra, result)
        assert result["latency_p99_ms"] is not None
