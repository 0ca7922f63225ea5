"""kcat (librdkafka's CLI) and kafkajs (a pure JavaScript client) against Portask."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import consume_confluent, create_topic

JS_DIR = Path(__file__).resolve().parents[2] / "js"


@pytest.mark.skipif(
    shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)"
)
def test_kcat_produces_lists_and_consumes(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    broker = f"127.0.0.1:{kafka_broker.kafka_port}"
    lines = "".join(f"k{i}:v{i}\n" for i in range(50))
    subprocess.run(
        ["kcat", "-b", broker, "-P", "-t", topic, "-K:", "-z", "snappy"],
        input=lines,
        text=True,
        check=True,
        timeout=30,
    )
    listing = subprocess.run(
        ["kcat", "-b", broker, "-L", "-J", "-t", topic],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    meta = json.loads(listing.stdout)
    assert meta["topics"][0]["topic"] == topic
    assert len(meta["topics"][0]["partitions"]) == 1
    consumed = subprocess.run(
        ["kcat", "-b", broker, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k=%s@%o\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert consumed.stdout.splitlines() == [f"k{i}=v{i}@{i}" for i in range(50)]


@pytest.mark.skipif(
    not (JS_DIR / "node_modules" / "kafkajs").exists(),
    reason="kafkajs is not installed (npm ci --prefix tests/js)",
)
def test_kafkajs_creates_produces_and_reads_offsets(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    result = subprocess.run(
        [
            "node",
            str(JS_DIR / "kafkajs_produce.js"),
            f"127.0.0.1:{kafka_broker.kafka_port}",
            topic,
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["created"] is True
    assert out["partitions"] == 2
    assert sorted((o["partition"], o["high"], o["low"]) for o in out["offsets"]) == [
        (0, "20", "0"),
        (1, "20", "0"),
    ]
    got = consume_confluent(kafka_broker.kafka_port, topic, 2, 40)
    assert sorted((m.key, m.value, m.headers) for m in got) == sorted(
        (f"key-{i}".encode(), f"value-{i}".encode(), (("idx", str(i).encode()),)) for i in range(40)
    )
