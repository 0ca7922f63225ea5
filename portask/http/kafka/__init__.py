"""Kafka over HTTP: a small JSON API for topics, records and consumer groups under
``/kafka/v1`` on the HTTP listener, next to the web console that uses it.

One module per resource family registers its routes: ``topics`` (the cluster summary,
topics, partitions, configs), ``records`` (read and produce; AMQP stream queues read
the same way) and ``groups``. ``api`` routes and shapes errors; ``view`` is the one
door to the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portask.http.kafka import groups, records, topics
from portask.http.kafka.api import PREFIX, KafkaApi
from portask.http.kafka.view import KafkaView
from portask.http.management.api import Router

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.http.management.view import BrokerView

__all__ = ["PREFIX", "KafkaApi", "kafka_api"]


def kafka_api(broker: Broker, management: BrokerView) -> KafkaApi:
    view = KafkaView(broker, management)
    router = Router()
    for module in (topics, records, groups):
        module.register(router, view)
    return KafkaApi(router)
