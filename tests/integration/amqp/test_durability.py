"""Durable definitions and persistent messages across restarts and kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.integration.amqp.conftest import RestartableBroker

PERSISTENT = pika.BasicProperties(delivery_mode=2)
LOADTEST = Path(__file__).resolve().parents[3] / "tools" / "loadtest.py"
Start = Callable[..., RestartableBroker]


def connect(broker: RestartableBroker) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, connection_attempts=3, retry_delay=0.2))


def drain(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str
          ) -> list[tuple[bytes, bool]]:
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, method.redelivered))


def test_durable_definitions_survive_restart_and_transient_ones_do_not(
        restartable: Start) -> None:
    broker = restartable()
    conn = connect(broker)
    ch = conn.channel()
    ch.exchange_declare("d-topic", "topic", durable=True)
    ch.exchange_declare("d-fanout", "fanout", durable=True)
    ch.exchange_declare("d-alt-source", "direct", durable=True,
                        arguments={"alternate-exchange": "d-fanout"})
    ch.exchange_declare("t-direct", "direct", durable=False)
    ch.queue_declare("d-q", durable=True, arguments={"x-max-length": 100})
    ch.queue_declare("d-q2", durable=True)
    ch.queue_declare("t-q", durable=False)
    ch.queue_declare("x-q", durable=True, exclusive=True)
    ch.queue_bind("d-q", "d-topic", "a.*")
    ch.queue_bind("d-q", "d-topic", "unbound.*")
    ch.queue_unbind("d-q", "d-topic", "unbound.*")
    ch.exchange_bind("d-fanout", "d-topic", "b.#")
    ch.queue_bind("d-q2", "d-fanout")
    ch.queue_bind("d-q", "amq.direct", "direct-key")
    ch.queue_bind("d-q", "t-direct", "t")
    conn.close()

    broker.restart()
    conn = connect(broker)
    ch = conn.channel()
    for exchange in ("d-topic", "d-fanout", "d-alt-source"):
        ch.exchange_declare(exchange, passive=True)
    ch.queue_declare("d-q", passive=True)
    ch.queue_declare("d-q2", passive=True)
    for missing in ("t-q", "x-q"):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.queue_declare(missing, passive=True)
        assert info.value.reply_code == 404
        ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare("t-direct", passive=True)
    assert info.value.reply_code == 404
    ch = conn.channel()
    # The arguments came back too: a different x-max-length is still inequivalent.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("d-q", durable=True, arguments={"x-max-length": 5})
    assert info.value.reply_code == 406
    ch = conn.channel()
    ch.queue_declare("d-q", durable=True, arguments={"x-max-length": 100})

    ch.confirm_delivery()
    ch.basic_publish("d-topic", "a.one", b"topic", PERSISTENT)
    ch.basic_publish("d-topic", "b.x.y", b"via-exchange-binding", PERSISTENT)
    ch.basic_publish("amq.direct", "direct-key", b"amq", PERSISTENT)
    ch.basic_publish("d-alt-source", "nothing-bound", b"alternate", PERSISTENT)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("d-topic", "unbound.x", b"gone", PERSISTENT, mandatory=True)
    assert [b for b, _ in drain(ch, "d-q")] == [b"topic", b"amq"]
    assert [b for b, _ in drain(ch, "d-q2")] == [b"via-exchange-binding", b"alternate"]
    conn.close()


def test_persistent_messages_survive_restart_and_transient_ones_do_not(
        restartable: Start) -> None:
    broker = restartable()
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("jobs", durable=True)
    for i in range(50):
        ch.basic_publish("", "jobs", b"p%d" % i, PERSISTENT)
        ch.basic_publish("", "jobs", b"t%d" % i)
    assert ch.queue_declare("jobs", passive=True).method.message_count == 100
    conn.close()

    broker.restart()
    conn = connect(broker)
    ch = conn.channel()
    assert ch.queue_declare("jobs", passive=True).method.message_count == 50
    assert drain(ch, "jobs") == [(b"p%d" % i, False) for i in range(50)]
    conn.close()


def test_unacked_deliveries_come_back_redelivered_after_kill_9(restartable: Start) -> None:
    broker = restartable()
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("work", durable=True)
    for i in range(20):
        ch.basic_publish("", "work", b"%d" % i, PERSISTENT)
    tags = [ch.basic_get("work")[0].delivery_tag for _ in range(5)]
    ch.basic_ack(tags[0])
    ch.basic_ack(tags[2])
    ch.queue_declare("work", passive=True)  # a round trip: the acks have been processed
    broker.restart(kill=True)

    conn = connect(broker)
    ch = conn.channel()
    got = drain(ch, "work")
    assert got[:3] == [(b"1", True), (b"3", True), (b"4", True)]
    assert got[3:] == [(b"%d" % i, False) for i in range(5, 20)]
    conn.close()


def test_kill_9_under_load_loses_no_confirmed_message(restartable: Start) -> None:
    """A confirming publisher and an acking consumer run while the broker is SIGKILLed:
    every confirmed message is delivered after the restart unless it was acked, and
    every message delivered before the kill and not acked comes back redelivered."""
    broker = restartable()
    conn = connect(broker)
    conn.channel().queue_declare("orders", durable=True)
    conn.close()
    confirmed: list[int] = []
    delivered: set[int] = set()
    acked: set[int] = set()
    stop = threading.Event()

    def publish() -> None:
        pub = connect(broker)
        ch = pub.channel()
        ch.confirm_delivery()
        i = 0
        try:
            while not stop.is_set():
                ch.basic_publish("", "orders", b"%d" % i, PERSISTENT)
                confirmed.append(i)
                i += 1
        except (pika.exceptions.AMQPError, OSError):
            return

    def consume() -> None:
        con = connect(broker)
        ch = con.channel()
        ch.basic_qos(prefetch_count=200)

        def on_message(channel: object, method: object, _props: object, body: bytes) -> None:
            number = int(body)
            delivered.add(number)
            if number % 20:  # leave one in twenty unacked
                ch.basic_ack(method.delivery_tag)  # type: ignore[attr-defined]
                acked.add(number)

        ch.basic_consume("orders", on_message)
        try:
            while not stop.is_set():
                con.process_data_events(0.05)
        except (pika.exceptions.AMQPError, OSError):
            return

    threads = [threading.Thread(target=publish), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    broker.stop(kill=True)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(confirmed) > 100, "the publisher should have been mid-stream"

    broker.restart()
    conn = connect(broker)
    after: dict[int, bool] = {}
    for body, redelivered in drain(conn.channel(), "orders"):
        number = int(body)
        assert number not in after, f"message {number} delivered twice after restart"
        after[number] = redelivered
    lost = [n for n in confirmed if n not in after and n not in acked]
    assert not lost, f"{len(lost)} confirmed messages lost, first {lost[:5]}"
    unacked_before = delivered - acked
    assert unacked_before, "the consumer should have left messages unacked"
    assert all(after[n] for n in unacked_before if n in after)
    assert unacked_before <= set(after)
    conn.close()


def test_settled_segments_are_deleted(restartable: Start) -> None:
    broker = restartable("--set", "amqp.queue_segment_bytes=65536")
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("bulk", durable=True)
    body = b"x" * 1024
    for _ in range(1000):
        ch.basic_publish("", "bulk", body, PERSISTENT)
    segments = broker.queue_dir("bulk") / "m0"
    assert len(list(segments.glob("*.log"))) > 10
    ch.basic_qos(prefetch_count=100)
    count = 0
    for method, _props, _body in ch.consume("bulk", inactivity_timeout=1):
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)
        count += 1
        if count == 1000:
            break
    ch.cancel()
    ch.queue_declare("bulk", passive=True)
    assert count == 1000
    assert len(list(segments.glob("*.log"))) <= 2
    conn.close()
    broker.restart()
    conn = connect(broker)
    assert conn.channel().queue_declare("bulk", passive=True).method.message_count == 0
    conn.close()


def test_deleted_durable_queue_stays_deleted_and_its_log_is_removed(
        restartable: Start) -> None:
    broker = restartable()
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("doomed", durable=True)
    ch.basic_publish("", "doomed", b"x", PERSISTENT)
    ch.queue_declare("doomed", passive=True)
    assert broker.queue_dir("doomed").is_dir()
    ch.queue_delete("doomed")
    assert not broker.queue_dir("doomed").exists()
    conn.close()
    broker.restart()
    conn = connect(broker)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("doomed", passive=True)
    assert info.value.reply_code == 404
    # Declared again, it starts empty.
    ch = conn.channel()
    ch.queue_declare("doomed", durable=True)
    assert ch.queue_declare("doomed", passive=True).method.message_count == 0
    conn.close()


def test_priority_queue_order_survives_restart(restartable: Start) -> None:
    broker = restartable()
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})
    for i, priority in enumerate([1, 5, 9, 0, None, 3, 5]):
        ch.basic_publish("", "prio", b"%d" % i,
                         pika.BasicProperties(delivery_mode=2, priority=priority))
    conn.close()
    broker.restart()
    conn = connect(broker)
    got = [b for b, _ in drain(conn.channel(), "prio")]
    # RabbitMQ 3.10's order for the same publishes: 9 is capped to 5, FIFO per level.
    assert got == [b"1", b"2", b"6", b"5", b"0", b"3", b"4"]
    conn.close()


def test_fsync_always_confirms_survive_kill_9(restartable: Start) -> None:
    broker = restartable("--set", "storage.fsync=always")
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("synced", durable=True)
    for i in range(200):
        ch.basic_publish("", "synced", b"%d" % i, PERSISTENT)
    broker.restart(kill=True)
    conn = connect(broker)
    assert [b for b, _ in drain(conn.channel(), "synced")] == [b"%d" % i for i in range(200)]
    conn.close()


def test_stream_survives_restart_and_retention_drops_old_segments(restartable: Start) -> None:
    broker = restartable("--set", "storage.retention_check_ms=100")
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("events", durable=True, arguments={
        "x-queue-type": "stream", "x-max-length-bytes": 20_000,
        "x-stream-max-segment-size-bytes": 4096})
    ch.confirm_delivery()
    for i in range(100):
        ch.basic_publish("", "events", b"%04d" % i + b"x" * 996)
    conn.close()
    broker.restart()
    time.sleep(0.5)  # a retention pass
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=200)
    offsets: list[int] = []
    ch.basic_consume("events", lambda _c, m, p, _b: offsets.append(p.headers["x-stream-offset"]),
                     arguments={"x-stream-offset": "first"})
    conn.process_data_events(0.5)
    assert offsets and offsets[-1] == 99
    assert offsets == list(range(offsets[0], 100))
    assert offsets[0] > 0 and len(offsets) * 1024 <= 20_000 + 4096
    conn.close()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_backlog_lives_in_the_log_not_in_memory(restartable: Start) -> None:
    """200k persistent 1 KiB messages (200 MB) queued: the broker's RSS barely moves, and
    a restart has them ready without reading them."""
    broker = restartable()
    pid = broker.process.proc.pid
    before = _rss_kb(pid)
    count = 200_000
    done = subprocess.run(
        [sys.executable, str(LOADTEST), "amqp", "--port", str(broker.amqp_port),
         "--persistent", "--confirms", "--consumers", "0", "--count", str(count), "--json"],
        capture_output=True, text=True, timeout=120)
    [result] = json.loads(done.stdout)
    assert result["published"] == count
    grown_mb = (_rss_kb(pid) - before) / 1024
    assert grown_mb < 40, f"RSS grew {grown_mb:.0f} MB for a 200 MB backlog"
    broker.restart()
    conn = connect(broker)
    ch = conn.channel()
    assert ch.queue_declare("loadtest-0", passive=True).method.message_count == count
    method, _props, body = ch.basic_get("loadtest-0", auto_ack=True)
    assert method is not None and len(body) == 1024
    conn.close()
