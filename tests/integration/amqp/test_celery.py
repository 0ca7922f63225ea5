"""A real `celery worker` process on this broker: tasks, results (rpc backend, x-expires
reply queues), retries, countdown, and kombu's native delayed delivery for quorum
queues (28 TTL queues with reject-publish, chained by dead-lettering and
exchange-to-exchange bindings)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
from celery import Celery

from tests.broker_process import BrokerProcess

WORKER_APP = textwrap.dedent('''
    import os
    import time

    from celery import Celery

    app = Celery("portask_celery_test", broker=os.environ["CELERY_TEST_BROKER"],
                 backend="rpc://")
    app.conf.update(task_default_queue=os.environ["CELERY_TEST_QUEUE"],
                    broker_connection_retry_on_startup=True)
    if os.environ.get("CELERY_TEST_QUORUM"):
        app.conf.update(task_default_queue_type="quorum", task_default_exchange_type="topic")


    @app.task(name="add")
    def add(x, y):
        return x + y


    @app.task(name="flaky", bind=True, max_retries=3)
    def flaky(self):
        if self.request.retries < 2:
            raise self.retry(countdown=0.3)
        return self.request.retries


    @app.task(name="stamp")
    def stamp():
        return time.time()
''')

Worker = Callable[..., Celery]


@pytest.fixture
def celery_worker(amqp_broker: BrokerProcess, tmp_path: Path) -> Iterator[Worker]:
    """Start a worker process; returns a client app that sends to its queue."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*, quorum: bool = False) -> Celery:
        queue = f"celery-{uuid.uuid4().hex[:8]}"
        broker_url = f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}//"
        (tmp_path / "celery_test_app.py").write_text(WORKER_APP)
        env = {**os.environ, "CELERY_TEST_BROKER": broker_url, "CELERY_TEST_QUEUE": queue,
               "PYTHONPATH": str(tmp_path)}
        if quorum:
            env["CELERY_TEST_QUORUM"] = "1"
        log = open(tmp_path / f"worker-{queue}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_test_app", "worker",
             "--pool=solo", "--loglevel=WARNING", "--without-heartbeat",
             "--without-gossip", "--without-mingle"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT))
        client = Celery("portask_celery_client", broker=broker_url, backend="rpc://")
        client.conf.update(task_default_queue=queue)
        if quorum:
            client.conf.update(task_default_queue_type="quorum",
                               task_default_exchange_type="topic")
        return client

    yield start
    for proc in procs:
        # A warm shutdown waits ~10 s for the rpc result consumer; nothing to keep here.
        proc.kill()
        proc.wait()


def test_tasks_run_and_return_results(celery_worker: Worker) -> None:
    app = celery_worker()
    assert app.send_task("add", (2, 3)).get(timeout=20) == 5
    results = [app.send_task("add", (i, i)) for i in range(20)]
    assert [r.get(timeout=20) for r in results] == [2 * i for i in range(20)]


def test_retries_and_countdown(celery_worker: Worker) -> None:
    app = celery_worker()
    app.send_task("add", (0, 0)).get(timeout=20)  # the worker is up
    started = time.monotonic()
    assert app.send_task("flaky").get(timeout=20) == 2
    assert time.monotonic() - started >= 0.5  # two retries, 0.3 s apart
    started = time.monotonic()
    assert app.send_task("add", (1, 1), countdown=1).get(timeout=20) == 2
    assert time.monotonic() - started >= 0.9


def test_quorum_queues_use_native_delayed_delivery(celery_worker: Worker,
                                                   amqp_broker: BrokerProcess) -> None:
    app = celery_worker(quorum=True)
    app.send_task("add", (0, 0)).get(timeout=20)  # the worker is up, topology declared
    published = time.time()
    result = app.send_task("stamp", countdown=2)
    # Two seconds is binary 10: the message waits in level 1's TTL queue.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1",
                                                             amqp_broker.amqp_port))
    waiting = 0
    deadline = time.monotonic() + 1.5
    while not waiting and time.monotonic() < deadline:
        waiting = conn.channel().queue_declare("celery_delayed_1",
                                               passive=True).method.message_count
    conn.close()
    assert waiting == 1
    ran_at = result.get(timeout=20)
    assert 1.8 <= ran_at - published < 6
