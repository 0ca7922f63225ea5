"""A channel's deliveries awaiting settlement, kept as runs of consecutive tags.

Delivery tags grow by one per delivery, and a consumer's deliveries from one queue come
in long unbroken stretches that a multiple-ack settles from the front. So the tags are
not keys here: a run holds the first tag, the queue, the consumer (None for Basic.Get)
and the refs in tag order, and a delivery appends its ref to the last run when it
continues it. A multiple-ack takes slices of runs; a single ack or nack in the middle of
a run marks its slot settled. What comes out is grouped as the channel settles it:
(queue, consumer, refs), in tag order.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

# A slot whose delivery was settled on its own, inside a run others still hold.
_SETTLED: Any = object()
# A run drops the slots it has handed out once they are this many and half of it.
_COMPACT_AT = 64


class _Run:
    __slots__ = ("consumer", "first", "live", "low", "queue", "refs")

    def __init__(self, first: int, queue: Any, consumer: Any, refs: list[Any]) -> None:
        self.first = first  # the tag of refs[0]
        self.queue = queue
        self.consumer = consumer
        self.refs = refs
        self.low = 0  # refs before this index are handed out
        self.live = len(refs)  # refs from low on not yet settled

    def end(self) -> int:
        """The tag after this run's last."""
        return self.first + len(self.refs)

    def take(self, upto: int) -> list[Any]:
        """The unsettled refs from ``low`` up to index ``upto`` (excluded), handed out."""
        refs = self.refs
        taken = refs[self.low:upto]
        self.low = upto
        if _SETTLED in taken:
            taken = [ref for ref in taken if ref is not _SETTLED]
        self.live -= len(taken)
        self.compact()
        return taken

    def stretches(self) -> list[_Run]:
        """This run's unsettled refs from ``low`` on as runs of consecutive tags."""
        refs = self.refs
        pieces: list[_Run] = []
        start = -1
        for at in range(self.low, len(refs) + 1):
            settled = at == len(refs) or refs[at] is _SETTLED
            if settled and start >= 0:
                pieces.append(_Run(self.first + start, self.queue, self.consumer,
                                   refs[start:at]))
                start = -1
            elif not settled and start < 0:
                start = at
        return pieces

    def compact(self) -> None:
        """Drop the refs handed out once they are many and half of the run."""
        low = self.low
        if low >= _COMPACT_AT and low * 2 >= len(self.refs):
            del self.refs[:low]
            self.first += low
            self.low = 0


Group = tuple[Any, Any, list[Any]]  # (queue, consumer or None, refs in tag order)


class Unacked:
    __slots__ = ("_runs", "count")

    def __init__(self) -> None:
        self._runs: list[_Run] = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, tag: int, queue: Any, ref: Any, consumer: Any) -> None:
        self.count += 1
        runs = self._runs
        if runs:
            last = runs[-1]
            if last.queue is queue and last.consumer is consumer and last.end() == tag:
                last.refs.append(ref)
                last.live += 1
                return
        runs.append(_Run(tag, queue, consumer, [ref]))

    def add_many(self, first: int, queue: Any, consumer: Any, refs: list[Any]) -> None:
        """Deliveries ``first``, ``first + 1``, ... of ``refs`` (the list is kept)."""
        self.count += len(refs)
        runs = self._runs
        if runs:
            last = runs[-1]
            if last.queue is queue and last.consumer is consumer and last.end() == first:
                last.refs += refs
                last.live += len(refs)
                return
        runs.append(_Run(first, queue, consumer, refs))

    def _find(self, tag: int) -> int:
        """The index of the run holding ``tag`` unsettled, or -1."""
        runs = self._runs
        i = bisect_right(runs, tag, key=_first) - 1
        if i < 0:
            return -1
        run = runs[i]
        at = tag - run.first
        if at < run.low or at >= len(run.refs) or run.refs[at] is _SETTLED:
            return -1
        return i

    def __contains__(self, tag: int) -> bool:
        return self._find(tag) >= 0

    def take_one(self, tag: int) -> Group | None:
        i = self._find(tag)
        if i < 0:
            return None
        run = self._runs[i]
        refs = run.refs
        at = tag - run.first
        ref = refs[at]
        refs[at] = _SETTLED
        run.live -= 1
        self.count -= 1
        if not run.live:
            del self._runs[i]
        elif at == run.low:  # acks one at a time, in order: the front moves on
            low = at + 1
            while refs[low] is _SETTLED:
                low += 1
            run.low = low
            run.compact()
        elif len(refs) - run.low >= _COMPACT_AT and run.live * 2 < len(refs) - run.low:
            # Settled behind a delivery still held (a slow or stuck one): the slots
            # would grow with every delivery after it. Split into the stretches still
            # unsettled, once they are under half of the run.
            self._runs[i:i + 1] = run.stretches()
        return run.queue, run.consumer, [ref]

    def take_through(self, tag: int) -> list[Group]:
        """Every unsettled delivery with a tag up to ``tag`` (a multiple-ack's)."""
        runs = self._runs
        groups: list[Group] = []
        while runs and runs[0].first + runs[0].low <= tag:
            run = runs[0]
            end = run.end()
            taken = run.take(len(run.refs) if end <= tag + 1 else tag + 1 - run.first)
            self.count -= len(taken)
            if taken:
                groups.append((run.queue, run.consumer, taken))
            if not run.live:
                del runs[0]
            if end > tag + 1:
                break
        return groups

    def take_all(self) -> list[Group]:
        groups = self.take_through(self._runs[-1].end()) if self._runs else []
        self._runs.clear()
        self.count = 0
        return groups


def _first(run: _Run) -> int:
    return run.first + run.low
