"""A full disk under a durable queue: publishers are refused (nack, or Connection.Blocked
by the disk alarm), confirmed messages stay deliverable and ackable, nothing nacked is
delivered, and publishing works again once space returns, all without a restart.

The broker's data directory is a tmpfs of a few MiB that the test mounts when it runs
as root and mounting is permitted. Otherwise (and as well, when it is root, so that both
are exercised) the broker runs under ``enospc_broker``, which makes the storage layer's
pwrite/pwritev calls fail with ENOSPC past a byte budget: the same error at the same
place, without a real filesystem. The disk alarm reads the real filesystem's free
space, so the alarm test needs the tmpfs and is skipped without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pika
import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.amqp.enospc_broker import BUDGET_FILE_ENV

DISK_BYTES = 8 << 20
BALLAST_BYTES = 1 << 20
BODY_BYTES = 16 << 10
# Small segments, so that acked messages free their space soon.
SEGMENT_ARGS = ("--set", "amqp.queue_segment_bytes=256KiB")
PERSISTENT = pika.BasicProperties(delivery_mode=2)
REPO_ROOT = Path(__file__).resolve().parents[3]


def body(i: int) -> bytes:
    return b"%08d" % i + b"m" * (BODY_BYTES - 8)


class SmallDisk:
    """The broker's data directory on a disk of a few MiB, and a way to free space."""

    def __init__(self, root: Path, mode: str) -> None:
        self.mode = mode
        # The broker's stderr goes next to the data dir, so not onto the small disk.
        self.data_dir = root / "data"
        self.data_dir.mkdir()
        self.budget_file = root / "disk-budget"
        if mode == "tmpfs":
            if os.geteuid() != 0:
                pytest.skip("mounting a tmpfs needs root")
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                 str(self.data_dir)], capture_output=True, text=True)
            if mounted.returncode:
                pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
            # Freed later: space that returns without anything in the broker changing.
            (self.data_dir / "ballast").write_bytes(b"\xff" * BALLAST_BYTES)
        else:
            self.budget_file.write_text(str(DISK_BYTES - BALLAST_BYTES))
        self.broker: BrokerProcess | None = None

    def start(self, *args: str) -> BrokerProcess:
        if self.mode == "tmpfs":
            self.broker = start_broker(self.data_dir, *args)
        else:
            self.broker = start_broker(
                self.data_dir, *args, module="tests.integration.amqp.enospc_broker",
                env={BUDGET_FILE_ENV: str(self.budget_file), "PYTHONPATH": str(REPO_ROOT)})
        return self.broker

    def free(self) -> None:
        if self.mode == "tmpfs":
            (self.data_dir / "ballast").unlink()
        else:
            self.budget_file.write_text(str(1 << 40))

    def close(self) -> None:
        if self.broker is not None and self.broker.proc.poll() is None:
            self.broker.stop()
        if self.mode == "tmpfs":
            subprocess.run(["umount", str(self.data_dir)], check=True)


@pytest.fixture(params=["tmpfs", "injected"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path, request.param)
    yield disk
    disk.close()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path, "tmpfs")
    yield disk
    disk.close()


def publish(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str,
            ids: range) -> tuple[list[int], list[int]]:
    """Publish persistent messages with confirms: (confirmed ids, nacked ids)."""
    confirmed: list[int] = []
    nacked: list[int] = []
    for i in ids:
        try:
            channel.basic_publish("", queue, body(i), PERSISTENT)
        except pika.exceptions.NackError:
            nacked.append(i)
        else:
            confirmed.append(i)
    return confirmed, nacked


def consume(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str,
            count: int) -> list[int]:
    """Consume and ack ``count`` messages (fewer if none comes for 3 s); their ids."""
    received: list[int] = []
    if count:
        for method, _props, payload in channel.consume(queue, inactivity_timeout=3):
            if method is None:
                break
            assert len(payload) == BODY_BYTES
            received.append(int(payload[:8]))
            channel.basic_ack(method.delivery_tag)
            if len(received) == count:
                break
        channel.cancel()
    # Nothing beyond them: the queue is empty.
    assert channel.basic_get(queue)[0] is None
    return received


def test_confirmed_messages_outlive_a_write_error_and_publishing_resumes(
    small_disk: SmallDisk,
) -> None:
    # No disk alarm: the write error itself is what refuses publishers.
    broker = small_disk.start("--set", "amqp.disk_free_limit_bytes=0", *SEGMENT_ARGS)
    queue = f"full-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
    channel = conn.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue, durable=True)

    confirmed: list[int] = []
    nacked: list[int] = []
    sent = 0
    while not nacked:
        assert sent * BODY_BYTES < 4 * DISK_BYTES, "never refused"
        ok, refused = publish(channel, queue, range(sent, sent + 16))
        confirmed += ok
        nacked += refused
        sent += 16
    more_ok, more_refused = publish(channel, queue, range(sent, sent + 8))  # still full
    confirmed += more_ok
    nacked += more_refused
    sent += 8
    assert len(confirmed) * BODY_BYTES > DISK_BYTES // 2
    assert len(more_refused) == 8

    # Every confirmed message is delivered, in order, and acked, with the disk full;
    # no nacked one is.
    assert channel.queue_declare(queue, durable=True, passive=True).method.message_count \
        == len(confirmed)
    channel.basic_qos(prefetch_count=64)
    assert consume(channel, queue, len(confirmed)) == confirmed

    small_disk.free()
    again, refused_again = publish(channel, queue, range(sent, sent + 100))
    assert refused_again == [] and again == list(range(sent, sent + 100))
    assert consume(channel, queue, 100) == again
    conn.close()

    assert broker.proc.poll() is None  # the same process throughout
    stderr = broker.stderr_text()
    assert "Traceback" not in stderr
    assert stderr.count("queue cannot write its log") == 1
    assert stderr.count("queue writes its log again") == 1


async def test_pipelined_publishes_are_acked_up_to_the_failed_write_and_nacked_after(
    small_disk: SmallDisk,
) -> None:
    broker = small_disk.start("--set", "amqp.disk_free_limit_bytes=0", *SEGMENT_ARGS)
    url = f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/"
    queue = f"pipe-{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()  # publisher confirms on
        declared = await channel.declare_queue(queue, durable=True)

        async def window(first: int, count: int) -> list[bool]:
            """Publish ``count`` at once, confirms outstanding together: acked or not."""
            results = await asyncio.gather(*(
                channel.default_exchange.publish(
                    aio_pika.Message(body(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    queue)
                for i in range(first, first + count)), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    assert isinstance(result, aio_pika.exceptions.DeliveryError), result
            return [not isinstance(result, BaseException) for result in results]

        outcomes: list[bool] = []
        while all(outcomes):
            assert len(outcomes) * BODY_BYTES < 4 * DISK_BYTES, "never refused"
            outcomes += await window(len(outcomes), 64)
        outcomes += await window(len(outcomes), 64)  # still full, or nearly
        # The broker reads a window in several batches, and a small later batch may
        # still fit where a larger one did not: what counts is that exactly the acked
        # publishes are delivered, in order.
        acked = [i for i, ok in enumerate(outcomes) if ok]
        assert 0 < len(acked) < len(outcomes)

        received: list[int] = []
        async with declared.iterator() as messages:
            async for message in messages:
                received.append(int(message.body[:8]))
                await message.ack()
                if len(received) == len(acked):
                    break
        assert received == acked

        small_disk.free()
        first = len(outcomes)
        assert await window(first, 64) == [True] * 64
        got: list[int] = []
        async with declared.iterator() as messages:
            async for message in messages:
                got.append(int(message.body[:8]))
                await message.ack()
                if len(got) == 64:
                    break
        assert got == list(range(first, first + 64))
        assert await declared.get(fail=False) is None
    assert "Traceback" not in broker.stderr_text()


async def test_a_write_error_sets_the_disk_alarm_at_once(
    small_tmpfs: SmallDisk, caplog: pytest.LogCaptureFixture,
) -> None:
    # A free-space floor of a few messages: the write error nearly always comes first,
    # and must set the alarm itself rather than wait for the next check (1 s).
    broker = small_tmpfs.start("--set", "amqp.disk_free_limit_bytes=64KiB", *SEGMENT_ARGS)
    caplog.set_level(logging.WARNING, logger="aiormq.connection")
    url = f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/"
    queue = f"alarm-{uuid.uuid4().hex[:8]}"
    publisher = await aio_pika.connect(url)
    consumer = await aio_pika.connect(url)
    async with publisher, consumer:
        pch = await publisher.channel()  # publisher confirms on
        await pch.declare_queue(queue, durable=True)

        def send(i: int) -> asyncio.Future[object]:
            return asyncio.ensure_future(pch.default_exchange.publish(
                aio_pika.Message(body(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                queue))

        confirmed: list[int] = []
        nacked: list[int] = []
        i = 0
        while True:
            assert i * BODY_BYTES < 4 * DISK_BYTES, "never refused"
            pending = send(i)
            done, _ = await asyncio.wait({pending}, timeout=1.5)
            if not done:
                break  # blocked: this publish waits in the socket buffers
            try:
                pending.result()
            except aio_pika.exceptions.DeliveryError:
                nacked.append(i)
            else:
                confirmed.append(i)
            i += 1
        # At most the publish whose write failed is nacked: the next one is blocked.
        assert len(nacked) <= 1
        assert any(r.args and r.args[-1] == "low on disk" for r in caplog.records)

        # Draining the queue deletes its settled segments: the alarm clears on the
        # next check and the publish that waited is stored and confirmed.
        cch = await consumer.channel()
        await cch.set_qos(prefetch_count=64)
        declared = await cch.declare_queue(queue, durable=True, passive=True)
        assert declared.declaration_result.message_count == len(confirmed)
        received: list[int] = []
        async with declared.iterator() as messages:
            async for message in messages:
                received.append(int(message.body[:8]))
                await message.ack()
                if len(received) == len(confirmed):
                    break
        assert received == confirmed
        await asyncio.wait_for(pending, 10)
        later = list(range(i, i + 21))
        for j in later[1:]:
            await asyncio.wait_for(send(j), 5)
        got: list[int] = []
        async with declared.iterator() as messages:
            async for message in messages:
                got.append(int(message.body[:8]))
                await message.ack()
                if len(got) == len(later):
                    break
        assert got == later
    assert "Traceback" not in broker.stderr_text()
