"""The app container of deploy/docker-compose.yml: one Kafka record and one AMQP message
through Portask and back, with the addresses from the environment. It exits 0 when both
came back, so `docker compose up` shows at once whether the wiring is right.

    KAFKA_BOOTSTRAP_SERVERS=localhost:29092 AMQP_URL=amqp://guest:guest@localhost:5672/%2F \\
        python deploy/example_app.py
"""

from __future__ import annotations

import os
import sys
import uuid

import pika
from kafka import KafkaConsumer, KafkaProducer


def kafka_round_trip(bootstrap: str) -> bytes:
    topic = f"example-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, b"hello over Kafka").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id="example-app", consumer_timeout_ms=15_000)
    try:
        return next(iter(consumer)).value  # type: ignore[no-any-return]
    finally:
        consumer.close()


def amqp_round_trip(url: str) -> bytes:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"hello over AMQP")
        for _ in range(100):
            _, _, body = channel.basic_get(queue, auto_ack=True)
            if body is not None:
                return body
            connection.sleep(0.1)
        return b""
    finally:
        connection.close()


def main() -> int:
    kafka = kafka_round_trip(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    amqp = amqp_round_trip(os.environ["AMQP_URL"])
    print(f"kafka: {kafka.decode()}; amqp: {amqp.decode()}", flush=True)
    return 0 if (kafka, amqp) == (b"hello over Kafka", b"hello over AMQP") else 1


if __name__ == "__main__":
    sys.exit(main())
