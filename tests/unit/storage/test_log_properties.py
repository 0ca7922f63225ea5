"""Random operation sequences against a simple in-memory model of the log."""

from __future__ import annotations

import gc
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portask.storage import Log, LogConfig
from portask.storage.segment import HEADER_SIZE

Entry = tuple[int, int, int, bytes]  # offset, count, timestamp, payload


def content(offset: int, size: int) -> bytes:
    stamp = f"[{offset}]".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


@dataclass
class ModelSegment:
    base: int
    entries: list[Entry] = field(default_factory=list)

    @property
    def used(self) -> int:
        return sum(HEADER_SIZE + len(e[3]) for e in self.entries)

    @property
    def max_timestamp(self) -> int:
        return max(e[2] for e in self.entries)


@dataclass
class Model:
    """The log as the design describes it, with none of the machinery."""

    segment_bytes: int
    retention_bytes: int | None
    retention_ms: int | None
    segments: list[ModelSegment] = field(default_factory=lambda: [ModelSegment(0)])
    start: int = 0

    @property
    def end(self) -> int:
        for seg in reversed(self.segments):
            if seg.entries:
                return seg.entries[-1][0] + seg.entries[-1][1]
        return self.segments[-1].base

    def append(self, size: int, count: int, timestamp: int) -> int:
        offset = self.end
        active = self.segments[-1]
        if active.entries and active.used + HEADER_SIZE + size > self.segment_bytes:
            active = ModelSegment(offset)
            self.segments.append(active)
        active.entries.append((offset, count, timestamp, content(offset, size)))
        return offset

    def live_entries(self) -> list[Entry]:
        return [e for seg in self.segments for e in seg.entries if e[0] + e[1] > self.start]

    def boundaries(self) -> list[int]:
        return [e[0] for e in self.live_entries() if e[0] >= self.start] + [self.end]

    def truncate_to(self, offset: int) -> None:
        while len(self.segments) > 1 and self.segments[-1].base > offset:
            self.segments.pop()
        seg = self.segments[-1]
        seg.entries = [e for e in seg.entries if e[0] < offset]

    def delete_before(self, offset: int) -> None:
        if offset <= self.start:
            return
        self.start = offset
        while len(self.segments) > 1 and self.segments[1].base <= offset:
            self.segments.pop(0)

    def apply_retention(self, now_ms: int) -> int:
        deleted = 0
        size = sum(s.used for s in self.segments)
        while len(self.segments) > 1:
            seg = self.segments[0]
            too_big = self.retention_bytes is not None and size > self.retention_bytes
            too_old = (self.retention_ms is not None
                       and seg.max_timestamp < now_ms - self.retention_ms)
            if not (too_big or too_old):
                break
            size -= seg.used
            deleted += seg.used
            self.segments.pop(0)
        self.start = max(self.start, self.segments[0].base)
        return deleted


sizes = st.one_of(st.integers(0, 5000), st.integers(1500, 5000))
_OPERATIONS = {
    "append": st.tuples(st.just("append"), sizes, st.integers(1, 5), st.integers(0, 1000)),
    "append_many": st.tuples(st.just("append_many"), st.lists(st.integers(0, 700), max_size=30),
                             st.integers(0, 1000)),
    "reopen": st.tuples(st.just("reopen")),
    "crash": st.tuples(st.just("crash")),
    "flush": st.tuples(st.just("flush")),
    "truncate_to": st.tuples(st.just("truncate_to"), st.integers(0, 10**6)),
    "delete_before": st.tuples(st.just("delete_before"), st.integers(0, 10**6)),
    "retention": st.tuples(st.just("retention"), st.integers(0, 1200)),
    "read": st.tuples(st.just("read"), st.integers(0, 10**6), st.integers(0, 20_000)),
}
# Appends dominate so that logs grow to several segments between the trimming steps.
_WEIGHTS = {"append": 8, "append_many": 2, "read": 2}
operations = st.sampled_from(
    [kind for kind in _OPERATIONS for _ in range(_WEIGHTS.get(kind, 1))]
).flatmap(_OPERATIONS.__getitem__)


def check(log: Log, model: Model) -> None:
    assert (log.start_offset, log.end_offset) == (model.start, model.end)
    assert log.segment_base_offsets == [s.base for s in model.segments]
    expected = model.live_entries()
    got: list[Entry] = []
    offset = log.start_offset
    while offset < log.end_offset:
        records = log.read(offset, 1 << 16)
        got.extend((r.offset, r.count, r.timestamp, bytes(r.payload)) for r in records)
        offset = records[-1].offset + records[-1].count
    assert got == expected
    assert log.size_bytes == sum(s.used for s in model.segments)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    segment_bytes=st.one_of(st.integers(4096, 8192), st.integers(4096, 20_000)),
    index_interval=st.sampled_from([0, 100, 1000, 4096]),
    retention_bytes=st.one_of(st.none(), st.integers(0, 60_000)),
    retention_ms=st.one_of(st.none(), st.integers(0, 500)),
    ops=st.lists(operations, min_size=10, max_size=50),
)
def test_log_matches_model(segment_bytes: int, index_interval: int,
                           retention_bytes: int | None, retention_ms: int | None,
                           ops: list[tuple]) -> None:
    config = LogConfig(segment_bytes=segment_bytes, segment_ms=None,
                       index_interval_bytes=index_interval,
                       retention_bytes=retention_bytes, retention_ms=retention_ms)
    model = Model(segment_bytes, retention_bytes, retention_ms)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "log"
        log = Log.open(directory, config)
        try:
            event(f"operations: {len(ops) // 10 * 10}+")
            most_segments = 1
            for op in ops:
                kind = op[0]
                if kind == "append":
                    _, size, count, ts = op
                    offset = log.end_offset
                    assert log.append(content(offset, size), count=count, timestamp=ts) == (
                        model.append(size, count, ts))
                elif kind == "append_many":
                    _, batch, ts = op
                    first = log.end_offset
                    payloads = [content(first + i, size) for i, size in enumerate(batch)]
                    assert log.append_many(payloads, timestamp=ts) == first
                    for size in batch:
                        model.append(size, 1, ts)
                elif kind == "reopen":
                    log.close()
                    log = Log.open(directory, config)
                elif kind == "crash":
                    del log
                    gc.collect()
                    log = Log.open(directory, config)
                elif kind == "flush":
                    log.flush()
                elif kind == "truncate_to":
                    choices = model.boundaries()
                    target = choices[op[1] % len(choices)]
                    log.truncate_to(target)
                    model.truncate_to(target)
                elif kind == "delete_before":
                    target = model.start + op[1] % (model.end - model.start + 1)
                    log.delete_before(target)
                    model.delete_before(target)
                elif kind == "retention":
                    deleted = log.apply_retention(now_ms=op[1])
                    assert deleted == model.apply_retention(op[1])
                    event(f"retention deleted segments: {deleted > 0}")
                else:
                    _, where, max_bytes = op
                    if model.end == model.start:
                        assert log.read(model.start, max_bytes) == []
                        continue
                    target = model.start + where % (model.end - model.start)
                    records = log.read(target, max_bytes)
                    live = [e for e in model.live_entries() if e[0] + e[1] > target]
                    assert records[0].offset == live[0][0]
                    total = 0
                    for r, e in zip(records, live, strict=False):
                        assert (r.offset, r.count, r.timestamp, bytes(r.payload)) == e
                        total += len(e[3])
                    assert total <= max_bytes or len(records) == 1
                    if len(records) < len(live):
                        assert total + len(live[len(records)][3]) > max_bytes
                check(log, model)
                most_segments = max(most_segments, len(model.segments))
            event(f"most segments: {min(most_segments, 5)}")
            log.close()
            log = Log.open(directory, config)
            check(log, model)
        finally:
            log.close()
