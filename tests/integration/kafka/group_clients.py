"""Consumer-group members over the three real client libraries, each polling in a thread.

A member records every record it was handed and the partitions it holds after each
poll, so a test can watch a rebalance happen from the clients' side.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer

from tests.integration.kafka.clients import bootstrap, kafka_python_member

CLIENTS = ("confluent", "kafka-python", "aiokafka")
# Short intervals keep the tests fast; 6 s is the broker's minimum session timeout.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 300


class GroupMember:
    def __init__(
        self, client: str, port: int, group: str, topic: str, **conf: Any
    ) -> None:
        self.client = client
        self.port = port
        self.group = group
        self.topic = topic
        self.conf = conf
        self.records: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.partitions: frozenset[int] = frozenset()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{client}-member", daemon=True)

    def start(self) -> GroupMember:
        self._thread.start()
        return self

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.client} member did not stop"

    def values(self) -> list[bytes]:
        with self._lock:
            return [v for _, _, v in self.records]

    def _seen(self, partition: int, offset: int, value: bytes | None) -> None:
        with self._lock:
            self.records.append((partition, offset, value or b""))

    def _run(self) -> None:
        try:
            {"confluent": self._confluent, "kafka-python": self._kafka_python,
             "aiokafka": self._aiokafka_thread,
             "confluent-consumer": self._confluent_consumer_protocol}[self.client]()
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def _confluent(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap(self.port),
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
                "auto.commit.interval.ms": 200,
                **self.conf,
            }
        )
        consumer.subscribe([self.topic])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if msg is not None:
                    if msg.error() is not None:
                        raise RuntimeError(str(msg.error()))
                    self._seen(msg.partition(), msg.offset(), msg.value())
                self.partitions = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()

    def _confluent_consumer_protocol(self) -> None:
        """librdkafka with Kafka 4's consumer group protocol (KIP-848): the broker sets
        the session timeout and heartbeat interval, so the client may not."""
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap(self.port),
                "group.id": self.group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                "auto.commit.interval.ms": 200,
                **self.conf,
            }
        )
        consumer.subscribe([self.topic])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if msg is not None:
                    if msg.error() is not None:
                        raise RuntimeError(str(msg.error()))
                    self._seen(msg.partition(), msg.offset(), msg.value())
                self.partitions = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()

    def _kafka_python(self) -> None:
        consumer = kafka_python_member(
            self.port, self.topic,
            # kafka-python 3 keys its I/O thread by client id: two consumers in one test
            # process with the default id interfere, as separate processes never would.
            client_id=f"kafka-python-{id(self)}",
            group_id=self.group,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            auto_commit_interval_ms=200,
            **self.conf,
        )
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    for m in records:
                        self._seen(m.partition, m.offset, m.value)
                self.partitions = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()

    def _aiokafka_thread(self) -> None:
        asyncio.run(self._aiokafka())

    async def _aiokafka(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=bootstrap(self.port),
            group_id=self.group,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            auto_commit_interval_ms=200,
            **self.conf,
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for m in records:
                        self._seen(m.partition, m.offset, m.value)
                self.partitions = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            await consumer.stop()


def wait_for(
    condition: Callable[[], bool], timeout: float = 20, what: str = "condition",
    members: tuple[GroupMember, ...] = (),
) -> float:
    """Poll until the condition holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        for m in members:
            if m.error is not None:
                raise AssertionError(f"{m.client} member failed: {m.error!r}") from m.error
        if time.monotonic() - started > timeout:
            state = {f"{m.client}#{i}": sorted(m.partitions) for i, m in enumerate(members)}
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; {state}")
        time.sleep(0.05)
    return time.monotonic() - started


def split_evenly(members: tuple[GroupMember, ...], partitions: int) -> bool:
    """Every member holds at least one partition, none is held twice, all are held."""
    held = [m.partitions for m in members]
    every = [p for h in held for p in h]
    return all(held) and len(every) == len(set(every)) == partitions
