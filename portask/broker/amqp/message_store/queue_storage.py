"""QueueStorage: opens and removes the logs of durable queues and streams, and runs the
commit point for every lane (see ``message_store/__init__.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from portask.broker.amqp.message_store.log_store import LogStore
from portask.broker.amqp.message_store.message import Publisher
from portask.broker.log.record_log import RecordLog, StoredFormat
from portask.storage.log import Log, LogConfig, StorageError

if TYPE_CHECKING:
    from portask.storage.directory import LogDirectory

log = logging.getLogger("portask.amqp")

# Write errors that mean "no space": they also run the disk alarm's check at once.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_FAILURE_LOG_INTERVAL_S = 60.0
_LANE_MESSAGES = "m"
_LANE_ACKS = "a"


def _path_part(name: str) -> str:
    """A name as one safe directory name: quoted, dots too, hashed when very long."""
    quoted = quote(name, safe="").replace(".", "%2E") or "%00"
    if len(quoted) > 180:
        digest = hashlib.sha1(name.encode()).hexdigest()
        quoted = quoted[:120] + "~" + digest
    return quoted


class PendingWrites(Protocol):
    """Writes held until the commit point: a queue lane's, or the records published to
    a Kafka topic's stream (one batch per partition per commit point)."""

    name: str

    def commit(self) -> None: ...


class QueueStorage:
    """Opens and removes queue logs, and runs the commit point for every lane."""

    def __init__(self, logs: LogDirectory, *, fsync_always: bool, segment_bytes: int,
                 on_disk_full: Callable[[], None] | None = None) -> None:
        """``on_disk_full`` runs when a write fails for lack of space (the disk alarm's
        check, so that it need not wait for its next tick)."""
        self.logs = logs
        self.fsync_always = fsync_always
        self.segment_bytes = segment_bytes
        self.on_disk_full = on_disk_full
        self._dirty: list[PendingWrites] = []
        # Stream logs appended to since the last commit point (queue lanes sync their own).
        self._appended: dict[int, Log] = {}
        self._scheduled = False
        # Lanes whose ack record could not be written: retried at every commit point
        # (and at shutdown) until it is, even if nothing else happens on them.
        self._retrying: list[LogStore] = []
        self.failures = 0
        # What failed -> (when its failure was last logged, whether one since was not).
        self._failure_logged: dict[str, tuple[float, bool]] = {}
        # Set by the vhost at each publish: whom a failed write of it nacks. Anything
        # enqueued outside a publish (dead letters) runs with it cleared.
        self.publisher: Publisher | None = None
        # The vhost whose every queue a reset is removing, and their directories.
        self._removing: str | None = None
        self._removed_dirs: list[str] = []

    # -- names ---------------------------------------------------------------------------

    @staticmethod
    def queue_dir(vhost: str, queue: str) -> str:
        return f"amqp/{_path_part(vhost)}/{_path_part(queue)}"

    def _config(self, *, segment_bytes: int, retention_ms: int | None = None,
                retention_bytes: int | None = None) -> LogConfig:
        base = self.logs.config
        return LogConfig(
            segment_bytes=segment_bytes,
            segment_ms=None,
            index_interval_bytes=base.index_interval_bytes,
            # 16 bytes per index entry, one entry per index_interval_bytes of data.
            index_max_bytes=min(base.index_max_bytes,
                                segment_bytes // base.index_interval_bytes * 16 + 4096),
            retention_ms=retention_ms,
            retention_bytes=retention_bytes,
            flush_messages=base.flush_messages,
            flush_ms=base.flush_ms,
            # The commit point fsyncs once per batch; per-append fsync would be per message.
            fsync_always=False,
            preallocate=base.preallocate,
        )

    def lanes(self, vhost: str, queue: str) -> list[int]:
        """Priority levels that have a lane on disk for this queue."""
        directory = self.logs.root / self.queue_dir(vhost, queue)
        if not directory.is_dir():
            return []
        found = []
        for entry in directory.iterdir():
            name = entry.name
            if name.startswith(_LANE_MESSAGES) and name[1:].isdigit():
                found.append(int(name[1:]))
        return sorted(found)

    def open_lane(self, vhost: str, queue: str, level: int) -> LogStore:
        base = self.queue_dir(vhost, queue)
        messages = self.logs.open_log(f"{base}/{_LANE_MESSAGES}{level}",
                                      self._config(segment_bytes=self.segment_bytes))
        acks = self.logs.open_log(f"{base}/{_LANE_ACKS}{level}",
                                  self._config(segment_bytes=1 << 20))
        return LogStore(self, messages, acks, f"{vhost}/{queue}/{level}")

    def open_stream(self, vhost: str, queue: str, *, segment_bytes: int | None,
                    max_age_ms: int | None, max_bytes: int | None) -> RecordLog:
        return RecordLog(self.logs.open_log(
            f"{self.queue_dir(vhost, queue)}/stream",
            self._config(segment_bytes=segment_bytes or self.segment_bytes,
                         retention_ms=max_age_ms, retention_bytes=max_bytes),
        ), StoredFormat.AMQP_MESSAGE)

    def remove_queue(self, vhost: str, queue: str) -> None:
        """Close a deleted queue's logs and remove its directory."""
        base = self.queue_dir(vhost, queue)
        for name in [n for n in self.logs.logs if n.startswith(base + "/")]:
            self.logs.discard_log(name)
        prefix = f"{vhost}/{queue}/"
        self._dirty = [s for s in self._dirty if not s.name.startswith(prefix)]
        self._retrying = [s for s in self._retrying if not s.name.startswith(prefix)]
        if self._removing == vhost:
            self._removed_dirs.append(base)
        else:
            self.logs.remove_dir(base)

    @contextlib.contextmanager
    def removing_vhost(self, vhost: str) -> Iterator[None]:
        """Every queue of ``vhost`` is being removed (a reset): the vhost's directory goes
        to the trash in one rename at the end, not one per queue (a reset of 50 durable
        queues spent most of its time renaming)."""
        self._removing = vhost
        try:
            yield
        finally:
            self._removing = None
            dirs, self._removed_dirs = self._removed_dirs, []
            root = f"amqp/{_path_part(vhost)}"
            if any(name.startswith(root + "/") for name in self.logs.logs):
                for base in dirs:  # something under it still lives: one by one
                    self.logs.remove_dir(base)
            elif dirs:
                self.logs.remove_dir(root)

    def collect_garbage(self, keep: set[tuple[str, str]]) -> int:
        """Remove queue directories no durable queue owns (a crash mid-delete)."""
        root = self.logs.root / "amqp"
        if not root.is_dir():
            return 0
        wanted = {self.queue_dir(v, q) for v, q in keep}
        removed = 0
        for vhost_dir in root.iterdir():
            if not vhost_dir.is_dir():
                continue
            for queue_dir in vhost_dir.iterdir():
                if f"amqp/{vhost_dir.name}/{queue_dir.name}" not in wanted:
                    shutil.rmtree(queue_dir, ignore_errors=True)
                    removed += 1
        return removed

    @property
    def root(self) -> Path:
        return self.logs.root

    # -- commit point --------------------------------------------------------------------

    def dirty(self, store: PendingWrites) -> None:
        self._dirty.append(store)
        if not self._scheduled:
            # Work created outside a connection's read (timers, dead-lettering) still
            # reaches the disk within this loop turn.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._scheduled = True
            loop.call_soon(self._scheduled_commit)

    def appended(self, messages: Log) -> None:
        self._appended[id(messages)] = messages

    def _scheduled_commit(self) -> None:
        self._scheduled = False
        self.commit()

    def commit(self) -> bool:
        """Make everything published so far durable per the flush policy.

        A queue lane whose write fails tells the publishers concerned itself (see
        ``Publisher``). False when a stream log's fsync failed: the caller nacks the
        publishes it has not confirmed.
        """
        ok = True
        dirty = self._dirty
        if self._retrying:
            retrying, self._retrying = self._retrying, []
            dirty = dirty + [store for store in retrying if store not in dirty]
        if dirty:
            self._dirty = []
            for store in dirty:
                store.commit()
        if self._appended:
            appended, self._appended = self._appended, {}
            if self.fsync_always:
                for opened in appended.values():
                    try:
                        opened.flush()
                    except (OSError, StorageError) as exc:
                        log.error("fsync of %s failed: %s", opened.directory, exc)
                        ok = False
        if not ok:
            self.failures += 1
        return ok

    def write_failed(self, store: LogStore, exc: BaseException, first: bool) -> None:
        """A lane's write failed (``first``: the one before it had succeeded)."""
        self.failures += 1
        if first and self.failure_to_log(store.name):
            log.error("queue cannot write its log: the publishes it carried are nacked; "
                      "later ones are tried again", extra={"fields": {
                          "queue": store.name, "error": str(exc)}})
        if (isinstance(exc, OSError) and exc.errno in _NO_SPACE
                and self.on_disk_full is not None):
            self.on_disk_full()

    def writes_again(self, store: LogStore) -> None:
        if self.recovery_to_log(store.name):
            log.warning("queue writes its log again", extra={"fields": {
                "queue": store.name}})

    def failure_to_log(self, key: str) -> bool:
        """Whether to log the start of a failure episode of ``key``.

        One line per episode, and for a disk that hovers at full (a small write fits,
        the next does not) at most one per interval.
        """
        now = time.monotonic()
        logged = self._failure_logged.get(key)
        if logged is None or now - logged[0] >= _FAILURE_LOG_INTERVAL_S:
            self._failure_logged[key] = (now, False)
            return True
        self._failure_logged[key] = (logged[0], True)
        return False

    def recovery_to_log(self, key: str) -> bool:
        """Whether to log the end of a failure episode: if its start was logged."""
        logged = self._failure_logged.get(key)
        return logged is not None and not logged[1]

    def retry_settlements(self, store: LogStore) -> None:
        if store not in self._retrying:
            self._retrying.append(store)

    @property
    def pending(self) -> bool:
        return bool(self._dirty or self._appended)
