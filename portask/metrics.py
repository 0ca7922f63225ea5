# Over 500 lines: every exported metric is defined once, here, so names cannot drift.
"""Every Prometheus metric Portask exports, defined once.

Names follow the performance guide (``shared/reference/portask-performance-guide.md``).
Protocol code and the broker core import the objects from here; nothing else
creates metrics.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# The guide's latency buckets, in seconds.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)

MESSAGES_PRODUCED = Counter(
    "portask_messages_produced_total",
    "Messages accepted from producers and publishers.",
    ["protocol", "topic", "exchange"],
)
MESSAGES_CONSUMED = Counter(
    "portask_messages_consumed_total",
    "Messages delivered to consumers (Kafka fetch, AMQP deliver/get).",
    ["protocol", "topic", "queue"],
)
BYTES_PRODUCED = Counter(
    "portask_bytes_produced_total",
    "Payload bytes accepted from producers and publishers.",
    ["protocol", "topic", "exchange"],
)
BYTES_CONSUMED = Counter(
    "portask_bytes_consumed_total",
    "Payload bytes delivered to consumers.",
    ["protocol", "topic", "queue"],
)
PUBLISH_DURATION = Histogram(
    "portask_publish_duration_seconds",
    "Time from a publish/produce request arriving to its acknowledgement.",
    ["protocol", "topic", "exchange"],
    buckets=LATENCY_BUCKETS,
)
REQUEST_DURATION = Histogram(
    "portask_request_duration_seconds",
    "Time spent handling one protocol request, by API.",
    ["protocol", "api"],
    buckets=LATENCY_BUCKETS,
)
CONNECTIONS_ACTIVE = Gauge(
    "portask_connections_active", "Open client connections.", ["protocol"]
)
CONNECTIONS_TOTAL = Counter(
    "portask_connections_total", "Client connections accepted.", ["protocol"]
)
CONNECTION_ERRORS = Counter(
    "portask_connection_errors_total",
    "Connections closed because of a protocol or I/O error.",
    ["protocol", "reason"],
)
MEMORY_USAGE = Gauge(
    "portask_memory_usage_bytes",
    "Anonymous resident memory of the broker process (mapped segment pages excluded).",
)

STORAGE_SEGMENTS = Gauge("portask_storage_segments", "Segments across all logs.")
STORAGE_BYTES = Gauge("portask_storage_bytes", "Bytes stored across all logs.")
STORAGE_LOGS = Gauge("portask_storage_logs", "Open logs (partitions and queue stores).")
STORAGE_FLUSH_DURATION = Histogram(
    "portask_storage_flush_duration_seconds",
    "Time one log flush (fdatasync of data and index) takes.",
    buckets=FAST_BUCKETS,
)
STORAGE_RETENTION_DELETED_BYTES = Counter(
    "portask_storage_retention_deleted_bytes_total", "Bytes deleted by retention."
)



def _resident_bytes() -> float:
    """Anonymous resident memory: the broker's own heap and buffers.

    Mapped segment files also count towards RSS once read, but those pages are the
    kernel's page cache, shared and reclaimable; counting them would make memory appear
    to grow with every byte consumers read. ``process_resident_memory_bytes`` still
    reports the total.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"RssAnon:"):
                    return float(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


MEMORY_USAGE.set_function(_resident_bytes)


def bind_storage_gauges(
    segments: Callable[[], float], size: Callable[[], float], logs: Callable[[], float]
) -> None:
    """Let the storage gauges read live values from the running broker at scrape time."""
    STORAGE_SEGMENTS.set_function(segments)
    STORAGE_BYTES.set_function(size)
    STORAGE_LOGS.set_function(logs)

# AMQP
AMQP_CHANNELS_ACTIVE = Gauge("portask_amqp_channels_active", "Open AMQP channels.")
AMQP_QUEUE_MESSAGES_READY = Gauge(
    "portask_amqp_queue_messages_ready", "Messages waiting in a queue.", ["vhost", "queue"]
)
AMQP_QUEUE_MESSAGES_UNACKED = Gauge(
    "portask_amqp_queue_messages_unacked",
    "Messages delivered from a queue and not yet acknowledged.",
    ["vhost", "queue"],
)
AMQP_QUEUE_CONSUMERS = Gauge(
    "portask_amqp_queue_consumers", "Consumers attached to a queue.", ["vhost", "queue"]
)
AMQP_MESSAGES_UNROUTABLE = Counter(
    "portask_amqp_messages_unroutable_total",
    "Published messages that matched no queue (returned when mandatory, else dropped).",
    ["vhost", "exchange"],
)
AMQP_MESSAGES_REDELIVERED = Counter(
    "portask_amqp_messages_redelivered_total",
    "Messages delivered again after a reject, nack, recover or a closed channel.",
    ["vhost", "queue"],
)
RESOURCE_ALARM = Gauge(
    "portask_resource_alarm",
    "1 while a resource alarm is set (memory: message content held in memory above "
    "amqp.memory_high_watermark_bytes; disk: free space below amqp.disk_free_limit_bytes); "
    "publishing AMQP connections are blocked meanwhile.",
    ["resource"],
)

# Kafka groups
KAFKA_GROUP_REBALANCES = Counter(
    "portask_kafka_group_rebalances_total",
    "Rebalances of a consumer group that formed a new generation with members.",
    ["group"],
)


class _GroupGauges:
    """Consumer lag and group sizes, read from the live coordinator at scrape time.

    Lag changes with every produce and commit; computing it when Prometheus asks costs
    nothing on those paths, and groups or partitions that are gone simply stop appearing.
    """

    def __init__(self) -> None:
        self.lag: Callable[[], Iterable[tuple[str, str, int, int]]] | None = None
        self.members: Callable[[], Iterable[tuple[str, int]]] | None = None

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration time

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "portask_kafka_consumer_group_lag",
            "High watermark minus the group's committed offset, per partition.",
            labels=["group", "topic", "partition"],
        )
        members = GaugeMetricFamily(
            "portask_kafka_group_members", "Active members of a consumer group.", labels=["group"]
        )
        if self.lag is not None:
            for group, topic, partition, value in self.lag():
                lag.add_metric([group, topic, str(partition)], value)
        if self.members is not None:
            for group, count in self.members():
                members.add_metric([group], count)
        yield lag
        yield members


_GROUP_GAUGES = _GroupGauges()
REGISTRY.register(_GROUP_GAUGES)  # type: ignore[arg-type]


def bind_group_gauges(
    lag: Callable[[], Iterable[tuple[str, str, int, int]]],
    members: Callable[[], Iterable[tuple[str, int]]],
) -> None:
    """Let the group gauges read the running broker's coordinator at scrape time."""
    _GROUP_GAUGES.lag = lag
    _GROUP_GAUGES.members = members


# -- Names existing dashboards read ----------------------------------------------------
#
# RabbitMQ's (rabbitmq_prometheus, aggregated endpoint) for the AMQP side, so that the
# stock "RabbitMQ-Overview" Grafana dashboard works unchanged, and kafka_exporter's for
# the Kafka side. Every value is read from the broker when Prometheus scrapes (the
# broker builds a snapshot; see Broker.amqp_snapshot / kafka_snapshot): nothing here
# runs per message.

# rabbitmq_message_size_bytes' buckets (powers of 4 from 64 B to 256 MiB).
MESSAGE_SIZE_BUCKETS = tuple(64 * 4 ** i for i in range(12))


@dataclass
class AmqpSnapshot:
    node: str
    cluster: str
    version: str
    # (vhost, queue, ready, unacked, consumers)
    queues: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    connections: int = 0
    channels: int = 0
    publishers: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    channels_opened: int = 0
    channels_closed: int = 0
    queues_declared: int = 0
    queues_created: int = 0
    queues_deleted: int = 0
    received: int = 0
    received_confirm: int = 0
    confirmed: int = 0
    unroutable_dropped: int = 0
    unroutable_returned: int = 0
    delivered_consume_auto_ack: int = 0
    delivered_consume_manual_ack: int = 0
    delivered_get_auto_ack: int = 0
    delivered_get_manual_ack: int = 0
    get_empty: int = 0
    redelivered: int = 0
    acknowledged: int = 0
    # Published message counts by (size - 1).bit_length(), and their byte total.
    size_counts: list[int] = field(default_factory=list)
    size_sum: int = 0
    memory_limit: int = 0
    disk_free: int = 0
    disk_free_limit: int = 0


@dataclass
class KafkaSnapshot:
    # (topic, partition, oldest offset, current offset)
    partitions: list[tuple[str, int, int, int]] = field(default_factory=list)
    # (group, topic, partition, committed offset, lag)
    offsets: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    # (group, members)
    members: list[tuple[str, int]] = field(default_factory=list)


def _fds() -> tuple[int, int]:
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = 0
    return open_fds, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _CompatGauges:
    def __init__(self) -> None:
        self.amqp: Callable[[], AmqpSnapshot | None] | None = None
        self.kafka: Callable[[], KafkaSnapshot | None] | None = None
        self.started = time.time()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        amqp = self.amqp() if self.amqp is not None else None
        if amqp is not None:
            yield from self._rabbitmq(amqp)
        kafka = self.kafka() if self.kafka is not None else None
        if kafka is not None:
            yield from self._kafka(kafka)

    def _rabbitmq(self, s: AmqpSnapshot) -> Iterator[Metric]:
        identity = GaugeMetricFamily(
            "rabbitmq_identity_info", "RabbitMQ node & cluster identity info",
            labels=["rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id",
                    "rabbitmq_endpoint"])
        identity.add_metric([s.node, s.cluster, s.cluster, "metrics"], 1)
        yield identity
        build = GaugeMetricFamily(
            "rabbitmq_build_info", "RABBITMQ & Erlang/OTP version info",
            labels=["rabbitmq_version", "prometheus_plugin_version",
                    "prometheus_client_version", "erlang_version", "product_name",
                    "product_version"])
        build.add_metric([s.version, s.version, "", platform.python_version(), "Portask",
                          s.version], 1)
        yield build

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        ready = GaugeMetricFamily("rabbitmq_queue_messages_ready",
                                  "Messages ready to be delivered to consumers",
                                  labels=["vhost", "queue"])
        unacked = GaugeMetricFamily("rabbitmq_queue_messages_unacked",
                                    "Messages delivered to consumers but not yet acknowledged",
                                    labels=["vhost", "queue"])
        consumers = GaugeMetricFamily("rabbitmq_queue_consumers", "Consumers on a queue",
                                      labels=["vhost", "queue"])
        total_consumers = 0
        for vhost, queue, r, u, c in s.queues:
            ready.add_metric([vhost, queue], r)
            unacked.add_metric([vhost, queue], u)
            consumers.add_metric([vhost, queue], c)
            total_consumers += c
        yield ready
        yield unacked
        yield consumers
        yield gauge("rabbitmq_queues", "Queues available", len(s.queues))
        yield gauge("rabbitmq_connections", "Connections currently open", s.connections)
        yield gauge("rabbitmq_channels", "Channels currently open", s.channels)
        yield gauge("rabbitmq_global_consumers", "Current number of consumers",
                    total_consumers)
        yield gauge("rabbitmq_global_publishers", "Current number of publishers",
                    s.publishers)
        yield counter("rabbitmq_connections_opened", "Total number of connections opened",
                      s.connections_opened)
        yield counter("rabbitmq_connections_closed", "Total number of connections closed or "
                      "terminated", s.connections_closed)
        yield counter("rabbitmq_channels_opened", "Total number of channels opened",
                      s.channels_opened)
        yield counter("rabbitmq_channels_closed", "Total number of channels closed",
                      s.channels_closed)
        yield counter("rabbitmq_queues_declared", "Total number of queues declared",
                      s.queues_declared)
        yield counter("rabbitmq_queues_created", "Total number of queues created",
                      s.queues_created)
        yield counter("rabbitmq_queues_deleted", "Total number of queues deleted",
                      s.queues_deleted)
        delivered = (s.delivered_consume_auto_ack + s.delivered_consume_manual_ack
                     + s.delivered_get_auto_ack + s.delivered_get_manual_ack)
        routed = max(s.received - s.unroutable_dropped - s.unroutable_returned, 0)
        for name, doc, value in (
            ("received", "Total number of messages received from publishers", s.received),
            ("received_confirm", "Total number of messages received from publishers "
             "expecting confirmations", s.received_confirm),
            ("routed", "Total number of messages routed to queues or streams", routed),
            ("unroutable_dropped", "Total number of messages published as non-mandatory "
             "into an exchange and dropped as unroutable", s.unroutable_dropped),
            ("unroutable_returned", "Total number of messages published as mandatory into "
             "an exchange and returned to the publisher as unroutable",
             s.unroutable_returned),
            ("confirmed", "Total number of messages confirmed to publishers", s.confirmed),
            ("delivered", "Total number of messages delivered to consumers", delivered),
            ("delivered_consume_manual_ack", "Total number of messages delivered to "
             "consumers using manual acknowledgement mode", s.delivered_consume_manual_ack),
            ("delivered_consume_auto_ack", "Total number of messages delivered to consumers "
             "using automatic acknowledgement mode", s.delivered_consume_auto_ack),
            ("delivered_get_manual_ack", "Total number of messages fetched with basic.get "
             "in manual acknowledgement mode", s.delivered_get_manual_ack),
            ("delivered_get_auto_ack", "Total number of messages fetched with basic.get in "
             "automatic acknowledgement mode", s.delivered_get_auto_ack),
            ("get_empty", "Total number of times basic.get operations fetched no message",
             s.get_empty),
            ("redelivered", "Total number of messages redelivered to consumers",
             s.redelivered),
            ("acknowledged", "Total number of messages acknowledged by consumers",
             s.acknowledged),
        ):
            family = CounterMetricFamily(f"rabbitmq_global_messages_{name}", doc,
                                         labels=["protocol"])
            family.add_metric(["amqp091"], value)
            yield family
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        counts = s.size_counts
        for i, bound in enumerate(MESSAGE_SIZE_BUCKETS):
            exponent = bound.bit_length() - 1
            lower = (MESSAGE_SIZE_BUCKETS[i - 1].bit_length() if i else 0)
            cumulative += sum(counts[lower:exponent + 1])
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", sum(counts)))
        sizes = HistogramMetricFamily("rabbitmq_message_size_bytes",
                                      "Size of messages received from publishers",
                                      labels=["protocol"])
        sizes.add_metric(["amqp091"], buckets, s.size_sum)
        yield sizes
        open_fds, max_fds = _fds()
        yield gauge("rabbitmq_process_open_fds", "Open file descriptors", open_fds)
        yield gauge("rabbitmq_process_max_fds", "Open file descriptors limit", max_fds)
        yield gauge("rabbitmq_process_resident_memory_bytes",
                    "Memory used in bytes (the broker process's resident set)",
                    _rss_bytes())
        yield gauge("rabbitmq_resident_memory_limit_bytes", "Memory high watermark in bytes",
                    s.memory_limit)
        yield gauge("rabbitmq_disk_space_available_bytes", "Disk space available in bytes",
                    s.disk_free)
        yield gauge("rabbitmq_disk_space_available_limit_bytes",
                    "Free disk space low watermark in bytes", s.disk_free_limit)
        yield gauge("rabbitmq_erlang_uptime_seconds",
                    "Node uptime (the broker process's, in seconds)",
                    time.time() - self.started)

    def _kafka(self, s: KafkaSnapshot) -> Iterator[Metric]:
        partition_labels = ["topic", "partition"]
        current = GaugeMetricFamily("kafka_topic_partition_current_offset",
                                    "Current Offset of a Broker at Topic/Partition",
                                    labels=partition_labels)
        oldest = GaugeMetricFamily("kafka_topic_partition_oldest_offset",
                                   "Oldest Offset of a Broker at Topic/Partition",
                                   labels=partition_labels)
        leader = GaugeMetricFamily("kafka_topic_partition_leader",
                                   "Leader Broker ID of this Topic/Partition",
                                   labels=partition_labels)
        replicas = GaugeMetricFamily("kafka_topic_partition_replicas",
                                     "Number of Replicas for this Topic/Partition",
                                     labels=partition_labels)
        in_sync = GaugeMetricFamily("kafka_topic_partition_in_sync_replica",
                                    "Number of In-Sync Replicas for this Topic/Partition",
                                    labels=partition_labels)
        preferred = GaugeMetricFamily("kafka_topic_partition_leader_is_preferred",
                                      "1 if Topic/Partition is using the Preferred Broker",
                                      labels=partition_labels)
        under = GaugeMetricFamily("kafka_topic_partition_under_replicated_partition",
                                  "1 if Topic/Partition is under Replicated",
                                  labels=partition_labels)
        counts = GaugeMetricFamily("kafka_topic_partitions", "Number of partitions for this "
                                   "Topic", labels=["topic"])
        per_topic: dict[str, int] = {}
        for topic, index, start, end in s.partitions:
            labels = [topic, str(index)]
            current.add_metric(labels, end)
            oldest.add_metric(labels, start)
            leader.add_metric(labels, 0)  # one node, id 0, leads every partition
            replicas.add_metric(labels, 1)
            in_sync.add_metric(labels, 1)
            preferred.add_metric(labels, 1)
            under.add_metric(labels, 0)
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, count in per_topic.items():
            counts.add_metric([topic], count)
        yield GaugeMetricFamily("kafka_brokers", "Number of Brokers in the Kafka Cluster.",
                                value=1)
        yield from (counts, current, oldest, leader, replicas, in_sync, preferred, under)
        group_labels = ["consumergroup", "topic", "partition"]
        offset = GaugeMetricFamily("kafka_consumergroup_current_offset",
                                   "Current Offset of a ConsumerGroup at Topic/Partition",
                                   labels=group_labels)
        lag = GaugeMetricFamily("kafka_consumergroup_lag",
                                "Current Approximate Lag of a ConsumerGroup at "
                                "Topic/Partition", labels=group_labels)
        offset_sum = GaugeMetricFamily("kafka_consumergroup_current_offset_sum",
                                       "Current Offset of a ConsumerGroup at Topic for all "
                                       "partitions", labels=["consumergroup", "topic"])
        lag_sum = GaugeMetricFamily("kafka_consumergroup_lag_sum",
                                    "Current Approximate Lag of a ConsumerGroup at Topic for "
                                    "all partitions", labels=["consumergroup", "topic"])
        sums: dict[tuple[str, str], list[int]] = {}
        for group, topic, index, committed, behind in s.offsets:
            offset.add_metric([group, topic, str(index)], committed)
            lag.add_metric([group, topic, str(index)], behind)
            total = sums.setdefault((group, topic), [0, 0])
            total[0] += committed
            total[1] += behind
        for (group, topic), (committed, behind) in sums.items():
            offset_sum.add_metric([group, topic], committed)
            lag_sum.add_metric([group, topic], behind)
        members = GaugeMetricFamily("kafka_consumergroup_members",
                                    "Amount of members in a consumer group",
                                    labels=["consumergroup"])
        for group, count in s.members:
            members.add_metric([group], count)
        yield from (offset, lag, offset_sum, lag_sum, members)


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return 0.0


_COMPAT_GAUGES = _CompatGauges()
REGISTRY.register(_COMPAT_GAUGES)  # type: ignore[arg-type]


def bind_compat_gauges(amqp: Callable[[], AmqpSnapshot | None],
                       kafka: Callable[[], KafkaSnapshot | None]) -> None:
    """Let the RabbitMQ- and kafka_exporter-named gauges read the broker at scrape time."""
    _COMPAT_GAUGES.amqp = amqp
    _COMPAT_GAUGES.kafka = kafka
