from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import rabbitmq
from tests.broker_process import BrokerProcess, start_broker
from tests.rabbitmq import RabbitMQNode


@pytest.fixture(scope="session")
def rabbitmq_node(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQNode]:
    """The reference: a real RabbitMQ 3.10 node for the whole session (about 8 s to start)."""
    mode = request.config.getoption("--amqp-reference")
    if mode == "off":
        pytest.skip("--amqp-reference=off: the tests run against Portask only")
    if not rabbitmq.installed():
        if mode == "on":
            pytest.fail("--amqp-reference=on but rabbitmq-server is not installed")
        pytest.skip("RabbitMQ 3.10 is not installed (apt-get install rabbitmq-server; "
                    ".ci/run does): the differential half of this test did not run")
    node = RabbitMQNode(tmp_path_factory.mktemp("rabbitmq")).start()
    yield node
    node.stop()


@pytest.fixture(scope="module", params=["portask", "rabbitmq"])
def amqp_broker(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """Every test that takes this fixture runs twice: against Portask (one process per
    module: start-up would otherwise dominate) and against the real RabbitMQ, with the
    same expectations. ``amqp_broker.kind`` says which, for the few places where Portask
    differs on purpose (each says why, and the README lists them)."""
    if request.param == "rabbitmq":
        node = request.getfixturevalue("rabbitmq_node")
        yield BrokerProcess(proc=None, data_dir=Path("."),  # type: ignore[arg-type]
                            stderr_path=Path("."), ports={"amqp": node.amqp_port},
                            kind="rabbitmq")
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
