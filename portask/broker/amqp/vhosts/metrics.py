"""A vhost's counters: lifetime totals for the management API, and the Prometheus series
of its exchanges and queues (bound at declare, flushed about once a second, removed at
delete)."""

from __future__ import annotations

import collections
import contextlib
from typing import Any

from portask import metrics
from portask.broker.amqp.exchanges import Exchange
from portask.broker.amqp.queues import AmqpQueue


class QueueTotals:
    """Lifetime message counters summed over queues (read by the management API)."""

    __slots__ = (
        "ack",
        "deliver",
        "deliver_get",
        "deliver_no_ack",
        "get",
        "get_empty",
        "get_no_ack",
        "publish",
        "redeliver",
    )

    def __init__(self) -> None:
        self.publish = self.deliver_get = self.ack = self.redeliver = 0
        self.deliver = self.deliver_no_ack = self.get = self.get_no_ack = self.get_empty = 0

    def add(self, queue: AmqpQueue) -> QueueTotals:
        delivered = queue.delivered + queue.delivered_flushed
        self.publish += queue.published_total
        self.deliver_get += delivered
        self.ack += queue.acked_total
        self.redeliver += queue.redelivered + queue.redelivered_flushed
        self.deliver += delivered - queue.gets
        self.deliver_no_ack += queue.deliveries_no_ack
        self.get += queue.gets
        self.get_no_ack += queue.gets_no_ack
        self.get_empty += queue.gets_empty
        return self

    def merge(self, other: QueueTotals) -> QueueTotals:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def queue_totals(queue: AmqpQueue) -> QueueTotals:
    return QueueTotals().add(queue)


# The message and byte counters are labelled by exchange or queue name alone, so
# same-named objects in different vhosts share a series: it is removed only when the
# last of them is deleted.
_NAMED_METRIC_USERS: collections.Counter[tuple[str, str]] = collections.Counter()


def _last_user(kind: str, name: str) -> bool:
    _NAMED_METRIC_USERS[kind, name] -= 1
    if _NAMED_METRIC_USERS[kind, name] > 0:
        return False
    del _NAMED_METRIC_USERS[kind, name]
    return True


def flush_queue(vhost: str, queue: AmqpQueue) -> None:
    if queue.delivered:
        queue.metric_messages.inc(queue.delivered)
        queue.metric_bytes.inc(queue.delivered_bytes)
        queue.delivered_flushed += queue.delivered
        queue.delivered = queue.delivered_bytes = 0
    if queue.redelivered:
        metrics.AMQP_MESSAGES_REDELIVERED.labels(vhost, queue.name).inc(queue.redelivered)
        queue.redelivered_flushed += queue.redelivered
        queue.redelivered = 0


def bind_exchange(exchange: Exchange) -> None:
    exchange.metric_messages = metrics.MESSAGES_PRODUCED.labels("amqp", "", exchange.name)
    exchange.metric_bytes = metrics.BYTES_PRODUCED.labels("amqp", "", exchange.name)
    _NAMED_METRIC_USERS["exchange", exchange.name] += 1


def _release(vhost: str, kind: str, name: str, per_vhost: Any,
             named: tuple[Any, ...]) -> None:
    """A deleted exchange's or queue's series go with it, or every name ever declared
    (server-named, per-client; exclusive reply queues come and go by the thousand)
    would stay in memory and in /metrics for good. ``named`` series are shared by
    same-named objects of other vhosts: they go with the last one."""
    with contextlib.suppress(KeyError):
        per_vhost.remove(vhost, name)
    if _last_user(kind, name):
        for counter in named:
            with contextlib.suppress(KeyError):
                counter.remove("amqp", "", name)


def release_exchange(vhost: str, exchange: Exchange) -> None:
    _release(vhost, "exchange", exchange.name, metrics.AMQP_MESSAGES_UNROUTABLE,
             (metrics.MESSAGES_PRODUCED, metrics.BYTES_PRODUCED))


def release_queue(vhost: str, queue: AmqpQueue) -> None:
    _release(vhost, "queue", queue.name, metrics.AMQP_MESSAGES_REDELIVERED,
             (metrics.MESSAGES_CONSUMED, metrics.BYTES_CONSUMED))


def bind_queue(vhost: str, queue: AmqpQueue) -> None:
    queue.metric_messages = metrics.MESSAGES_CONSUMED.labels("amqp", "", queue.name)
    queue.metric_bytes = metrics.BYTES_CONSUMED.labels("amqp", "", queue.name)
    _NAMED_METRIC_USERS["queue", queue.name] += 1
    metrics.AMQP_QUEUE_MESSAGES_READY.labels(vhost, queue.name).set_function(
        lambda: float(queue.message_count)
    )
    metrics.AMQP_QUEUE_MESSAGES_UNACKED.labels(vhost, queue.name).set_function(
        lambda: float(queue.unacked)
    )
    metrics.AMQP_QUEUE_CONSUMERS.labels(vhost, queue.name).set_function(
        lambda: float(queue.consumer_count)
    )
