from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import mutation
from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A `portask serve` process on free ports with its data in tmp_path."""
    proc = start_broker(tmp_path / "data")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


SHORT_FUZZ_SEED = 20261202


@pytest.fixture
def fuzz_seconds(request: pytest.FixtureRequest) -> float:
    """How long an end-to-end fuzz test runs (--fuzz-seconds)."""
    return float(request.config.getoption("--fuzz-seconds"))


@pytest.fixture
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    """The end-to-end fuzzers' seed: --fuzz-seed to replay one; a fixed one in the short
    mode `make test` runs (CI must not fail on a seed nobody chose); else a fresh one."""
    seed = request.config.getoption("--fuzz-seed")
    if seed is not None:
        return int(seed)
    if request.config.getoption("--fuzz-profile") == mutation.SHORT:
        return SHORT_FUZZ_SEED
    return random.randrange(2**32)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("amqp", "differential AMQP tests").addoption(
        "--amqp-reference", default="auto", choices=("auto", "on", "off"),
        help="run the AMQP integration tests against a real RabbitMQ 3.10 too: auto (when "
        "rabbitmq-server is installed), on (fail without it), off",
    )
    group = parser.getgroup("fuzz", "Portask fuzzing (see `make fuzz`)")
    group.addoption(
        "--fuzz-profile", default=mutation.SHORT, choices=(mutation.SHORT, mutation.LONG),
        help="hypothesis profile of the fuzz targets (default: the short one `make test` runs)",
    )
    group.addoption(
        "--fuzz-seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", "10")),
        help="how long the end-to-end fuzz test throws frames at the broker "
        "(default: $FUZZ_SECONDS, else 10)",
    )
    group.addoption(
        "--fuzz-seed", type=int, default=None,
        help="seed of the end-to-end fuzzers, to replay a run (default: fixed in the short "
        "profile, random in the long one; printed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Before collection, so the targets' @settings see the profile asked for.
    mutation.FUZZ_PROFILE = config.getoption("--fuzz-profile")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Long fuzzing outlasts the suite's per-test timeout: give each fuzz test its own.
    long_run = config.getoption("--fuzz-profile") == mutation.LONG
    seconds = config.getoption("--fuzz-seconds")
    for item in items:
        if item.get_closest_marker("fuzz") is None:
            continue
        budget = seconds + 300 if "fuzz_seconds" in getattr(item, "fixturenames", ()) else 0
        if long_run:
            budget = max(budget, 1800)
        if budget > 120:
            item.add_marker(pytest.mark.timeout(budget))
