"""Exchange types, one module each; ``EXCHANGE_TYPES`` maps the AMQP type name to its class."""

from __future__ import annotations

from portask.broker.amqp.exchanges.base import Binding, Destination, Exchange, HeadersSource
from portask.broker.amqp.exchanges.default import DefaultExchange
from portask.broker.amqp.exchanges.direct import DirectExchange
from portask.broker.amqp.exchanges.fanout import FanoutExchange
from portask.broker.amqp.exchanges.headers import HeadersExchange
from portask.broker.amqp.exchanges.topic import TopicExchange

EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    cls.kind: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "DefaultExchange",
    "Destination",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "HeadersSource",
    "TopicExchange",
]
