"""Broker CPU per message and throughput: Portask and RabbitMQ 3.10 in one run.

Starts a fresh ``portask serve`` (this checkout) and a RabbitMQ node as a plain process
(``tests/rabbitmq.py``), then runs ``tools/loadtest.py amqp`` against each in turn, two
rounds, reading each broker's CPU time (user + system of its processes) from /proc
before and after, and the load tool's own CPU. Extra arguments go to the load tool:

    .venv/bin/python -m tests.benchmarks.amqp_vs_rabbitmq                       # transient
    .venv/bin/python -m tests.benchmarks.amqp_vs_rabbitmq --persistent --confirms
    .venv/bin/python -m tests.benchmarks.amqp_vs_rabbitmq --rate 5000           # latency

``--client c`` runs the C load tool (``build/amqp-load`` from tools/amqp_load.c, built
with ``make amqp-load`` when missing; needs librabbitmq-dev) instead of the Python one,
e.g. with ``--max-backlog 2000`` so an unthrottled publisher keeps the queue short:

    .venv/bin/python -m tests.benchmarks.amqp_vs_rabbitmq --client c --max-backlog 2000
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.broker_process import free_port
from tests.rabbitmq import RabbitMQNode

ROOT = Path(__file__).resolve().parents[2]
C_TOOL = ROOT / "build" / "amqp-load"
SHOWN = ("published", "delivered", "publish_msg_s", "deliver_msg_s", "latency_p50_ms",
         "latency_p99_ms")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _load(client: str, port: int, pids: list[int],
          extra: list[str]) -> tuple[dict[str, Any], float, float]:
    """(the load tool's JSON result, broker CPU seconds, load tool CPU seconds)."""
    if client == "c":
        tool = [str(C_TOOL)]
    else:
        tool = [sys.executable, str(ROOT / "tools" / "loadtest.py"), "amqp"]
    before, client_before = _cpu_seconds(pids), _children_cpu()
    ran = subprocess.run([*tool, "--port", str(port), "--json", "--duration", "10",
                          "--rate", "0", "--size", "1024", "--prefetch", "200", *extra],
                         capture_output=True, text=True, check=True)
    return (json.loads(ran.stdout)[0], _cpu_seconds(pids) - before,
            _children_cpu() - client_before)


def _client(argv: list[str]) -> tuple[str, list[str]]:
    """Take ``--client python|c`` (or ``--client=...``) out of the load tool's arguments."""
    client, rest = "python", []
    args = iter(argv)
    for arg in args:
        if arg == "--client":
            client = next(args, "")
        elif arg.startswith("--client="):
            client = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if client not in ("python", "c"):
        raise SystemExit("--client must be python or c")
    return client, rest


def main(argv: list[str]) -> None:
    client, extra = _client(argv)
    if client == "c" and not C_TOOL.exists():
        subprocess.run(["make", "-C", str(ROOT), "amqp-load"], check=True)
    port = free_port()
    portask = subprocess.Popen(
        [sys.executable, "-m", "portask", "serve", "--data-dir", tempfile.mkdtemp(),
         "--kafka-port", "0", "--amqp-port", str(port), "--http-port", "0",
         "--set", "http.management_port=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    node = RabbitMQNode(Path(tempfile.mkdtemp())).start()
    try:
        time.sleep(2)
        assert node.proc is not None
        brokers = [("portask", port, [portask.pid]),
                   ("rabbitmq", node.amqp_port, _group(os.getpgid(node.proc.pid)))]
        for round_ in (1, 2):
            for name, amqp_port, pids in brokers:
                result, cpu, client_cpu = _load(client, amqp_port, pids, extra)
                delivered = max(result["delivered"], 1)
                shown = {key: result[key] for key in SHOWN if key in result}
                print(round_, name, json.dumps(shown), f"cpu {cpu:.2f} s",
                      f"{cpu / delivered * 1e6:.2f} µs/msg",
                      f"(client {client}: {client_cpu / delivered * 1e6:.2f} µs/msg)",
                      flush=True)
    finally:
        portask.terminate()
        node.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
