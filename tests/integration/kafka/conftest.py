from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest


@pytest.fixture
def topic_name() -> Callable[[], str]:
    def make() -> str:
        return f"t-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One broker for a whole test module: client start-up dominates these tests."""
    from tests.broker_process import start_broker

    proc = start_broker(tmp_path_factory.mktemp("kafka") / "data")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()
