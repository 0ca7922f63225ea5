"""The web console's costs: idle RSS with the console never used and after it is used,
the first request (which loads it), the APIs its pages poll with 1,000 queues and 100
topics, and first paint in headless Chromium.

    .venv/bin/python -m pytest tests/benchmarks/test_console_bench.py --benchmark-enable -q -s
"""

from __future__ import annotations

import base64
import json
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import start_broker

_AUTH = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}


def _rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096 / 1e6


def _call(port: int, path: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method, headers=_AUTH)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def _median_ms(port: int, path: str, rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        _call(port, path)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def test_console_costs(benchmark: Any, tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "data", management=True)
    port, pid = broker.http_port, broker.proc.pid
    figures: dict[str, float] = {}
    try:
        time.sleep(1.0)
        figures["idle_rss_mb_console_unused"] = round(_rss_mb(pid), 1)
        started = time.perf_counter()
        _call(port, "/")
        figures["first_request_ms_loads_console"] = round((time.perf_counter() - started) * 1000,
                                                          1)
        for path in ("/kafka/v1", "/api/overview", "/api/nodes", "/console/app.js",
                     "/console/overview.js", "/console/chart.js"):
            _call(port, path)
        figures["rss_mb_after_console_used"] = round(_rss_mb(pid), 1)

        for i in range(1000):
            _call(port, f"/api/queues/%2F/bench-q-{i:04d}", "PUT", {"durable": True})
        for i in range(100):
            _call(port, "/kafka/v1/topics", "POST", {"name": f"bench-t-{i:03d}", "partitions": 3})
        for path in ("/api/queues?page=1&page_size=100&name=&sort=name&pagination=true",
                     "/kafka/v1/topics", "/kafka/v1", "/kafka/v1/groups",
                     "/kafka/v1/topics/bench-t-050", "/kafka/v1/topics/bench-t-050/records"):
            figures[f"median_ms {path}"] = _median_ms(port, path)
        figures["rss_mb_1000_queues_100_topics"] = round(_rss_mb(pid), 1)
        figures.update(_first_paint(port))
        # Timed: the topics list the Topics page polls, 100 topics of 3 partitions.
        benchmark.pedantic(_call, args=(port, "/kafka/v1/topics"), rounds=20, iterations=1)
    finally:
        broker.stop()
    benchmark.extra_info.update(figures)
    for name, value in figures.items():
        print(f"{name}: {value}")
    assert figures["idle_rss_mb_console_unused"] < 60


def _first_paint(port: int) -> dict[str, float]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        return {}
    out: dict[str, float] = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        context = browser.new_context(http_credentials={"username": "guest",
                                                        "password": "guest"})
        for route, ready in (("/", "text=Listeners"), ("/queues", "table"),
                             ("/topics", "table")):
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/#{route}")
            paint = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
            page.wait_for_selector(ready, timeout=10_000)
            out[f"first_paint_ms {route}"] = round(paint, 1)
            out[f"data_shown_ms {route}"] = round((time.perf_counter() - started) * 1000, 1)
            page.close()
        browser.close()
    return out
