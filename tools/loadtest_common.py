"""What every load test reports, whichever protocol drove it: throughput and latency.

Workers (separate processes) count into shared counters for the live progress bar and
send their latency samples back at the end; this module turns those into msg/s, MB/s
and p50/p95/p99/max, printed as a table or as JSON (``--json``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    target: str
    seconds: float
    published: int
    delivered: int
    message_bytes: int
    deliver_seconds: float = 0.0
    latencies_us: list[float] = field(default_factory=list, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    # CPU use during the run (see CpuMeter); reported only when a tool fills it in.
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def publish_rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    @property
    def deliver_rate(self) -> float:
        seconds = self.deliver_seconds or self.seconds
        return self.delivered / seconds if seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_us)
        out = {
            "target": self.target,
            "seconds": round(self.seconds, 3),
            "published": self.published,
            "delivered": self.delivered,
            "publish_msg_s": round(self.publish_rate),
            "deliver_msg_s": round(self.deliver_rate),
            "publish_mb_s": round(self.publish_rate * self.message_bytes / 1e6, 2),
            "deliver_mb_s": round(self.deliver_rate * self.message_bytes / 1e6, 2),
            "latency_samples": len(lat),
            "settings": self.settings,
        }
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
            out[f"latency_{name}_ms"] = round(percentile(lat, q) / 1000, 3) if lat else None
        out["latency_max_ms"] = round(lat[-1] / 1000, 3) if lat else None
        if self.resources:
            out["resources"] = self.resources
        return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def progress(total_s: float, read: Callable[[], tuple[int, int]],
             done: Callable[[], bool]) -> None:
    """A rich progress bar with live publish/deliver rates until ``done()``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[rates]}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("load", total=total_s, rates="")
        start = last_t = time.monotonic()
        last_p = last_d = 0
        while not done():
            time.sleep(0.5)
            now = time.monotonic()
            pub, dlv = read()
            dt = now - last_t
            rates = f"pub {(pub - last_p) / dt:,.0f}/s  dlv {(dlv - last_d) / dt:,.0f}/s"
            bar.update(task, completed=min(total_s, now - start), rates=rates)
            last_t, last_p, last_d = now, pub, dlv


def report(results: list[Result], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.summary() for r in results], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="load test")
    keys = ["target", "publish_msg_s", "deliver_msg_s", "publish_mb_s", "deliver_mb_s",
            "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_max_ms",
            "published", "delivered"]
    for key in keys:
        table.add_column(key)
    for r in results:
        s = r.summary()
        table.add_row(*(str(s[k]) for k in keys))
    console = Console()
    console.print(table)
    for r in results:
        if r.resources:
            console.print(f"{r.target}: " + "  ".join(f"{k}={v}" for k, v in r.resources.items()))


def as_dict(result: Result) -> dict[str, Any]:
    return asdict(result)


# -- CPU accounting: is the broker or the load generator the ceiling? ----------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of every thread of ``pid`` from /proc (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds summed over all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user/nice
    return (total - idle) / _TICKS, total / _TICKS


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP ``port`` (own or same-user processes only)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in fds):
                return int(entry)
        except OSError:
            continue
    return None


class CpuMeter:
    """CPU% of one process (100 = one core) and of the whole machine over a window.

    ``sample()`` a few times a second also yields the busiest one-second stretch, which
    shows saturation better than an average that includes start-up and drain.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float | None, float, float]] = []

    def sample(self) -> None:
        busy, total = machine_cpu_seconds()
        proc = process_cpu_seconds(self.pid) if self.pid else None
        self.samples.append((time.monotonic(), proc, busy, total))

    def summary(self, prefix: str = "broker", first: int = 0,
                last: int | None = None) -> dict[str, Any]:
        """Averages over samples[first..last] (e.g. only while messages were moving)."""
        samples = self.samples[first : None if last is None else last + 1]
        if len(samples) < 2:
            return {}
        (t0, p0, b0, n0), (t1, p1, b1, n1) = samples[0], samples[-1]
        cores = os.cpu_count() or 1
        out: dict[str, Any] = {"cpu_window_s": round(t1 - t0, 2)}
        if p0 is not None and p1 is not None and t1 > t0:
            out[f"{prefix}_cpu_pct"] = round(100 * (p1 - p0) / (t1 - t0), 1)
            peaks = []
            for i, (ta, pa, _, _) in enumerate(samples):
                # The shortest stretch of at least a second starting at each sample.
                later = next((s for s in samples[i + 1 :] if s[0] - ta >= 1.0), None)
                if later is not None and pa is not None and later[1] is not None:
                    peaks.append(100 * (later[1] - pa) / (later[0] - ta))
            if peaks:
                out[f"{prefix}_cpu_peak_pct"] = round(max(peaks), 1)
            out[f"{prefix}_cpu_seconds"] = round(p1 - p0, 3)
        if n1 > n0:
            # Same scale as the process figures: 100 = one core, so 2 cores = 200 at most.
            out["machine_cpu_pct"] = round(100 * cores * (b1 - b0) / (n1 - n0), 1)
            out["machine_cores"] = cores
        return out
