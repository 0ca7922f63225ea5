"""The protocol-neutral broker: what both listeners share.

It holds the durable definitions and the logs; the Kafka and AMQP modules call into
it and never touch storage directly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from portask.broker.alarms import Alarms
from portask.broker.clients import Clients
from portask.broker.groups import Groups
from portask.broker.metadata import CLUSTER, Definitions
from portask.broker.producers import ProducerIds
from portask.broker.topics import Topics
from portask.broker.transactions import TransactionCoordinator
from portask.config import Settings
from portask.storage.directory import LogDirectory
from portask.storage.log import LogConfig

if TYPE_CHECKING:
    from portask.broker.vhosts import VirtualHosts

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
        # Connected clients (both protocols register theirs), for the management API.
        self.clients = Clients()
        # Memory and disk alarms; the AMQP server blocks publishers while one is set.
        self.alarms = Alarms(
            memory_watermark=int(settings.amqp.memory_high_watermark_bytes),
            disk_free_limit=int(settings.amqp.disk_free_limit_bytes),
            data_dir=data_dir,
        )

    def open(self) -> Broker:
        self.definitions.open()
        self.cluster_id = self._cluster_id()
        self.producer_ids = ProducerIds(self.definitions)
        self.transactions = TransactionCoordinator(self.definitions, self.producer_ids)
        self.topics.load()
        self.groups = Groups(self.settings, self.definitions, self.topics)
        return self

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
