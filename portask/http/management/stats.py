"""message_stats and their ``_details.rate``, as RabbitMQ's management API reports them.

Counters are lifetime totals read from the broker (``vhosts.QueueTotals``). Rates need
history: every ``SAMPLE_S`` seconds (RabbitMQ's default collect_statistics_interval)
the totals of each object are recorded; a rate is the change since the newest record
at least ``MIN_SPAN_S`` old, per second. Nothing is recorded per message, and the
records go away with their objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

SAMPLE_S = 5.0
MIN_SPAN_S = 1.0

Key = tuple[str, ...]
Sample = dict[str, float]


class Rates:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[Key, tuple[float, Sample]] = {}
        self._before: dict[Key, tuple[float, Sample]] = {}
        # Wall-clock time since which an object's counters have not moved.
        self._idle: dict[Key, float] = {}

    def record(self, samples: Iterable[tuple[Key, Sample]]) -> None:
        now = self.clock()
        wall = time.time()
        previous = self._last
        self._before = previous
        self._last = {key: (now, dict(values)) for key, values in samples}
        idle: dict[Key, float] = {}
        for key, (_t, values) in self._last.items():
            before = previous.get(key)
            if before is not None and before[1] == values:
                idle[key] = self._idle.get(key, wall - (now - before[0]))
        self._idle = idle

    def idle_since(self, key: Key) -> str | None:
        """RabbitMQ's idle_since format (UTC), or None while the object is active."""
        since = self._idle.get(key)
        if since is None:
            return None
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since))

    def rate(self, key: Key, name: str, value: float) -> float:
        now = self.clock()
        last, before = self._last.get(key), self._before.get(key)
        # The newest record at least MIN_SPAN_S old; a newer one only when the object
        # is younger than the record before it.
        found = last if last is not None and (now - last[0] >= MIN_SPAN_S
                                              or before is None) else before
        if found is None or name not in found[1] or now <= found[0]:
            return 0.0
        return round((value - found[1][name]) / (now - found[0]), 1)

    def detailed(self, key: Key, values: Sample, into: dict[str, Any] | None = None,
                 now: float | None = None) -> dict[str, Any]:
        """``{name: value, name_details: {"rate": r}}`` for every counter.

        ``into`` receives the fields (a list builds each item once, without merging
        dicts); ``now`` lets a list read the clock once for all its items.
        """
        out: dict[str, Any] = {} if into is None else into
        names = _DETAIL_NAMES
        if now is None:
            now = self.clock()
        last, before = self._last.get(key), self._before.get(key)
        found = last if last is not None and (now - last[0] >= MIN_SPAN_S
                                              or before is None) else before
        if found is None or now <= found[0]:
            for name, value in values.items():
                out[name] = value
                out[names.get(name) or _details(name)] = _ZERO_RATE
            return out
        span = now - found[0]
        sampled = found[1]
        for name, value in values.items():
            out[name] = value
            old = sampled.get(name)
            # Most objects are idle between samples: their rate is exactly 0.0, and the
            # shared object spares a thousand-queue list a thousand small dicts.
            out[names.get(name) or _details(name)] = (
                _ZERO_RATE if old is None or old == value
                else {"rate": round((value - old) / span, 1)})
        return out


# Read-only by contract: answers are encoded, never mutated, after they are built.
_ZERO_RATE: dict[str, float] = {"rate": 0.0}
_DETAIL_NAMES: dict[str, str] = {}


def _details(name: str) -> str:
    found = _DETAIL_NAMES[name] = name + "_details"
    return found
