"""Dead-lettering: the property codec the broker needs, and RabbitMQ's cycle rule.

The broker never decodes AMQP properties itself; the protocol layer supplies a
``PropertyCodec`` and the vhost calls it only on this path (and for x-delivery-count
on quorum redeliveries), never per published message.
"""

from __future__ import annotations

import datetime
from typing import Any, Protocol


class UndecodableProperties(ValueError):
    """A message's properties cannot be decoded, so no x-death entry can be added."""


class PropertyCodec(Protocol):
    def dead_lettered(
        self, properties: bytes | memoryview, *, queue: str, reason: str, exchange: str,
        routing_keys: list[str], time: datetime.datetime,
    ) -> tuple[bytes, list[dict[str, Any]]]:
        """Properties with the x-death entry for this death added (RabbitMQ's rules:
        a repeat of queue+reason+exchange increments that entry's count and moves it
        first; x-first-death-* set once; expiration moved to original-expiration);
        also returns the resulting x-death list. Raises UndecodableProperties."""

    def headers(self, properties: bytes | memoryview) -> dict[str, Any] | None:
        """The headers table, for routing by a headers exchange and for CC keys."""

    def set_int_header(self, properties: bytes | memoryview, name: str, value: int) -> bytes:
        """Properties with one integer header set (x-delivery-count)."""

    def to_plain(self, properties: bytes | memoryview) -> dict[str, Any]:
        """The properties that are set, by their AMQP names (content_type, headers, ...)."""

    def from_plain(self, values: dict[str, Any]) -> bytes:
        """Encoded properties from AMQP names; raises ValueError on an unknown name or
        a value of the wrong type."""


def is_cycle(queue: str, deaths: list[dict[str, Any]]) -> bool:
    """RabbitMQ drops a dead letter that would return to a queue it already died in
    when the loop is "fully automatic": no death on the way was a client rejection."""
    for i, death in enumerate(deaths):
        if death.get("queue") == queue:
            return all(d.get("reason") != "rejected" for d in deaths[: i + 1])
    return False
