"""configs/grafana/portask.json queries only metrics the broker serves, and covers them all.

The broker is started, given traffic on both protocols (so that labelled metrics have
series), and /metrics is scraped; every metric an expression of the dashboard names
must be there as a sample.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pika
from confluent_kafka import Consumer, Producer

from tests.broker_process import BrokerProcess

DASHBOARD = Path(__file__).parent.parent.parent / "configs" / "grafana" / "portask.json"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? \S+$", re.MULTILINE)
_FAMILY = re.compile(r"^# TYPE (portask_\w+) (\w+)$", re.MULTILINE)
_METRIC = re.compile(r"\bportask_\w+")
# The samples a family of each type serves (prometheus_client's text format names a
# counter's family with its _total; the _created gauges are its bookkeeping, not data).
_SUFFIXES = {"counter": ("", "_total"), "histogram": ("_bucket", "_count", "_sum"),
             "gauge": ("",)}


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend(t["expr"] for t in inner.get("targets", []))
    return found


def _traffic(broker: BrokerProcess) -> Consumer:
    """Enough of both protocols that every labelled portask_* metric has a series.

    The Kafka consumer is returned open: group lag and members are read from the live
    coordinator, so the group must still have it when /metrics is scraped.
    """
    tag = uuid.uuid4().hex[:8]
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1",
                                                           broker.amqp_port)) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(f"dash-{tag}")
        for _ in range(3):
            ch.basic_publish("", f"dash-{tag}", b"payload")
        ch.basic_publish("amq.direct", f"nowhere-{tag}", b"unroutable")
        method, _props, _body = ch.basic_get(f"dash-{tag}")
        assert method is not None
        ch.basic_reject(method.delivery_tag, requeue=True)
        method, _props, _body = ch.basic_get(f"dash-{tag}")
        assert method is not None and method.redelivered
        ch.basic_ack(method.delivery_tag)
        ch.basic_consume(f"dash-{tag}", lambda *_args: None)
        conn.process_data_events(time_limit=0.3)
    # A client that does not speak AMQP: one connection error (protocol_header).
    with socket.create_connection(("127.0.0.1", broker.amqp_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        sock.recv(64)
    bootstrap = f"127.0.0.1:{broker.kafka_port}"
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(f"dash-{tag}", f"m{i}".encode())
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dash-{tag}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([f"dash-{tag}"])
    got = None
    deadline = time.monotonic() + 20
    while got is None and time.monotonic() < deadline:
        got = consumer.poll(0.5)
        if got is not None and got.error():
            got = None
    assert got is not None
    consumer.commit(got, asynchronous=False)
    return consumer


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_dashboard_queries_only_served_metrics_and_covers_them(broker: BrokerProcess) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard)
    assert len(expressions) > 20
    named = {m for expr in expressions for m in _METRIC.findall(expr)}
    assert named
    consumer = _traffic(broker)
    try:
        # Per-queue counters reach Prometheus about once a second (VirtualHost.flush_metrics).
        deadline = time.monotonic() + 10
        while True:
            text = _scrape(broker.http_port)
            served = set(_SAMPLE.findall(text))
            if named <= served or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    finally:
        consumer.close()
    families = dict(_FAMILY.findall(text))
    assert len(families) > 20, sorted(families)
    missing = sorted(name for name in named if name not in served)
    assert not missing, f"dashboard names metrics the broker does not serve: {missing}"
    # And nothing Portask serves is left off the dashboard.
    uncovered = sorted(
        family for family, kind in families.items()
        if not family.endswith("_created")
        and not any(family + suffix in named for suffix in _SUFFIXES.get(kind, ("",))))
    assert not uncovered, f"portask_* metrics not on the dashboard: {uncovered}"


def test_dashboard_panels_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        ids = [t["refId"] for t in panel["targets"]]
        assert len(ids) == len(set(ids)), panel["title"]
