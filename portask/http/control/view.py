"""What the control API knows of the broker, in one place: the only module of
``http.control`` that imports from ``portask.broker``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portask.broker.control import Control, ControlError, FaultRule, ResetResult
from portask.broker.kafka import topology
from portask.broker.kafka.groups import Group
from portask.broker.kafka.topology import TopologyError
from portask.broker.seed import SeedResult, seed

if TYPE_CHECKING:
    from portask.broker.core import Broker

__all__ = ["ControlError", "ControlView", "FaultRule", "ResetResult", "SeedResult",
           "TopologyError", "seed"]


class ControlView:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @property
    def control(self) -> Control:
        return self.broker.control

    def queue_counts(self, vhost: str, name: str) -> tuple[int, int] | None:
        """(ready messages, consumers) of a queue; None while it does not exist."""
        amqp = self.broker.amqp
        host = amqp.get(vhost) if amqp is not None else None
        queue = host.queues.get(name) if host is not None else None
        if queue is None:
            return None
        return queue.message_count, queue.consumer_count

    def topic_records(self, name: str) -> int | None:
        """Records in a topic (high watermarks less log starts); None if no such topic."""
        topic = self.broker.topics.get(name)
        if topic is None:
            return None
        return sum(p.high_watermark - p.log_start_offset for p in topic.partitions)

    def group(self, group_id: str) -> Group | None:
        return self.broker.groups.get(group_id)

    @staticmethod
    def group_state(group: Group) -> tuple[str, int]:
        return group.state.value, len(group.members)

    def kafka_topology(self) -> dict[str, Any]:
        """Topics (partitions, overrides) and ACLs, as `portask ctl export-kafka` gets them."""
        return topology.export(self.broker.topics, self.broker.kafka_acls)

    def load_kafka_topology(self, doc: Any) -> topology.Applied:
        return topology.apply(topology.parse(doc, "body"), self.broker.topics,
                              self.broker.kafka_acls)
