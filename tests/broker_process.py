"""Start a real `portask serve` process for tests and find the ports it bound."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from portask.testing.broker import BrokerError, clean_environment, launch


@dataclass
class BrokerProcess:
    proc: subprocess.Popen[str]
    data_dir: Path
    stderr_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    stdout_lines: list[str] = field(default_factory=list)
    # "portask", or "rabbitmq" for the reference node of the differential AMQP tests.
    kind: str = "portask"

    @property
    def kafka_port(self) -> int:
        return self.ports["kafka"]

    @property
    def amqp_port(self) -> int:
        return self.ports["amqp"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def management_port(self) -> int:
        return self.ports["management"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stderr_text(self) -> str:
        return self.stderr_path.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    expect: tuple[str, ...] = ("kafka", "amqp", "http"),
    timeout: float = 15.0,
    management: bool = False,
    module: str = "portask",
) -> BrokerProcess:
    """Start on free ports (0) unless args say otherwise; wait for every expected listener.

    The management API (whose port 0 means "off") is off unless ``management``, which
    starts it on a port free at the time. ``module`` is what ``python -m`` runs: a
    test may wrap ``portask`` (its own module must then take the same command line).
    """
    cmd = [sys.executable, "-m", module, "serve", "--data-dir", str(data_dir)]
    for name in ("kafka", "amqp", "http"):
        if f"--{name}-port" not in args:
            cmd += [f"--{name}-port", "0"]
    if not any("http.management_port" in a for a in args):
        cmd += ["--set", f"http.management_port={free_port() if management else 0}"]
    if management:
        expect = (*expect, "management")
    cmd += list(args)
    # stderr goes to a file: a pipe nobody drains would block a chatty broker.
    stderr_dir = data_dir.parent
    try:
        stderr_dir.mkdir(parents=True, exist_ok=True)
    except OSError:  # tests of unusable data dirs point above a regular file
        stderr_dir = Path(tempfile.gettempdir())
    stderr_path = stderr_dir / f"broker-{time.monotonic_ns()}.stderr"
    with open(stderr_path, "w") as stderr:
        try:
            proc, ports, lines = launch(cmd, clean_environment(env), stderr, expect, timeout)
        except BrokerError as err:
            raise RuntimeError(f"{err}: {stderr_path.read_text().strip()}") from None
    return BrokerProcess(proc=proc, data_dir=data_dir, stderr_path=stderr_path, ports=ports,
                         stdout_lines=lines)
