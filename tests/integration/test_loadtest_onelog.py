"""Smoke test of ``tools/loadtest.py onelog``: tiny runs in both directions that must
account for every message (the BENCHMARKS figures for issue 17 come from this tool)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess

LOADTEST = Path(__file__).resolve().parents[2] / "tools" / "loadtest.py"


@pytest.mark.parametrize("direction", ["kafka-to-amqp", "amqp-to-kafka"])
def test_loadtest_onelog_accounts_for_every_message(broker: BrokerProcess,
                                                   direction: str) -> None:
    count = 3000
    done = subprocess.run(
        [sys.executable, str(LOADTEST), "onelog", direction,
         "--bootstrap", f"127.0.0.1:{broker.kafka_port}", "--port", str(broker.amqp_port),
         "--count", str(count), "--size", "256", "--compression", "lz4"],
        capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if direction == "kafka-to-amqp":
        assert result["messages"] == count and result["msg_per_s"] > 0
    else:
        assert result["confirmed"] == result["consumed"] == count
        assert result["publish_msg_per_s"] > 0 and result["consume_msg_per_s"] > 0
