"""Durable definitions: what must survive a restart besides the messages themselves.

Kafka topics and their configs, AMQP vhosts, users, exchanges, queues and bindings,
and committed consumer offsets, each in its own namespace of one key-value store.
Values are plain msgpack-able data; the modules that own each kind of definition
(topics.py, exchanges.py, ...) decide their shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from portask.storage.keyvalue import KeyValueStore

CLUSTER = "cluster"
TOPICS = "topics"
VHOSTS = "vhosts"
USERS = "users"
EXCHANGES = "exchanges"
QUEUES = "queues"
BINDINGS = "bindings"
# (vhost, name) -> a policy's pattern, apply-to, priority and definition.
POLICIES = "policies"
CONSUMER_OFFSETS = "consumer_offsets"
PRODUCER_IDS = "producer_ids"
TRANSACTIONS = "transactions"
# Partitions that ever held a transactional batch: only these need their
# transaction spans rebuilt from the log after a restart.
TXN_PARTITIONS = "txn_partitions"
# (vhost, exchange) -> {partition: next offset} of an exchange fed from a Kafka topic.
TOPIC_FEEDS = "topic_feeds"
# vhost -> whether its feeds were routing when the process ended (a crash, not a stop).
TOPIC_FEEDS_RUNNING = "topic_feeds_running"


class Definitions:
    """Definitions live in ``<data_dir>/meta``; offsets apart, since they change far more often."""

    def __init__(self, data_dir: Path) -> None:
        meta = Path(data_dir) / "meta"
        self._definitions = KeyValueStore(meta, "definitions", fsync=True)
        # Offsets are committed at high rates: a process crash keeps them (the write is
        # in the page cache); fsync-per-commit would cap commit throughput at the disk.
        self._offsets = KeyValueStore(meta, "offsets", fsync=False)

    def open(self) -> Definitions:
        self._definitions.open()
        self._offsets.open()
        return self

    def close(self) -> None:
        self._definitions.close()
        self._offsets.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes (a reset), one sync at the end (``KeyValueStore.batch``)."""
        with self._definitions.batch(), self._offsets.batch():
            yield

    def _store(self, namespace: str) -> KeyValueStore:
        return self._offsets if namespace == CONSUMER_OFFSETS else self._definitions

    def get(self, namespace: str, key: Hashable, default: Any = None) -> Any:
        return self._store(namespace).get(namespace, key, default)

    def items(self, namespace: str) -> Iterator[tuple[Hashable, Any]]:
        return self._store(namespace).items(namespace)

    def put(self, namespace: str, key: Hashable, value: Any) -> None:
        self._store(namespace).put(namespace, key, value)

    def delete(self, namespace: str, key: Hashable) -> None:
        self._store(namespace).delete(namespace, key)
