"""The protocol-neutral broker: what both listeners share.

It holds the durable definitions and the logs; the Kafka and AMQP modules call into
it and never touch storage directly.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from portask.broker.metadata import CLUSTER, Definitions
from portask.broker.producers import ProducerIds
from portask.broker.topics import Topics
from portask.config import Settings
from portask.storage.directory import LogDirectory
from portask.storage.log import LogConfig


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

    def open(self) -> Broker:
        self.definitions.open()
        self.cluster_id = self._cluster_id()
        self.producer_ids = ProducerIds(self.definitions)
        self.topics.load()
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

    async def close(self) -> None:
        await self.logs.close()
        self.definitions.close()
