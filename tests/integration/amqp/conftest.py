from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def amqp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker per test module: process start-up would otherwise dominate the suite."""
    proc = start_broker(tmp_path_factory.mktemp("amqp") / "data")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def name() -> Callable[[str], str]:
    def make(prefix: str = "q") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make
