from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def site_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker for a test module; the console and its APIs are on its HTTP listener."""
    proc = start_broker(tmp_path_factory.mktemp("console") / "data")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


class Http:
    """A plain HTTP client (urllib: nothing of Portask's) for the HTTP listener."""

    def __init__(self, port: int, user: str | None = "guest", password: str = "guest") -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers: dict[str, str] = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                content = response.read()
                return response.status, json.loads(content) if content else None
        except urllib.error.HTTPError as err:
            content = err.read()
            try:
                return err.code, json.loads(content) if content else None
            except ValueError:
                return err.code, content

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def post(self, path: str, body: Any) -> Any:
        status, answer = self.call("POST", path, body)
        assert status in (200, 201), (path, status, answer)
        return answer


@pytest.fixture(scope="module")
def http(site_broker: BrokerProcess) -> Http:
    return Http(site_broker.http_port)
