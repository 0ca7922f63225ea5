"""Every Prometheus metric Portask exports, defined once.

Names follow the performance guide (``shared/reference/portask-performance-guide.md``).
Protocol code and the broker core import the objects from here; nothing else
creates metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

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
    import resource

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
