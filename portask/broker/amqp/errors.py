"""Why the broker core refused an AMQP-model operation, independent of any wire format.

The protocol layer maps each kind to its reply code and decides whether it closes a
channel or the whole connection; the core only says what went wrong.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every refusal; ``text`` is shown to the client as the reply text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class NotFound(BrokerError):
    """A named exchange or queue does not exist."""


class PreconditionFailed(BrokerError):
    """A redeclare does not match, a delete condition does not hold, an unknown tag."""


class ResourceLocked(BrokerError):
    """An exclusive queue belongs to another connection."""


class AccessRefused(BrokerError):
    """Reserved names, internal exchanges, exclusive consumers."""


class CommandInvalid(BrokerError):
    """The request cannot be carried out at all (e.g. an unknown exchange type)."""


class NotImplementedFeature(BrokerError):
    """A valid request for something this broker does not implement yet."""
