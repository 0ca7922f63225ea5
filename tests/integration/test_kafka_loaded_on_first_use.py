"""The Kafka server is built at the first Kafka connection or control API call, not at
start-up (its API modules are a quarter of the start). Nothing a client or a test sees
may change: the control API still knows which Kafka APIs are served before any Kafka
client has connected, and the first connection is answered in full."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from portask.testing import Broker, ControlError


def test_fault_rules_are_checked_against_the_served_apis_before_any_kafka_client() -> None:
    with Broker() as broker:
        with pytest.raises(ControlError) as refused:
            broker.add_fault(action="error", api="Produc", error="NOT_LEADER_OR_FOLLOWER")
        assert refused.value.status == 400
        assert "unknown kafka API 'Produc'" in str(refused.value)
        rule = broker.add_fault(action="error", api="Produce",
                                error="NOT_LEADER_OR_FOLLOWER", times=1)
        assert rule["api"] == "Produce"

        # The first Kafka connection: the rule applies once, then the retry succeeds.
        broker.record_requests()
        producer = Producer({"bootstrap.servers": broker.kafka_bootstrap,
                             "retry.backoff.ms": 50})
        delivered: list[tuple[object, object]] = []
        producer.produce("first", b"v", on_delivery=lambda e, m: delivered.append((e, m)))
        assert producer.flush(10) == 0
        assert delivered and delivered[0][0] is None
        produces = broker.requests(protocol="kafka", api="Produce")
        assert produces[0]["fault"] == "error"
        assert produces[0]["errors"] == ["NOT_LEADER_OR_FOLLOWER"]
        assert produces[-1]["fault"] is None and produces[-1]["errors"] == []


def test_close_all_connections_before_any_kafka_client_closes_none() -> None:
    with Broker() as broker:
        assert broker.close_connections() == 0
        producer = Producer({"bootstrap.servers": broker.kafka_bootstrap})
        producer.produce("after", b"v")
        assert producer.flush(10) == 0
