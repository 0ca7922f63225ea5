"""`portask serve` start-up: time until all four ports (Kafka, AMQP, HTTP, management API)
accept, and idle resident memory."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_and_wait(data_dir: Path) -> tuple[float, subprocess.Popen[bytes]]:
    ports = [_free_port() for _ in range(4)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "portask", "serve", "--data-dir", str(data_dir),
         "--kafka-port", str(ports[0]), "--amqp-port", str(ports[1]),
         "--http-port", str(ports[2]), "--set", f"http.management_port={ports[3]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    pending = set(ports)
    while pending:
        for port in list(pending):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                pending.discard(port)
            except OSError:
                time.sleep(0.002)
        if time.perf_counter() - started > 10:
            proc.kill()
            raise TimeoutError("ports did not open")
    return time.perf_counter() - started, proc


def test_start_until_all_ports_accept(benchmark: Any, tmp_path: Path) -> None:
    """Timed: process start until the Kafka, AMQP, HTTP and management ports all accept.
    Then idle RSS."""
    procs: list[subprocess.Popen[bytes]] = []

    def stop_previous() -> None:
        while procs:
            proc = procs.pop()
            proc.terminate()
            proc.wait(10)

    def once() -> None:
        _, proc = _start_and_wait(tmp_path / f"d{time.monotonic_ns()}")
        procs.append(proc)

    benchmark.pedantic(once, setup=stop_previous, rounds=5, iterations=1)
    time.sleep(1.0)  # the last broker finishes starting; then read its idle memory
    rss = int(Path(f"/proc/{procs[-1].pid}/statm").read_text().split()[1]) * 4096
    benchmark.extra_info["idle_rss_mb"] = round(rss / 1e6, 1)
    stop_previous()
    assert rss < 100e6


def _child_times(args: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run of a Python child to its exit."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def test_broker_start_to_ready(benchmark: Any) -> None:
    """Timed: ``portask.testing.Broker().start()``, until the broker has printed where
    every listener is (it serves from then on). Printed: the broker process's CPU time
    up to then, which load from other processes does not inflate; and, between the
    rounds, the floor any Python broker has on this machine at this load: ``python -c
    pass`` and ``python -c "import asyncio"`` (wall and CPU)."""
    import os
    import statistics

    from portask.testing import Broker

    brokers: list[Broker] = []
    cpu_ms: list[float] = []
    floors: dict[str, list[tuple[float, float]]] = {"pass": [], "import asyncio": []}
    tick = os.sysconf("SC_CLK_TCK")

    def stop_previous() -> None:
        while brokers:
            brokers.pop().stop()
        for code, times in floors.items():
            times.append(_child_times(["-c", code]))

    def once() -> None:
        broker = Broker().start()
        assert broker.proc is not None
        fields = Path(f"/proc/{broker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_ms.append((int(fields[11]) + int(fields[12])) * 1000 / tick)
        brokers.append(broker)

    benchmark.pedantic(once, setup=stop_previous, rounds=9, iterations=1)
    stop_previous()
    print(f"\nbroker CPU until ready: median {statistics.median(cpu_ms):.0f} ms, "
          f"min {min(cpu_ms):.0f} ms")
    for code, times in floors.items():
        walls, cpus = [t[0] for t in times], [t[1] for t in times]
        print(f"python -c {code!r}: wall median {statistics.median(walls):.0f} ms "
              f"(min {min(walls):.0f}), CPU median {statistics.median(cpus):.0f} ms "
              f"(min {min(cpus):.0f})")
