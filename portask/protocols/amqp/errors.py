"""Exceptions the AMQP handlers raise to close a channel or the connection."""

from __future__ import annotations


class AmqpError(Exception):
    def __init__(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id


class ChannelClose(AmqpError):
    """Closes one channel (404, 403, 405, 406); the connection keeps serving."""


class ConnectionClose(AmqpError):
    """Closes the whole connection (5xx and 530)."""
