"""A connection's output held back by a ``delay`` or ``drop`` fault rule (control API).

While held, the connection's transport is swapped for a ``HeldOutput`` that keeps what
is written: the answer to the matching method and everything after it, in order, as
behind a slow or lost packet (AMQP has no per-answer ordering to keep apart: confirms
are cumulative, so an answer that overtook a held one would confirm it). ``delay``
writes it all when ``delay_ms`` has passed; ``drop`` never does (the client's wait
times out, its heartbeat check sees a silent broker). Nothing is swapped while no such
rule matches, so the connection's own paths pay nothing for this.

Flow control is the transport's: once the held bytes pass the connection's write
high-water mark, the connection is told to pause writing (deliveries stop, and reading
stops), so a held connection costs a bounded amount of memory.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class HoldingConnection(Protocol):
    """What of ``AmqpConnection`` a hold uses."""

    transport: Any
    _timers: list[asyncio.TimerHandle]

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


def hold(conn: HoldingConnection, delay_ms: int | None) -> None:
    """Hold what ``conn`` writes from now on for ``delay_ms`` (None: for good). A hold
    already in place is extended to the later of the two ends."""
    transport = conn.transport
    if transport is None:
        return
    if not isinstance(transport, HeldOutput):
        transport = HeldOutput(conn, transport)
        conn.transport = transport
    transport.extend(delay_ms)


class HeldOutput:
    """Stands in for the connection's transport while its output is held."""

    def __init__(self, conn: HoldingConnection, transport: asyncio.Transport) -> None:
        self._conn = conn
        self._transport = transport
        self._held: list[bytes] = []
        self._size = 0
        self._paused = False
        self._limit = transport.get_write_buffer_limits()[1]
        self._loop = asyncio.get_running_loop()
        self._release: asyncio.TimerHandle | None = None
        self._release_at: float | None = 0.0  # None: dropped, never released

    def extend(self, delay_ms: int | None) -> None:
        if self._release_at is None:
            return
        if delay_ms is None:
            self._release_at = None
            if self._release is not None:
                self._release.cancel()
            return
        at = self._loop.time() + delay_ms / 1000
        if at <= self._release_at:
            return
        self._release_at = at
        if self._release is not None:
            self._release.cancel()
        self._release = self._loop.call_at(at, self.release)
        self._conn._timers.append(self._release)

    def release(self) -> None:
        """Write what was held and give the connection its transport back."""
        conn = self._conn
        if conn.transport is not self:  # closed meanwhile
            return
        conn.transport = self._transport
        if self._held:
            self._transport.write(b"".join(self._held))
            self._held.clear()
        if self._paused and self._transport.get_write_buffer_size() <= self._limit:
            conn.resume_writing()

    # -- the transport's interface --------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._held.append(bytes(data))
        self._size += len(data)
        if not self._paused and self._size > self._limit:
            self._paused = True
            self._conn.pause_writing()

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def close(self) -> None:
        # A delayed answer goes out ahead of the close (a slow answer still arrives);
        # a dropped one never does.
        if self._release is not None:
            self._release.cancel()
        if self._release_at is not None and self._held:
            self._transport.write(b"".join(self._held))
            self._held.clear()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # The rest (abort, pause_reading, get_extra_info, is_closing...) is the real one's.
        return getattr(self._transport, name)
