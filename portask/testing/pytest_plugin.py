"""The pytest plugin (registered as ``portask`` under the ``pytest11`` entry point).

Fixtures:

- ``portask``: one broker for the test session (with pytest-xdist, one per worker:
  each worker is its own session), started on free ports with a temporary data dir;
  or, with ``--portask-url http://HOST:PORT``, the broker already running there.
- ``portask_topic_prefix``: a name prefix no other test (or worker) uses, for topics,
  queues and exchanges, so tests sharing one broker do not see each other's data.
- ``portask_vhost``: an AMQP vhost of the test's own (``.name``, ``.amqp_url``), deleted
  with everything in it when the test ends: tests sharing a broker, in parallel too,
  use the same queue and exchange names without seeing each other and without a reset.
- ``portask_reset``: the broker, reset before the test (the control API's reset).
- ``portask_faults``: the broker, its fault rules cleared after the test.

The broker objects have the control API's calls as methods (``reset()``,
``add_fault(...)``, ``wait_queue(...)``, ``requests(...)``: ``portask.testing.control``).

Nothing heavy is imported until a fixture is used: the plugin loads into every pytest
session of an environment where Portask is installed.
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from portask.testing.control import ControlMethods

_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("portask", "Portask broker for tests")
    group.addoption(
        "--portask-url", default=os.environ.get("PORTASK_TEST_URL"),
        help="use the Portask broker whose HTTP listener is at this URL instead of starting "
        "one (default: $PORTASK_TEST_URL)",
    )


@dataclass
class RunningBroker(ControlMethods):
    """A broker someone else started, found through its HTTP listener's /health."""

    http_url: str
    host: str = ""
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def at(cls, url: str) -> RunningBroker:
        url = url.rstrip("/")
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            report: dict[str, Any] = json.load(response)
        host = urlsplit(url).hostname or "127.0.0.1"
        ports = {name: int(info["address"].rsplit(":", 1)[1])
                 for name, info in report.get("listeners", {}).items()}
        return cls(http_url=url, host=host, ports=ports)

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.ports['kafka']}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.ports['amqp']}/"


@pytest.fixture(scope="session")
def portask(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's broker: ``.kafka_bootstrap``, ``.amqp_url``, ``.http_url``."""
    url = request.config.getoption("--portask-url")
    if url:
        yield RunningBroker.at(url)
        return
    from portask.testing.broker import Broker

    with Broker() as broker:
        yield broker


@pytest.fixture
def portask_topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix unique to this test in this session and worker (``t3-gw1-``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"t{next(_counter)}-{worker}-"


@dataclass(frozen=True)
class PortaskVhost:
    """A vhost of one test's own: pass ``amqp_url`` to the application under test."""

    name: str
    amqp_url: str


@pytest.fixture
def portask_vhost(portask: Any, request: pytest.FixtureRequest) -> Iterator[PortaskVhost]:
    """A fresh AMQP vhost for this test (``t3-gw1-test_name``), deleted after it, pass or
    fail; its ``amqp_url`` connects to it as the session broker's user."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"t{next(_counter)}-{worker}-{request.node.name}"[:200]
    portask.create_vhost(name)
    try:
        yield PortaskVhost(name, portask.amqp_url.rstrip("/") + "/" + quote(name, safe=""))
    finally:
        portask.delete_vhost(name)


@pytest.fixture
def portask_reset(portask: Any) -> Any:
    """The session's broker, reset before the test: no topics, groups, queues, exchanges
    or messages left by earlier tests (configured vhosts and users stay)."""
    portask.reset()
    return portask


@pytest.fixture
def portask_faults(portask: Any) -> Iterator[Any]:
    """The session's broker for a test that installs fault rules
    (``portask_faults.add_fault(...)``) or broker-level faults (``refuse_connections``,
    ``fail_syncs``): they are cleared when the test ends, pass or fail."""
    yield portask
    portask.clear_faults()
    portask.fail_syncs(0)
    for listener in ("kafka", "amqp"):
        portask.accept_connections(listener)
