"""The protocol-neutral broker: what both listeners share.

It holds the durable definitions and the logs; the Kafka and AMQP modules call into
it and never touch storage directly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import platform
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from portask import metrics
from portask.broker.alarms import Alarms
from portask.broker.clients import Clients
from portask.broker.control import Control
from portask.broker.definitions import CLUSTER, Definitions
from portask.broker.kafka.acls import Acls
from portask.broker.kafka.groups import Groups
from portask.broker.kafka.producers import ProducerIds
from portask.broker.kafka.topics import Topics
from portask.broker.kafka.transactions import TransactionCoordinator
from portask.broker.snapshots import Snapshots
from portask.config import Settings
from portask.storage.directory import LogDirectory
from portask.storage.log import LogConfig

if TYPE_CHECKING:
    from portask.broker.amqp.vhosts import VirtualHosts
    from portask.broker.user_store import UserStore

log = logging.getLogger("portask.broker")


def log_config(settings: Settings) -> LogConfig:
    s = settings.storage
    return LogConfig(
        segment_bytes=int(s.segment_bytes),
        segment_ms=None if s.segment_ms is None else int(s.segment_ms),
        index_interval_bytes=int(s.index_interval_bytes),
        index_max_bytes=int(s.index_max_bytes),
        retention_ms=None if s.retention_ms is None else int(s.retention_ms),
        retention_bytes=None if s.retention_bytes is None else int(s.retention_bytes),
        flush_messages=s.flush_messages,
        flush_ms=None if s.flush_ms is None else int(s.flush_ms),
        fsync_always=s.fsync == "always",
        preallocate=s.preallocate,
    )


class Broker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data_dir = Path(settings.server.data_dir)
        self.definitions = Definitions(data_dir)
        self.logs = LogDirectory(
            data_dir / "logs",
            log_config(settings),
            flush_ms=None if settings.storage.flush_ms is None else int(settings.storage.flush_ms),
            retention_check_ms=int(settings.storage.retention_check_ms),
        )

        self.topics = Topics(settings, self.definitions, self.logs)
        self.cluster_id = ""
        self._compaction: asyncio.Task[None] | None = None
        # AMQP vhosts, exchanges and queues; set by the AMQP server, which restores them.
        self.amqp: VirtualHosts | None = None
        # The one user store of every protocol; built by the composition root (app.py).
        self.users: UserStore | None = None
        # Connected clients (both protocols register theirs), for the management API.
        self.clients = Clients()
        # Memory and disk alarms; the AMQP server blocks publishers while one is set.
        self.alarms = Alarms(
            memory_watermark=int(settings.amqp.memory_high_watermark_bytes),
            disk_free_limit=int(settings.amqp.disk_free_limit_bytes),
            data_dir=data_dir,
        )
        # Reset, faults and forced alarms for tests (the control API, /_portask/).
        self.control = Control(self, settings.http.control_request_log_size)
        # Named snapshots a test suite restores before each test (the control API).
        self.snapshots = Snapshots(self)

    def open(self) -> Broker:
        self.definitions.open()
        self.cluster_id = self._cluster_id()
        self.producer_ids = ProducerIds(self.definitions)
        self.transactions = TransactionCoordinator(self.definitions, self.producer_ids)
        self.topics.load()
        self.groups = Groups(self.settings, self.definitions, self.topics)
        # Kafka's ACLs: the authorizer's, and what the topics file and its export share.
        self.kafka_acls = Acls(self.definitions)
        return self

    # -- snapshots for the dashboard-compatible metrics (read at scrape time) -----------

    def amqp_snapshot(self) -> metrics.AmqpSnapshot | None:
        amqp = self.amqp
        if amqp is None:
            return None
        node = "portask@" + platform.node()
        s = metrics.AmqpSnapshot(node=node, cluster=node, version="3.10.8")
        clients = self.clients
        views = list(clients.views())
        s.connections = len(views)
        s.channels = sum(len(v.channels) for v in views)
        s.publishers = sum(1 for v in views for ch in v.channels if ch.publisher)
        s.connections_opened, s.connections_closed = (clients.connections_opened,
                                                      clients.connections_closed)
        s.channels_opened, s.channels_closed = clients.channels_opened, clients.channels_closed
        sizes = [0] * 64
        for vhost in amqp:
            for queue in list(vhost.queues.values()):
                s.queues.append((vhost.name, queue.name, queue.message_count, queue.unacked,
                                 queue.consumer_count))
            t = vhost.totals()
            s.queues_declared += vhost.queues_declared
            s.queues_created += vhost.queues_created
            s.queues_deleted += vhost.queues_deleted
            s.received += vhost.published()
            s.received_confirm += vhost.received_confirm
            s.confirmed += vhost.confirmed
            s.unroutable_returned += vhost.returned
            s.unroutable_dropped += vhost.unroutable - vhost.returned
            s.delivered_consume_auto_ack += t.deliver_no_ack
            s.delivered_consume_manual_ack += t.deliver - t.deliver_no_ack
            s.delivered_get_auto_ack += t.get_no_ack
            s.delivered_get_manual_ack += t.get - t.get_no_ack
            s.get_empty += t.get_empty
            s.redelivered += t.redeliver
            s.acknowledged += t.ack
            for i, count in enumerate(vhost.size_counts):
                sizes[i] += count
            s.size_sum += vhost.published_bytes()
        s.size_counts = sizes
        s.memory_limit = int(self.settings.amqp.memory_high_watermark_bytes)
        s.disk_free_limit = int(self.settings.amqp.disk_free_limit_bytes)
        try:
            st = os.statvfs(self.settings.server.data_dir)
            s.disk_free = st.f_bavail * st.f_frsize
        except OSError:
            s.disk_free = 0
        return s

    def kafka_snapshot(self) -> metrics.KafkaSnapshot:
        s = metrics.KafkaSnapshot()
        for topic in list(self.topics):
            for partition in list(topic.partitions):
                s.partitions.append((topic.name, partition.index, partition.log_start_offset,
                                     partition.high_watermark))
        groups = getattr(self, "groups", None)
        if groups is not None:
            s.offsets = list(groups.offsets())
            s.members = list(groups.member_counts())
        return s

    def _cluster_id(self) -> str:
        """Kafka-style id (22 chars of url-safe base64 of a UUID), made once per data dir."""
        existing = self.definitions.get(CLUSTER, "id")
        if existing is None:
            existing = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.definitions.put(CLUSTER, "id", existing)
        return str(existing)

    def start(self) -> None:
        self.logs.start()
        self.alarms.start()
        self._compaction = asyncio.create_task(self._compact_periodically())

    async def _compact_periodically(self) -> None:
        interval = int(self.settings.storage.retention_check_ms) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self.topics.compact_all()
            except Exception:
                # One bad partition must not stop compaction of the rest next time.
                log.exception("compaction pass failed")

    async def close(self) -> None:
        self.alarms.close()
        if self._compaction is not None:
            self._compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compaction
        if self.amqp is not None:
            self.amqp.close()
        await self.logs.close()
        self.definitions.close()
