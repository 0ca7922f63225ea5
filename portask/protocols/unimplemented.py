"""The honest answer of a listener whose protocol this build does not speak yet.

It accepts the connection, logs one line saying so, and closes it, so a client sees
an immediate disconnect rather than a hang or a fake handshake.
"""

from __future__ import annotations

import asyncio
import logging

from portask import metrics

log = logging.getLogger("portask.protocols")


class NotImplementedProtocol(asyncio.Protocol):
    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        metrics.CONNECTIONS_TOTAL.labels(self.protocol).inc()
        log.info(
            "closing connection: this build does not implement the protocol yet (see README)",
            extra={"fields": {"protocol": self.protocol,
                              "peer": transport.get_extra_info("peername")}},
        )
        transport.close()
