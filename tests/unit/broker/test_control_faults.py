"""Fault rules as data: which rule a request takes, in the order rules were added."""

from __future__ import annotations

import pytest

from portask.broker.control import ControlError, Faults, RequestEntry, RequestLog


def test_amqp_rules_apply_in_order_across_the_exchange_index() -> None:
    faults = Faults()
    anywhere = faults.add(protocol="amqp", method="basic.publish", action="close", times=1)
    named = faults.add(protocol="amqp", method="basic.publish", exchange="orders",
                       action="error", code=406)
    assert faults.take_amqp("basic.publish", None, "orders") is anywhere  # added first
    assert faults.take_amqp("basic.publish", None, "orders") is named
    assert faults.take_amqp("basic.publish", None, "other") is None
    assert faults.take_amqp("queue.declare", "q", None) is None
    assert faults.amqp_methods == {"basic.publish"}


def test_nack_rules_are_asked_apart_and_match_routing_key_and_queue() -> None:
    faults = Faults()
    rule = faults.add(protocol="amqp", method="basic.publish", action="nack",
                      routing_key="eu", queue="jobs")
    assert faults.amqp_nack and faults.nack_by_queue and not faults.amqp
    assert faults.take_amqp("basic.publish", "jobs", "", "eu") is None  # not a nack ask
    assert faults.take_amqp("basic.publish", "jobs", "", "us", nack=True) is None
    assert faults.take_amqp("basic.publish", "other", "", "eu", nack=True) is None
    assert faults.take_amqp("basic.publish", "jobs", "", "eu", nack=True) is rule


def test_kafka_rules_match_a_version_range() -> None:
    faults = Faults()
    rule = faults.add(protocol="kafka", action="throttle", api="Fetch", throttle_ms=100,
                      min_version=4, max_version=11)
    assert faults.take("kafka", "Fetch", 3, ()) is None
    assert faults.take("kafka", "Fetch", 12, ()) is None
    assert faults.take("kafka", "Fetch", 11, ()) is rule
    with pytest.raises(ControlError):
        faults.add(protocol="kafka", action="throttle", api="Fetch")  # no throttle_ms


def test_the_request_log_is_a_ring_filtered_by_protocol_fields() -> None:
    log = RequestLog(size=2)
    for queue in ("a", "b", "c"):
        log.add(RequestEntry(protocol="amqp", api="queue.declare", version=None,
                             client_id=None, connection="c", topics=(), size=10,
                             details={"queue": queue}, reply_code=200 if queue != "c"
                             else 404))
    assert [e.details["queue"] for e in log.find()] == ["b", "c"]
    assert [e.details["queue"] for e in log.find(api="Queue.Declare", queue="c")] == ["c"]
    assert [e.details["queue"] for e in log.find(errors_only=True)] == ["c"]


def test_kafka_rules_apply_in_order_across_the_topic_index() -> None:
    faults = Faults()
    any_api = faults.add(protocol="kafka", action="drop", topic="orders", times=1)
    produce = faults.add(protocol="kafka", action="close", api="Produce")
    faults.add(protocol="kafka", action="drop", api="Produce", topic="elsewhere")
    assert faults.take("kafka", "Produce", 9, ("audit", "orders")) is any_api  # first added
    assert faults.take("kafka", "Produce", 9, ("audit", "orders")) is produce
    assert faults.take("kafka", "Fetch", 12, ("orders",)) is None
