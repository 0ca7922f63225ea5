"""/metrics serves the names existing dashboards read: every metric the stock
RabbitMQ-Overview Grafana dashboard queries, and kafka_exporter's names."""

from __future__ import annotations

import re
import urllib.request
import uuid
from pathlib import Path

import pika
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.broker_process import BrokerProcess

FIXTURE = Path(__file__).parent.parent / "fixtures" / "rabbitmq_overview_dashboard_metrics.txt"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def _scrape(port: int) -> dict[str, list[tuple[str, float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            samples.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return samples


def _value(samples: dict[str, list[tuple[str, float]]], name: str, label: str = "") -> float:
    return sum(v for labels, v in samples[name] if label in labels)


def test_every_rabbitmq_overview_dashboard_metric_is_served(broker: BrokerProcess) -> None:
    q = f"dash-{uuid.uuid4().hex[:6]}"
    params = pika.ConnectionParameters("127.0.0.1", broker.amqp_port)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(q)
        for size in (10, 100, 5000):
            ch.basic_publish("", q, b"x" * size)
        method, _props, _body = ch.basic_get(q)
        assert method is not None
        samples = _scrape(broker.http_port)
        wanted = [line.strip() for line in FIXTURE.read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
        assert len(wanted) > 30
        missing = [name for name in wanted if name not in samples]
        assert not missing, missing
        identity = samples["rabbitmq_identity_info"][0][0]
        for label in ("rabbitmq_node=", "rabbitmq_cluster=", "rabbitmq_endpoint="):
            assert label in identity
        assert "rabbitmq_version=" in samples["rabbitmq_build_info"][0][0]
        # The values follow the traffic.
        assert _value(samples, "rabbitmq_queue_messages_ready", f'queue="{q}"') == 2
        assert _value(samples, "rabbitmq_queue_messages_unacked", f'queue="{q}"') == 1
        assert _value(samples, "rabbitmq_queues") >= 1
        assert _value(samples, "rabbitmq_connections") == 1
        assert _value(samples, "rabbitmq_channels") == 1
        assert _value(samples, "rabbitmq_global_publishers") == 1
        assert _value(samples, "rabbitmq_global_messages_received_total") == 3
        assert _value(samples, "rabbitmq_global_messages_received_confirm_total") == 3
        assert _value(samples, "rabbitmq_global_messages_confirmed_total") == 3
        assert _value(samples, "rabbitmq_global_messages_routed_total") == 3
        assert _value(samples, "rabbitmq_global_messages_delivered_get_manual_ack_total") == 1
        assert _value(samples, "rabbitmq_message_size_bytes_count") == 3
        assert _value(samples, "rabbitmq_message_size_bytes_sum") == 5110
        assert _value(samples, "rabbitmq_message_size_bytes_bucket", 'le="64"') == 1
        assert _value(samples, "rabbitmq_message_size_bytes_bucket", 'le="256"') == 2
        assert _value(samples, "rabbitmq_process_resident_memory_bytes") > 1e6
        ch.queue_delete(q)


def test_kafka_exporter_names_report_offsets_and_lag(broker: BrokerProcess) -> None:
    topic, group = f"dash-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    bootstrap = f"127.0.0.1:{broker.kafka_port}"
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(topic, str(i).encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    consumer.close()
    samples = _scrape(broker.http_port)
    labels = f'topic="{topic}"'
    assert _value(samples, "kafka_topic_partition_current_offset", labels) == 5
    assert _value(samples, "kafka_topic_partition_oldest_offset", labels) == 0
    assert _value(samples, "kafka_topic_partitions", labels) == 1
    assert _value(samples, "kafka_brokers") == 1
    assert _value(samples, "kafka_consumergroup_current_offset", f'consumergroup="{group}"') == 2
    assert _value(samples, "kafka_consumergroup_lag", f'consumergroup="{group}"') == 3
    assert _value(samples, "kafka_consumergroup_lag_sum", f'consumergroup="{group}"') == 3
