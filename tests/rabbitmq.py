"""A real RabbitMQ 3.10 node for differential AMQP tests, started once per test session.

Debian's ``rabbitmq-server`` runs here as a plain child process, never as a system
service: its own node name, ports (AMQP, distribution, epmd) and directories under a
temporary folder, no plugins, stopped when the session ends. The AMQP integration tests
run against it and against Portask with the same expectations (see
tests/integration/amqp/conftest.py), so a test states what RabbitMQ answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.broker_process import free_port

# The script, not the /usr/sbin wrapper: the wrapper switches to the rabbitmq user when
# run as root, which could not write to a test's directories.
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
START_TIMEOUT_S = 60.0


class RabbitMQUnavailable(RuntimeError):
    """No RabbitMQ could be started; the message says why and what to install."""


def installed() -> bool:
    return SERVER.exists() and shutil.which("erl") is not None


class RabbitMQNode:
    """One node on free ports with its data and logs in ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amqp_port = free_port()
        self.epmd_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_name = f"portask-ref-{uuid.uuid4().hex[:8]}@localhost"
        self._env: dict[str, str] = {}

    def start(self) -> RabbitMQNode:
        if not installed():
            raise RabbitMQUnavailable(
                f"{SERVER} not found: install Debian's rabbitmq-server (.ci/run does)")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text("")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            # Our own epmd on its own port: nothing is shared with another node.
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "HOME": str(self.base),  # where the Erlang cookie is written
        }
        self._env = env
        output = open(self.base / "server.out", "wb")  # noqa: SIM115 - lives with the node
        # Its own process group: stop() takes epmd and the Erlang VM down together.
        self.proc = subprocess.Popen([str(SERVER)], env=env, stdout=output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RabbitMQUnavailable(
                    f"rabbitmq-server exited with {self.proc.returncode}: "
                    f"{(self.base / 'server.out').read_text(errors='replace')[-2000:]}")
            if _accepts_amqp(self.amqp_port):
                return self
            time.sleep(0.2)
        self.stop()
        raise RabbitMQUnavailable(f"rabbitmq-server did not listen within {START_TIMEOUT_S} s")

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node (users, permissions: what a test sets up
        on both brokers); raises with its output when it fails."""
        result = subprocess.run([str(CTL), "-n", self.node_name, *args], env=self._env,
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # epmd daemonizes out of the process group: ask it to go.
        epmd = shutil.which("epmd")
        if epmd:
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                           capture_output=True, timeout=10, check=False)
        self.proc = None


def _accepts_amqp(port: int) -> bool:
    """True once the node answers the AMQP protocol header with Connection.Start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False
