"""Topics and partitions: named, partitioned logs with durable definitions.

A partition is one record log (``broker.log.RecordLog``) of Kafka batches. Entries are
opaque to this module: the protocol layer decides what a payload is and how many
offsets it spans.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from portask.broker.definitions import TOPICS, Definitions
from portask.broker.kafka import topic_configs
from portask.broker.kafka.producers import PartitionProducers
from portask.broker.kafka.record_codec import RecordCodec
from portask.broker.kafka.transactions import PartitionTransactions
from portask.broker.log.record_log import RecordLog, StoredFormat
from portask.config import Settings
from portask.storage.directory import LogDirectory
from portask.storage.log import Log

log = logging.getLogger("portask.broker")

_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_NAME_LENGTH = 249


class TopicError(Exception):
    """Base of the refusals below; each maps to one protocol error."""


class TopicExists(TopicError):
    pass


class UnknownTopic(TopicError):
    pass


class InvalidTopicName(TopicError):
    pass


class InvalidPartitionCount(TopicError):
    pass


class Partition(RecordLog):
    """One partition: a record log of Kafka batches, with its producers' and
    transactions' state."""

    __slots__ = ("index", "producers", "topic", "transactions")

    def __init__(self, topic: Topic, index: int, log: Log) -> None:
        super().__init__(log, StoredFormat.KAFKA_BATCH)
        self.topic = topic
        self.index = index
        self.producers = PartitionProducers()
        self.transactions = PartitionTransactions()

    @property
    def log_name(self) -> str:
        return partition_log_name(self.topic.name, self.index)

    @property
    def high_watermark(self) -> int:
        return self.log.end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.start_offset

    def _write_failed(self, exc: OSError) -> None:
        # The first failure and the recovery are each logged once.
        if not self._write_failing:
            log.warning(
                "partition write failed; appends are refused until one succeeds",
                extra={"fields": {"topic": self.topic.name, "partition": self.index,
                                  "offset": self.log.end_offset, "error": str(exc)}},
            )

    def _writes_again(self, base: int) -> None:
        log.info(
            "partition writes again",
            extra={"fields": {"topic": self.topic.name, "partition": self.index,
                              "offset": base}},
        )


class Topic:
    def __init__(self, name: str, topic_id: uuid.UUID, configs: dict[str, str]) -> None:
        self.name = name
        self.topic_id = topic_id
        self.configs = configs  # overrides only; effective values add the broker defaults
        self.effective: dict[str, str] = {}
        self.partitions: list[Partition] = []
        self.created_ms = int(time.time() * 1000)


def partition_log_name(topic: str, index: int) -> str:
    return f"topics/{topic}-{index}"


class Topics:
    def __init__(self, settings: Settings, definitions: Definitions, logs: LogDirectory) -> None:
        self.settings = settings
        self.definitions = definitions
        self.logs = logs
        self._by_name: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        # Set by the protocol that owns the record format (Kafka): compacts one partition.
        self.compactor: Callable[[Partition, int], int] | None = None
        # Set by the same protocol: records decoded and built for the HTTP API.
        self.codec: RecordCodec | None = None
        # Called with a topic's name when it is created, deleted or given partitions
        # (its AMQP stream queues follow).
        self.watchers: list[Callable[[str], object]] = []

    def load(self) -> None:
        """Open every topic's partitions from the durable definitions."""
        for name, record in self.definitions.items(TOPICS):
            topic = Topic(str(name), uuid.UUID(bytes=record["id"]), dict(record["configs"]))
            self._register(topic)
            self._open_partitions(topic, int(record["partitions"]))

    @property
    def log_dir(self) -> Path:
        """The directory holding every partition's log (Kafka's one ``log.dirs`` entry)."""
        return (self.logs.root / partition_log_name("", 0)).parent.resolve()

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterable[Topic]:
        return iter(list(self._by_name.values()))

    def get(self, name: str) -> Topic | None:
        return self._by_name.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def partition(self, name: str, index: int) -> Partition | None:
        topic = self._by_name.get(name)
        if topic is None or not 0 <= index < len(topic.partitions):
            return None
        return topic.partitions[index]

    def effective_configs(self, topic: Topic) -> dict[str, str]:
        """Overrides over broker defaults; cached, since every produce consults them."""
        return topic.effective

    def check_new(
        self, name: str, partitions: int, configs: Mapping[str, str | None]
    ) -> dict[str, str]:
        """Validate a create without doing it (CreateTopics validate_only uses this too)."""
        check_name(name)
        if name in self._by_name:
            raise TopicExists(f"topic {name!r} already exists")
        if partitions < 1:
            raise InvalidPartitionCount(
                f"number of partitions must be at least 1, got {partitions}"
            )
        if partitions > 10_000:
            raise InvalidPartitionCount(f"number of partitions {partitions} exceeds 10000")
        return topic_configs.validate(configs)

    def create(
        self, name: str, partitions: int, configs: Mapping[str, str | None] | None = None
    ) -> Topic:
        overrides = self.check_new(name, partitions, configs or {})
        topic = Topic(name, uuid.uuid4(), overrides)
        self._persist(topic, partitions)
        self._register(topic)
        self._open_partitions(topic, partitions)
        log.info("topic created", extra={"fields": {"topic": name, "partitions": partitions}})
        self._changed(name)
        return topic

    def delete(self, name: str) -> None:
        topic = self._by_name.pop(name, None)
        if topic is None:
            raise UnknownTopic(f"topic {name!r} does not exist")
        del self._by_id[topic.topic_id]
        self.definitions.delete(TOPICS, name)
        for partition in topic.partitions:
            partition.wake()
            self.logs.discard_log(partition.log_name)
            self.logs.remove_dir(partition.log_name)
        log.info("topic deleted", extra={"fields": {"topic": name}})
        self._changed(name)

    def add_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        topic = self._by_name.get(name)
        if topic is None:
            raise UnknownTopic(f"topic {name!r} does not exist")
        current = len(topic.partitions)
        if total <= current:
            raise InvalidPartitionCount(
                f"topic {name!r} has {current} partitions; the new count must be larger, "
                f"got {total}"
            )
        if total > 10_000:
            raise InvalidPartitionCount(f"number of partitions {total} exceeds 10000")
        if validate_only:
            return
        self._persist(topic, total)
        self._open_partitions(topic, total)
        self._changed(name)

    def alter_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace the topic's overrides (already validated) and apply them to its logs."""
        topic = self._by_name[name]
        topic.configs = configs
        topic.effective = {**topic_configs.defaults(self.settings), **configs}
        self._persist(topic, len(topic.partitions))
        log_config = topic_configs.log_config(self.logs.config, self.effective_configs(topic))
        for partition in topic.partitions:
            partition.configure(log_config)

    def compact_all(self, now_ms: int | None = None) -> int:
        """Run compaction over every partition of topics with cleanup.policy compact."""
        if self.compactor is None:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        reclaimed = 0
        for topic in list(self._by_name.values()):
            if "compact" in topic.effective["cleanup.policy"]:
                for partition in list(topic.partitions):
                    reclaimed += self.compactor(partition, now_ms)
        return reclaimed

    def _changed(self, name: str) -> None:
        for watcher in self.watchers:
            watcher(name)

    def _register(self, topic: Topic) -> None:
        topic.effective = {**topic_configs.defaults(self.settings), **topic.configs}
        self._by_name[topic.name] = topic
        self._by_id[topic.topic_id] = topic

    def _persist(self, topic: Topic, partitions: int) -> None:
        record: dict[str, Any] = {
            "id": topic.topic_id.bytes,
            "partitions": partitions,
            "configs": topic.configs,
        }
        self.definitions.put(TOPICS, topic.name, record)

    def _open_partitions(self, topic: Topic, total: int) -> None:
        log_config = topic_configs.log_config(self.logs.config, self.effective_configs(topic))
        for index in range(len(topic.partitions), total):
            opened = self.logs.open_log(partition_log_name(topic.name, index), log_config)
            topic.partitions.append(Partition(topic, index, opened))


def check_name(name: str) -> None:
    if not name or name in (".", ".."):
        raise InvalidTopicName(f"topic name {name!r} is not allowed")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidTopicName(f"topic name is {len(name)} characters; at most {MAX_NAME_LENGTH}")
    if not _LEGAL_NAME.match(name):
        raise InvalidTopicName(
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
        )
