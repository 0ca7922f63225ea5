"""Per-object metric series live as long as the objects they count."""

from __future__ import annotations

from prometheus_client import REGISTRY

from portask.broker.amqp.vhosts import VirtualHosts


def _consumed(queue: str) -> float | None:
    return REGISTRY.get_sample_value(
        "portask_messages_consumed_total", {"protocol": "amqp", "topic": "", "queue": queue})


def _produced(exchange: str) -> float | None:
    return REGISTRY.get_sample_value(
        "portask_messages_produced_total", {"protocol": "amqp", "topic": "", "exchange": exchange})


def test_series_of_deleted_queues_and_exchanges_are_dropped() -> None:
    # Found by the end-to-end fuzzer: every exclusive queue and auto-delete exchange ever
    # declared kept its counters, ~5 KB per connection of an RPC client, for good.
    vhosts = VirtualHosts(["/", "other"]).open()
    first, second = vhosts.get("/"), vhosts.get("other")
    assert first is not None and second is not None
    owner = object()
    for vhost in (first, second):
        vhost.declare_queue("metrics-q", owner=owner)
        vhost.declare_exchange("metrics-x", "fanout")
    assert _consumed("metrics-q") == 0 and _produced("metrics-x") == 0
    # The series are labelled by name alone: the other vhost's objects still count there.
    first.delete_queue("metrics-q", owner=owner)
    first.delete_exchange("metrics-x")
    assert _consumed("metrics-q") == 0 and _produced("metrics-x") == 0
    second.delete_queue("metrics-q", owner=owner)
    second.delete_exchange("metrics-x")
    assert _consumed("metrics-q") is None and _produced("metrics-x") is None
    # Declared again, it is counted again.
    first.declare_queue("metrics-q", owner=owner)
    assert _consumed("metrics-q") == 0
