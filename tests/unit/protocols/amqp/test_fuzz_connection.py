"""Fuzz target: AMQP framing and the connection/channel state machine, in process.

A valid session (handshake, confirms, a headers exchange, a dead-lettering queue,
publishes with properties, get, reject, consume, ack, close) is mutated as one byte
stream, or one frame at a time with its size field kept true so that the mutation
reaches the method inside. The bytes go over a real socket pair to an AmqpConnection
of an in-memory AmqpServer (no broker process: each example gets fresh state in a
millisecond, and hypothesis can shrink what it finds; tests/integration/
test_fuzz_broker.py does the same against `portask serve`).

Contract: a bad frame closes the channel or the connection with the spec's code;
never 541 INTERNAL_ERROR, never a log line with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.exceptions import UnmarshalingException
from pamqp.header import ContentHeader

from portask.broker.amqp.vhosts import VirtualHosts
from portask.config import load_settings
from portask.protocols.amqp.context import AmqpContext
from portask.protocols.amqp.properties import AmqpPropertyCodec
from portask.protocols.amqp.server import AmqpServer
from tests.amqp_session import (
    FIRST_PUBLISH,
    FIRST_QUEUE_DECLARE,
    FRAME_HEAD,
    session,
    with_payload,
)
from tests.mutation import fuzz_settings, mutate

pytestmark = pytest.mark.fuzz

INTERNAL_ERROR = 541
_SESSION = tuple(session())


def _replaced(at: int, payload: bytes) -> bytes:
    return b"".join(with_payload(list(_SESSION), at, payload))


# Found by this target (issue 9, item 5): a basic.publish whose exchange name is not
# UTF-8 gets 541 and a traceback instead of 502 SYNTAX_ERROR.
_NOT_UTF8_EXCHANGE = _replaced(FIRST_PUBLISH, b"\x00\x3c\x00\x28\x00\x00\x01\xff\x01q\x00")
# Issue 9, item 5: a name RabbitMQ accepts but pamqp's encoder of the reply refuses.
_ACCENTED_QUEUE = _replaced(
    FIRST_QUEUE_DECLARE, b"\x00\x32\x00\x0a\x00\x00\x05caf\xc3\xa9\x00\x00\x00\x00\x00")
# Found by this target: properties whose flags announce a reply-to that is not there
# pass the publish path, are stored, and go out to the consumer as a content header no
# client can decode (RabbitMQ decodes properties at publish and refuses these).
_MISSING_REPLY_TO = _replaced(FIRST_PUBLISH + 1, b"\x00\x3c\x00\x00" + bytes(7) + b"\x05\x02\x00")


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, str]:
    """The session's bytes with one frame's payload mutated (size kept true), or the
    whole stream mutated (sizes, frame ends and boundaries lie too)."""

    def choose(low: int, high: int) -> int:
        return draw(st.integers(low, high))

    frames = list(_SESSION)
    if draw(st.integers(0, 15)) == 0:
        return b"".join(frames), "valid"
    if draw(st.booleans()):
        at = draw(st.integers(1, len(frames) - 1))
        payload = mutate(frames[at][7:-1], choose, _SESSION)
        return b"".join(with_payload(frames, at, payload)), "one frame"
    return mutate(b"".join(frames), choose, _SESSION), "stream"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _captured_logs() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("portask")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _replies(data: bytes) -> list[tuple[int, Any]]:
    """The server's frames, decoded by pamqp (an independent decoder): whatever a client
    sent, what the server sends must be well-formed."""
    out = []
    while len(data) >= 8:
        size = FRAME_HEAD.unpack_from(data)[2]
        if len(data) < size + 8:
            break
        try:
            _, channel, value = frame.unmarshal(data[: size + 8])
        except UnmarshalingException as exc:
            raise AssertionError(f"the server sent a frame pamqp cannot decode: {exc}") from None
        out.append((channel, value))
        data = data[size + 8 :]
    return out


async def _converse(stream: bytes) -> bytes:
    """Send the stream to a fresh connection; everything it answered until it closed or
    had nothing more to say."""
    loop = asyncio.get_running_loop()
    settings = load_settings(environ={})
    vhosts = VirtualHosts(["/"], codec=AmqpPropertyCodec()).open()
    server = AmqpServer(AmqpContext(settings.amqp, settings.network, vhosts))
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(server.connection, theirs)
    received = bytearray()
    try:
        await loop.sock_sendall(ours, stream)
        idle = 0
        # The server answers within a loop turn or two of the bytes arriving; a few
        # quiet turns mean it waits for more (a truncated frame), which is fine.
        while idle < 5:
            await asyncio.sleep(0)
            try:
                chunk = ours.recv(1 << 16)
            except BlockingIOError:
                idle += 1
                continue
            if not chunk:
                break
            received += chunk
            idle = 0
    finally:
        ours.close()
        transport.close()
        server.close_all()
        await asyncio.sleep(0)
    return bytes(received)


def test_the_valid_session_is_served_to_the_end() -> None:
    with _captured_logs() as logs:
        replies = _replies(asyncio.run(_converse(b"".join(_SESSION))))
    kinds = [type(v).__name__ for _, v in replies]
    assert kinds[0] == "Start" and kinds[-1] == "CloseOk", kinds
    # Got from "q", then consumed from "dead": the headers-routed one and the rejected one.
    assert [v.value for _, v in replies if isinstance(v, ContentBody)] == [
        b"first", b"routed", b"first"]
    headers = [v.properties.headers for _, v in replies if isinstance(v, ContentHeader)]
    assert headers[2]["x-death"][0]["reason"] == "rejected"
    assert not [r for r in logs.records if r.levelno >= logging.WARNING]


def _check_session(stream: bytes) -> list[int]:
    """Fail on a traceback, a 541 or an undecodable reply; the close codes sent."""
    with _captured_logs() as logs:
        replies = _replies(asyncio.run(_converse(stream)))
    broken = [r for r in logs.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not broken, f"{broken[0].getMessage()}: {broken[0].exc_info!r}"
    closes = [(v.reply_code, v.reply_text) for _, v in replies
              if isinstance(v, commands.Connection.Close | commands.Channel.Close)]
    assert INTERNAL_ERROR not in [code for code, _ in closes], closes
    return [code for code, _ in closes]


@fuzz_settings(scale=0.5)
@example(case=(_NOT_UTF8_EXCHANGE, "exact bytes"))
@example(case=(_MISSING_REPLY_TO, "exact bytes"))
@example(case=(_ACCENTED_QUEUE, "exact bytes"))
@given(case=_streams())
def test_a_mutated_session_closes_with_a_protocol_error_never_a_traceback(
    case: tuple[bytes, str],
) -> None:
    stream, how = case
    event(f"mutated: {how}")
    codes = _check_session(stream)
    event(f"closed with {codes[-1]}" if codes else "not closed")
