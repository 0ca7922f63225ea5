"""Resource alarms, as RabbitMQ raises them: memory above a watermark, disk space low.

Protocol-neutral: an ``Alarms`` object holds the set of resources in alarm and tells
its listeners whenever that set changes. The AMQP listener turns a non-empty set into
back-pressure (publishing connections stop being read, Connection.Blocked) and an
empty one into Connection.Unblocked.

Memory (``MemoryUse``): the bytes of message content (content-header properties plus
body) that queue stores hold in Python memory, i.e. the ready and unacked messages of
non-durable and exclusive queues. A message routed to several such queues is one
object and is counted once (``Message.held`` counts its holders). Whatever lives in a
segment log (every durable queue, transient messages on it included, and streams) is
on disk and does not count. Stores only add and subtract integers on the hot path; an
add that takes the count over the watermark sets the alarm at once (the publish that
crossed it is the last one read), and the alarm clears at the end of the event-loop
turn in which the count fell back to or below the watermark, so a batch of acks flips
it once.

Disk: the free space of the data directory's filesystem (``os.statvfs``, blocks
available to unprivileged users) below the limit sets the alarm; it is checked at
start, then every ``DISK_CHECK_INTERVAL_S``, and at once when a queue's write fails
for lack of space (``QueueStorage.on_disk_full``): a publisher fast enough to fill
the disk between two checks is then blocked at its next publish, not nacked until
the next check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from portask import metrics

log = logging.getLogger("portask.broker")

MEMORY = "memory"
DISK = "disk"
RESOURCES = (MEMORY, DISK)

# A constant, not a setting: statvfs costs microseconds, so checking every second costs
# nothing worth tuning, and one second bounds how much a fast publisher can write
# (tens of MB at the measured rates) before the alarm stops it.
DISK_CHECK_INTERVAL_S = 1.0

# (resources now in alarm) -> None
AlarmListener = Callable[[frozenset[str]], None]


class MemoryUse:
    """Message content bytes held in memory, against the high watermark.

    Stores update ``bytes`` inline and call ``exceeded`` / ``fell`` only when a change
    crosses the watermark; a watermark of 0 turns the alarm off.
    """

    __slots__ = ("_alarms", "_check_scheduled", "alarmed", "bytes", "limit")

    def __init__(self, watermark: int, alarms: Alarms | None = None) -> None:
        self.bytes = 0
        # "Never" as a number, so the store's one comparison needs no special case.
        self.limit = watermark if watermark > 0 else sys.maxsize
        self.alarmed = False
        self._alarms = alarms
        self._check_scheduled = False

    def exceeded(self) -> None:
        """An add took ``bytes`` above the limit."""
        if self.alarmed:
            return
        self.alarmed = True
        if self._alarms is not None:
            self._alarms.set(MEMORY, used=self.bytes, watermark=self.limit)

    def fell(self) -> None:
        """A subtract took ``bytes`` to or below the limit while in alarm."""
        if self._check_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._check()
            return
        self._check_scheduled = True
        loop.call_soon(self._check)

    def _check(self) -> None:
        self._check_scheduled = False
        if self.alarmed and self.bytes <= self.limit:
            self.alarmed = False
            if self._alarms is not None:
                self._alarms.clear(MEMORY, used=self.bytes, watermark=self.limit)


# Stores made without a broker (unit tests, a server without storage) count here.
UNMETERED = MemoryUse(0)


class Alarms:
    def __init__(self, *, memory_watermark: int, disk_free_limit: int, data_dir: Path) -> None:
        self.memory = MemoryUse(memory_watermark, self)
        self.disk_free_limit = disk_free_limit
        self.data_dir = data_dir
        self.active: set[str] = set()
        # Alarms raised through the control API: the periodic checks leave them set.
        self.forced: set[str] = set()
        self._listeners: list[AlarmListener] = []
        self._timer: asyncio.TimerHandle | None = None
        self._disk_unknown = False
        for resource in RESOURCES:
            metrics.RESOURCE_ALARM.labels(resource).set(0)

    def subscribe(self, listener: AlarmListener) -> None:
        self._listeners.append(listener)

    def set(self, resource: str, **fields: int) -> None:
        if resource in self.active:
            return
        self.active.add(resource)
        log.warning("resource alarm set: publishing connections are blocked",
                    extra={"fields": {"resource": resource, **fields}})
        self._changed(resource, 1)

    def clear(self, resource: str, **fields: int) -> None:
        if resource not in self.active or resource in self.forced:
            return
        self.active.discard(resource)
        log.warning("resource alarm cleared",
                    extra={"fields": {"resource": resource, **fields}})
        self._changed(resource, 0)

    def _changed(self, resource: str, value: int) -> None:
        metrics.RESOURCE_ALARM.labels(resource).set(value)
        active = frozenset(self.active)
        for listener in list(self._listeners):
            listener(active)

    # -- disk --------------------------------------------------------------------------

    def start(self) -> None:
        """Check the disk now (an alarm may be due from the start) and every interval."""
        if not self.disk_free_limit:
            return
        self.check_disk()
        self._timer = asyncio.get_running_loop().call_later(DISK_CHECK_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        self.check_disk()
        self._timer = asyncio.get_running_loop().call_later(DISK_CHECK_INTERVAL_S, self._tick)

    def check_disk(self) -> None:
        try:
            st = os.statvfs(self.data_dir)
        except OSError as exc:
            # Not knowing is not an alarm: keep the last state, and say so once.
            if not self._disk_unknown:
                self._disk_unknown = True
                log.error("cannot read free disk space", extra={"fields": {
                    "data_dir": str(self.data_dir), "error": str(exc)}})
            return
        self._disk_unknown = False
        free = st.f_bavail * st.f_frsize
        if free < self.disk_free_limit:
            self.set(DISK, free=free, limit=self.disk_free_limit)
        else:
            self.clear(DISK, free=free, limit=self.disk_free_limit)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._listeners.clear()
