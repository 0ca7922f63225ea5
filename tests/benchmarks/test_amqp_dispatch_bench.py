"""The AMQP publish -> deliver -> ack path in one process (see amqp_publish_loop).
Run with `make bench`; the instruction count in BENCHMARKS.md is the steadier figure."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.benchmarks.amqp_publish_loop import BATCH, run

ROUNDS = 200


def test_publish_deliver_ack_loop(benchmark: Any) -> None:
    written = benchmark.pedantic(lambda: asyncio.run(run(ROUNDS, "ack")), rounds=5)
    # Every publish came back as a delivery: at least its body, once.
    assert written > ROUNDS * BATCH * 1024
    benchmark.extra_info["us_per_message"] = round(
        benchmark.stats.stats.min / (ROUNDS * BATCH) * 1e6, 2)
