"""Committed offsets: durable in the definitions store (namespace CONSUMER_OFFSETS, key
(group, topic, partition)), the one copy that group commits and transactions share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from portask.broker.definitions import CONSUMER_OFFSETS, Definitions
from portask.broker.kafka.groups.model import OffsetEntry, TopicPartition
from portask.broker.kafka.topics import Topics


class CommittedOffsets:
    def __init__(self, definitions: Definitions, topics: Topics) -> None:
        self.definitions = definitions
        self.topics = topics

    def partition_keys(self) -> Iterator[tuple[str, str, int]]:
        """(group, topic, partition) of every committed offset."""
        for key, _ in self.definitions.items(CONSUMER_OFFSETS):
            yield key  # type: ignore[misc]

    def has_group(self, group_id: str) -> bool:
        return any(g == group_id for g, _, _ in self.partition_keys())

    def store(self, group_id: str, offsets: dict[TopicPartition, OffsetEntry]) -> None:
        for (topic, partition), entry in offsets.items():
            self.definitions.put(CONSUMER_OFFSETS, (group_id, topic, partition), tuple(entry))

    def drop(self, group_id: str, partitions: Iterable[TopicPartition]) -> int:
        """Remove the group's offsets of ``partitions``; how many there were."""
        removed = 0
        for topic, partition in partitions:
            key = (group_id, topic, partition)
            if self.definitions.get(CONSUMER_OFFSETS, key) is not None:
                self.definitions.delete(CONSUMER_OFFSETS, key)
                removed += 1
        return removed

    def committed(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetEntry | None]:
        """Committed offsets of the given partitions (None: every partition with one).

        Offsets of partitions that no longer exist are not reported, as Kafka drops
        them when a topic is deleted.
        """
        exists = self.topics.partition
        if partitions is None:
            found = {
                (topic, index): _entry(value)
                for (group, topic, index), value in self.definitions.items(CONSUMER_OFFSETS)
                if group == group_id and exists(topic, index) is not None
            }
            return dict(sorted(found.items()))
        out: dict[TopicPartition, OffsetEntry | None] = {}
        for topic, index in partitions:
            value = self.definitions.get(CONSUMER_OFFSETS, (group_id, topic, index))
            out[(topic, index)] = (
                _entry(value) if value is not None and exists(topic, index) is not None else None
            )
        return out

    def lag(self) -> Iterator[tuple[str, str, int, int]]:
        """(group, topic, partition, high watermark - committed offset), for /metrics."""
        for group_id, topic, index, _, lag in self.rows():
            yield group_id, topic, index, lag

    def rows(self) -> Iterator[tuple[str, str, int, int, int]]:
        """(group, topic, partition, committed offset, lag), for kafka_exporter's names."""
        for (group_id, topic, index), value in self.definitions.items(CONSUMER_OFFSETS):
            partition = self.topics.partition(topic, index)
            if partition is not None:
                committed = value[0]
                yield group_id, topic, index, committed, max(
                    partition.high_watermark - committed, 0)


def _entry(value: Any) -> OffsetEntry:
    offset, leader_epoch, metadata, timestamp = value
    return OffsetEntry(offset, leader_epoch, metadata or "", timestamp)
