"""Kafka's internal topic names are never user topics here (issue 12).

Kafka keeps group offsets in ``__consumer_offsets`` and transaction state in
``__transaction_state``; Portask keeps both in its own store. Asking for them by name
used to auto-create an empty ordinary topic that lag monitors then read as the real one.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import bootstrap
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

METADATA = 3

INTERNAL = ["__consumer_offsets", "__transaction_state"]


@pytest.mark.parametrize("name", INTERNAL)
def test_metadata_naming_an_internal_topic_creates_nothing(
    kafka_broker: BrokerProcess, name: str
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap(kafka_broker.kafka_port)})
    # librdkafka asks with auto-creation allowed, as a producer would.
    meta = admin.list_topics(topic=name, timeout=10)
    assert meta.topics[name].error is not None
    assert meta.topics[name].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # Metadata v0 (where every request allows auto-creation) and v4 asking for it.
    for version in (0, 4):
        m = request_types(METADATA, version)
        fields = {"allow_auto_topic_creation": True} if version >= 4 else {}
        client = WireClient(kafka_broker.kafka_port)
        try:
            client.send(encode_request(m.MetadataRequest(
                topics=(m.MetadataRequestTopic(name=name),), **fields), 3))
            _, resp = client.read_response(METADATA, version)
        finally:
            client.close()
        [topic] = resp.topics
        assert topic.error_code == 3 and topic.partitions == ()  # UNKNOWN_TOPIC_OR_PARTITION
        if version >= 1:
            assert topic.is_internal
    assert name not in admin.list_topics(timeout=10).topics


@pytest.mark.parametrize("name", INTERNAL)
def test_creating_a_topic_with_an_internal_name_is_invalid_request(
    kafka_broker: BrokerProcess, name: str
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap(kafka_broker.kafka_port)})
    future = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name]
    with pytest.raises(KafkaException) as caught:
        future.result(10)
    assert caught.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "internal topic" in caught.value.args[0].str()
    assert name not in admin.list_topics(timeout=10).topics
