"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright
(never a downloaded browser), against a broker the test starts, with real pika and
confluent-kafka clients on the other side.

One browser for the module, a fresh page per test. (Not for the whole session: the
Playwright sync API keeps an event loop running in the main thread while it is
started, which later asyncio tests could not share.) Waits go through Playwright's
selectors, never through evaluated strings, which the console's Content-Security-Policy
forbids as any page script. Every page visited is
screenshotted into build/screenshots/ (CI keeps the folder as an artifact), and any
console error or uncaught exception on a page fails the test that opened it.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.broker_process import BrokerProcess
from tests.integration.console.conftest import Http
from tests.integration.kafka.clients import bootstrap, create_topic

CHROMIUM = os.environ.get("PORTASK_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[test]')")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed here (apt-get install chromium; CI installs it)",
                allow_module_level=True)

TIMEOUT_MS = 10_000


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # only this run's pages
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


class Console:
    """A page of the console with the problems it reported."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, route: str, ready: str) -> None:
        """Go to a route and wait until ``ready`` (a selector) shows and a poll finished."""
        self.page.goto(f"{self.base}/#{route}")
        self.page.wait_for_selector(ready, timeout=TIMEOUT_MS)
        self.page.locator("#status", has_text="updated").wait_for(timeout=TIMEOUT_MS)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def console(browser: Any, site_broker: BrokerProcess) -> Iterator[Console]:
    context = browser.new_context(http_credentials={"username": "guest", "password": "guest"},
                                  viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    opened = Console(page, f"http://127.0.0.1:{site_broker.http_port}")
    yield opened
    context.close()
    assert opened.errors == []


def _amqp(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def _produce(port: int, topic: str, values: list[tuple[int, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap(port), "linger.ms": 5})
    for partition, value in values:
        producer.produce(topic, value=value, key=b"k", partition=partition)
    assert producer.flush(15) == 0


def test_every_page_loads_without_console_errors(console: Console, site_broker: BrokerProcess,
                                                 http: Http) -> None:
    queue, topic, group = _name("q"), _name("t"), _name("g")
    conn = _amqp(site_broker)
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, "amq.topic", "orders.#")
        for i in range(3):
            ch.basic_publish("", queue, f'{{"order": {i}}}'.encode())
        create_topic(site_broker.kafka_port, topic, partitions=3)
        _produce(site_broker.kafka_port, topic, [(i % 3, f"event {i}".encode())
                                                 for i in range(12)])
        http.post(f"/kafka/v1/groups/{group}/offsets/reset", {"to": "earliest", "topic": topic})
        pages = [
            ("overview", "/", "text=Message rates"),
            ("queues", "/queues", f"text={queue}"),
            ("queue", f"/queues/%2F/{queue}", "text=Bindings"),
            ("exchanges", "/exchanges", "text=amq.topic"),
            ("topics", "/topics", f"text={topic}"),
            ("topic", f"/topics/{topic}", "#records table"),
            ("groups", "/groups", f"text={group}"),
            ("group", f"/groups/{group}", "#lag-chart svg"),
            ("connections", "/connections", "text=Channels"),
        ]
        for name, route, ready in pages:
            console.open(route, ready)
            if name == "overview":
                # Two polls at least, so the rate charts have drawn a line ("attached":
                # a flat line of zeros has no height, which Playwright calls invisible).
                console.page.wait_for_selector("polyline[data-series=Kafka]", state="attached",
                                               timeout=TIMEOUT_MS)
            if name == "queue":
                # Peek shows the messages and leaves them in the queue.
                console.page.click("button:text-is('Peek')")
                console.page.wait_for_selector("#messages .message")
                assert console.page.locator("#messages .message").count() == 3
                assert '{"order": 2}' in console.page.locator("#messages").inner_text()
            console.shot(name)
            assert console.errors == [], (name, console.errors)
        assert ch.queue_declare(queue, passive=True).method.message_count == 3
    finally:
        conn.close()
    assert {p.stem for p in SCREENSHOTS.glob("*.png")} >= {p[0] for p in pages}


def test_a_queue_declared_by_pika_appears(console: Console, site_broker: BrokerProcess) -> None:
    console.open("/queues", "table")
    queue = _name("from-pika")
    conn = _amqp(site_broker)
    try:
        conn.channel().queue_declare(queue)
        # The list polls: the new queue shows without a reload.
        console.page.wait_for_selector(f"a:text-is('{queue}')", timeout=TIMEOUT_MS)
    finally:
        conn.close()


def test_a_message_published_in_the_console_reaches_a_pika_consumer(
        console: Console, site_broker: BrokerProcess) -> None:
    queue = _name("publish")
    conn = _amqp(site_broker)
    try:
        ch = conn.channel()
        ch.queue_declare(queue)
        console.open(f"/queues/%2F/{queue}", "text=Publish a message")
        console.page.fill("textarea[name=payload]", "typed in the console")
        console.page.fill("input[name=headers]", '{"origin": "browser"}')
        console.page.click("button:text-is('Publish')")
        console.page.wait_for_selector("text=Published.")
        received: list[tuple[bytes, Any]] = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            method, properties, body = ch.basic_get(queue, auto_ack=True)
            if method is not None:
                received.append((body, properties.headers))
            else:
                time.sleep(0.1)
    finally:
        conn.close()
    assert received == [(b"typed in the console", {"origin": "browser"})]


def test_a_kafka_message_from_confluent_shows_in_the_topic_browser(
        console: Console, site_broker: BrokerProcess) -> None:
    topic = _name("browse")
    create_topic(site_broker.kafka_port, topic, partitions=2)
    _produce(site_broker.kafka_port, topic, [(1, b'{"id": 1, "note": "from librdkafka"}'),
                                             (0, b"plain text record")])
    console.open(f"/topics/{topic}", "#records table")
    records = console.page.locator("#records")
    assert "from librdkafka" in records.inner_text()
    assert "plain text record" in records.inner_text()
    # The filter narrows the list in place.
    console.page.fill("input[name=filter]", "librdkafka")
    assert "plain text record" not in records.inner_text()
    # Reading one partition from an offset.
    console.page.fill("input[name=filter]", "")
    console.page.select_option("select[name=partition]", "0")
    console.page.select_option("select[name=mode]", "offset")
    console.page.fill("input[name=from]", "0")
    console.page.click("button:text-is('Read')")
    sync_api.expect(records).not_to_contain_text("librdkafka", timeout=TIMEOUT_MS)
    assert "plain text record" in records.inner_text()


def test_a_group_lag_chart_shows_the_lag(console: Console, site_broker: BrokerProcess) -> None:
    topic, group = _name("lagging"), _name("slow")
    port = site_broker.kafka_port
    create_topic(port, topic, partitions=2)
    _produce(port, topic, [(0, b"x")] * 10 + [(1, b"y")] * 4)
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": group,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 4)],
                        asynchronous=False)
    finally:
        consumer.close()
    console.open(f"/groups/{group}", "#lag-chart svg")
    bars = console.page.locator("#lag-chart rect")
    assert {(bars.nth(i).get_attribute("data-label"), bars.nth(i).get_attribute("data-value"))
            for i in range(bars.count())} == {(f"{topic} [0]", "6"), (f"{topic} [1]", "0")}
    assert "6" in console.page.locator("#lag-chart").inner_text()
