from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def amqp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker per test module: process start-up would otherwise dominate the suite.

    With AMQP_COMPARE_PORT set, the tests talk to that broker instead (a real RabbitMQ),
    which is how the expected behaviour in these tests was checked.
    """
    compare = os.environ.get("AMQP_COMPARE_PORT")
    if compare:
        yield BrokerProcess(proc=None, data_dir=Path("."),  # type: ignore[arg-type]
                            stderr_path=Path("."), ports={"amqp": int(compare)})
        return
    proc = start_broker(tmp_path_factory.mktemp("amqp") / "data")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def name() -> Callable[[str], str]:
    def make(prefix: str = "q") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


class RestartableBroker:
    """A broker whose process the test may stop, kill and start again on the same data."""

    def __init__(self, data_dir: Path, args: tuple[str, ...]) -> None:
        self.data_dir = data_dir
        self.args = args
        self.process = start_broker(data_dir, *args)

    @property
    def amqp_port(self) -> int:
        return self.process.amqp_port

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.process = start_broker(self.data_dir, *self.args)

    def stop(self, *, kill: bool = False) -> None:
        if self.process.proc.poll() is None:
            self.process.stop(signal.SIGKILL if kill else signal.SIGTERM)

    def queue_dir(self, queue: str, vhost: str = "%2F") -> Path:
        return self.data_dir / "logs" / "amqp" / vhost / queue


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Callable[..., RestartableBroker]]:
    """Start brokers (with extra CLI args) that a test can restart on the same data dir."""
    started: list[RestartableBroker] = []

    def start(*args: str) -> RestartableBroker:
        broker = RestartableBroker(tmp_path / f"data{len(started)}", args)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()
