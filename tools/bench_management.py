"""Management API numbers: idle RSS with the listener on, and the time of every API
answer (and of a /metrics scrape) with 1,000 queues and 100 topics. Start-up time is
measured by tests/benchmarks/test_startup_bench.py.

Starts `portask serve` (as a subprocess, on free ports, fresh data dir), creates the
queues over AMQP (pika) and the topics over Kafka (confluent-kafka), then times each
GET with urllib, --rounds times each: ``answer_ms`` is the median (the shared machine's
load makes the best a lucky draw), ``answer_best_ms`` the best. Prints one line per
measurement, or JSON. ``--only`` limits the answers timed (e.g. ``--only /api/queues``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pika
from confluent_kafka.admin import AdminClient, NewTopic

LISTENING = re.compile(r"^portask: (\w+) listening on .+:(\d+)$")
ENDPOINTS = [
    "/api/overview", "/api/queues", "/api/queues/%2F", "/api/queues?page=1&page_size=100",
    "/api/queues?columns=name,messages", "/api/queues/%2F/q-0500", "/api/exchanges",
    "/api/bindings", "/api/vhosts", "/api/connections", "/api/channels", "/api/consumers",
    "/api/nodes", "/api/definitions", "/api/health/checks/alarms", "/api/whoami",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start(data_dir: Path, management_port: int) -> tuple[subprocess.Popen[str], dict[str, int],
                                                          float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "portask", "serve", "--data-dir", str(data_dir),
         "--kafka-port", "0", "--amqp-port", "0", "--http-port", "0",
         "--set", f"http.management_port={management_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ports: dict[str, int] = {}
    assert proc.stdout is not None
    while len(ports) < 4:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("broker exited")
        m = LISTENING.match(line.strip())
        if m:
            ports[m.group(1)] = int(m.group(2))
    # Ready: every port accepts.
    for port in ports.values():
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return proc, ports, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=6.0,
                        help="seconds to wait after creating the objects, before timing")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", action="append", default=None,
                        help="time only these paths (repeatable); /metrics for the scrape")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="portask-mgmt-bench-"))
    results: dict[str, object] = {}
    try:
        proc, ports, _ = start(tmp / "data", free_port())
        try:
            time.sleep(2)
            results["idle_rss_mb"] = round(rss_bytes(proc.pid) / 1e6, 1)
            conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1",
                                                                     ports["amqp"]))
            ch = conn.channel()
            for i in range(args.queues):
                ch.queue_declare(f"q-{i:04d}")
                ch.queue_bind(f"q-{i:04d}", "amq.direct", f"k{i}")
            for i in range(0, args.queues, 10):
                ch.basic_publish("", f"q-{i:04d}", b"x" * 100)
            ch.basic_consume("q-0000", lambda *a: None)
            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports['kafka']}"})
            futures = admin.create_topics([NewTopic(f"t-{i:03d}", 3)
                                           for i in range(args.topics)])
            for future in futures.values():
                future.result(30)
            # Steady state: the objects have had a rate sample (every 5 s), as on a broker
            # that has been up a while; and the set-up's own work has drained.
            time.sleep(args.settle)
            token = base64.b64encode(b"guest:guest").decode()
            base = f"http://127.0.0.1:{ports['management']}"
            times: dict[str, float] = {}
            bests: dict[str, float] = {}
            paths = [*ENDPOINTS, "__metrics__"]
            if args.only:
                paths = [p for p in paths
                         if (p if p != "__metrics__" else "/metrics") in args.only]
            for path in paths:
                rounds: list[float] = []
                url = (f"http://127.0.0.1:{ports['http']}/metrics" if path == "__metrics__"
                       else base + path)
                for _ in range(args.rounds):
                    request = urllib.request.Request(url,
                                                     headers={"Authorization": f"Basic {token}"})
                    t = time.perf_counter()
                    with urllib.request.urlopen(request, timeout=30) as response:
                        response.read()
                    rounds.append(time.perf_counter() - t)
                name = "/metrics" if path == "__metrics__" else path
                times[name] = round(statistics.median(rounds) * 1000, 1)
                bests[name] = round(min(rounds) * 1000, 1)
            results["answer_ms"] = times
            results["answer_best_ms"] = bests
            results["rss_with_objects_mb"] = round(rss_bytes(proc.pid) / 1e6, 1)
            conn.close()
            del admin  # its background threads would retry the stopped broker
        finally:
            proc.terminate()
            proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    os.environ.pop("PORTASK_HTTP_MANAGEMENT_PORT", None)
    main()
