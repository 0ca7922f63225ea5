"""``portask serve`` as a child process, for tests in any framework.

The broker binds every listener on port 0 (any free port) and prints where each one
listens; ``Broker`` reads those lines, so nothing races for a port. Its data lives in a
temporary directory removed at ``stop()`` unless the caller gave one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from portask.testing.control import ControlMethods

_LISTENING = re.compile(r"^portask: (\w+) listening on (.+):(\d+)$")
LISTENERS = ("kafka", "amqp", "http")


class BrokerError(RuntimeError):
    """The broker did not start; the message carries what it printed."""


def launch(cmd: list[str], env: Mapping[str, str], stderr: IO[str], expect: Iterable[str],
           timeout: float) -> tuple[subprocess.Popen[str], dict[str, int], list[str]]:
    """Start ``cmd`` and read its stdout until every listener in ``expect`` has printed
    its port: (process, {listener: port}, the lines read)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    ports: dict[str, int] = {}
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while set(expect) - set(ports):
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"portask did not start within {timeout} s; stdout: {lines}")
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise BrokerError(f"portask exited with {proc.returncode}")
        lines.append(line.rstrip("\n"))
        if m := _LISTENING.match(lines[-1]):
            ports[m.group(1)] = int(m.group(3))
    return proc, ports, lines


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its PORTASK_* settings (a test's broker must not
    pick up the developer's), plus ``extra``.

    With PYTHONDONTWRITEBYTECODE set (and no PYTHONPYCACHEPREFIX), the broker keeps its
    bytecode in a cache directory of this user instead: otherwise every start compiles
    the broker's ~150 modules from source, ~150 ms of CPU more than the start itself.
    The source tree and site-packages stay as the setting asked, free of ``.pyc`` files.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTASK_")}
    if env.get("PYTHONDONTWRITEBYTECODE") and not env.get("PYTHONPYCACHEPREFIX"):
        del env["PYTHONDONTWRITEBYTECODE"]
        env["PYTHONPYCACHEPREFIX"] = str(bytecode_cache_dir())
    env.update(extra or {})
    return env


def bytecode_cache_dir() -> Path:
    """Where a broker child keeps its bytecode when PYTHONDONTWRITEBYTECODE is set:
    $XDG_CACHE_HOME/portask/pycache (~/.cache/...). In the user's home, not in a shared
    temporary directory, where another user could plant bytecode for the broker to run."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "portask" / "pycache"


class Broker(ControlMethods):
    """A Portask broker on free ports for the length of a test, a module or a session.

        with Broker() as broker:
            producer = Producer({"bootstrap.servers": broker.kafka_bootstrap})
            connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))

    ``settings`` are ``section.key: value`` pairs, as ``portask serve --set`` takes them.
    The control API's calls are methods: ``reset()``, ``add_fault(...)``,
    ``clear_faults()``, ``wait_queue(...)``, ``requests(...)`` (``ControlMethods``).
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.settings = dict(settings or {})
        self.env = dict(env or {})
        self.host = host
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(self) -> Broker:
        if self.proc is not None:
            return self
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="portask-test-"))
        cmd = [sys.executable, "-m", "portask", "serve", "--host", self.host,
               "--data-dir", str(self.data_dir), "--log-level", "warning"]
        for name in LISTENERS:
            cmd += [f"--{name}-port", "0"]
        # The management API's port 0 means "off": it stays off unless asked for.
        settings = {"http.management_port": 0, **self.settings}
        for key, value in settings.items():
            cmd += ["--set", f"{key}={_text(value)}"]
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives with the process
        try:
            self.proc, self.ports, _ = launch(
                cmd, clean_environment(self.env), self._stderr,
                [n for n in LISTENERS if settings.get(f"{n}.enabled", True) not in
                 (False, "false")], self.startup_timeout)
        except (BrokerError, TimeoutError) as err:
            raise BrokerError(f"{err}: {self.stderr_text().strip()[-2000:]}") from None
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        return code

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self._port('kafka')}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self._port('amqp')}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self._port('http')}"

    def _port(self, listener: str) -> int:
        if listener not in self.ports:
            raise BrokerError(f"no {listener} listener: start() the broker first, with "
                              f"{listener}.enabled on")
        return self.ports[listener]

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
