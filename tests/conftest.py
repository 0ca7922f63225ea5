from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A `portask serve` process on free ports with its data in tmp_path."""
    proc = start_broker(tmp_path / "data")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()
