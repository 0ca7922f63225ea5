"""A deliberately minimal AMQP client over a raw socket, for sending bytes real clients
never would. Frames are encoded with pamqp (a third-party codec), not Portask code."""

from __future__ import annotations

import socket
import struct
import time

from pamqp import commands, frame, heartbeat
from pamqp.base import Frame

HEADER = b"AMQP\x00\x00\x09\x01"


class RawClient:
    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Frame) -> None:
        self.send(frame.marshal(method, channel))

    def recv_frame(self) -> tuple[int, object]:
        """(channel, pamqp frame); raises ConnectionError when the server closes."""
        while True:
            if len(self.buf) >= 7:
                size = struct.unpack_from(">I", self.buf, 3)[0]
                if len(self.buf) >= size + 8:
                    used, channel, value = frame.unmarshal(self.buf)
                    self.buf = self.buf[used:]
                    return channel, value
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by server")
            self.buf += data

    def expect(self, cls: type) -> object:
        while True:
            _channel, value = self.recv_frame()
            if isinstance(value, heartbeat.Heartbeat):
                continue
            assert isinstance(value, cls), f"expected {cls.__name__}, got {value!r}"
            return value

    def handshake(self, heartbeat_s: int = 0, open_channel: bool = True) -> None:
        self.send(HEADER)
        self.expect(commands.Connection.Start)
        self.send_method(0, commands.Connection.StartOk(
            client_properties={"product": "rawclient"}, mechanism="PLAIN",
            response="\0guest\0guest", locale="en_US"))
        tune = self.expect(commands.Connection.Tune)
        self.send_method(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max,  # type: ignore[attr-defined]
            heartbeat=heartbeat_s))
        self.send_method(0, commands.Connection.Open(virtual_host="/"))
        self.expect(commands.Connection.OpenOk)
        if open_channel:
            self.send_method(1, commands.Channel.Open())
            self.expect(commands.Channel.OpenOk)

    def close_or_drop(self) -> tuple[int, str, int, int] | None:
        """The server's Connection.Close as (code, text, class id, method id), or None when
        it drops the connection without one (RabbitMQ's answer to input it cannot parse)."""
        try:
            close = self.expect(commands.Connection.Close)
        except ConnectionError:
            return None
        return (close.reply_code, close.reply_text,  # type: ignore[attr-defined]
                close.class_id, close.method_id)  # type: ignore[attr-defined]

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the socket (EOF), False on timeout."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def close(self) -> None:
        self.sock.close()
