"""Every version of every API that ApiVersions advertises gets a request and an answer."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import create_topic
from tests.integration.kafka.wire_client import (
    WireClient,
    encode_request,
    request_type,
    request_types,
)
from tests.unit.protocols.kafka.kio_values import sample

API_VERSIONS = 18
PRODUCE, FETCH, METADATA = 0, 1, 3
T0 = 1_700_000_000_000
# Kafka answers -1 for the start time of a transaction that has not begun; kio's reader
# refuses negative timestamps, so that answer is checked by its framing only.
DESCRIBE_TRANSACTIONS = 65


def registry_make(entity_type: type, **values: Any) -> Any:
    """The entity from the values its version has (a test-side twin of registry.make)."""
    names = {f.name for f in dataclasses.fields(entity_type)}  # type: ignore[arg-type]
    return entity_type(**{k: v for k, v in values.items() if k in names})


def _topic_id(port: int, topic: str) -> Any:
    m = request_types(METADATA, 12)
    client = WireClient(port)
    try:
        client.send(encode_request(m.MetadataRequest(
            topics=(m.MetadataRequestTopic(topic_id=None, name=topic),),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False), 1))
        _, resp = client.read_response(METADATA, 12)
    finally:
        client.close()
    return resp.topics[0].topic_id


def _advertised(port: int) -> list[tuple[int, int]]:
    client = WireClient(port)
    try:
        m = request_types(API_VERSIONS, 3)
        client.send(
            encode_request(
                m.ApiVersionsRequest(client_software_name="t", client_software_version="1"), 1
            )
        )
        _, resp = client.read_response(API_VERSIONS, 3)
    finally:
        client.close()
    return [
        (a.api_key, v) for a in resp.api_keys for v in range(a.min_version, a.max_version + 1)
    ]


def test_every_advertised_version_is_answered(kafka_broker: BrokerProcess) -> None:
    advertised = _advertised(kafka_broker.kafka_port)
    assert len(advertised) > 150
    failures = []
    for key, version in advertised:
        client = WireClient(kafka_broker.kafka_port, timeout=15)
        try:
            client.send(encode_request(sample(request_type(key, version)), 7))
            if key == DESCRIBE_TRANSACTIONS:
                cid = int.from_bytes(client.read_frame()[:4], "big")
            else:
                cid, _ = client.read_response(key, version)
            if cid != 7:
                failures.append((key, version, f"correlation id {cid}"))
        except Exception as exc:
            failures.append((key, version, repr(exc)))
        finally:
            client.close()
    assert failures == []
    assert "Traceback" not in kafka_broker.stderr_text()


def test_every_produce_and_fetch_version_carries_real_records(
    kafka_broker: BrokerProcess,
) -> None:
    """Each Produce version with the format it carries (magic 0 for v0-1, 1 for v2,
    record batches from v3), then each Fetch version reading all of it back in the format
    it expects, decoded by kafka-python's record readers."""
    port = kafka_broker.kafka_port
    topic = "every-version-records"
    create_topic(port, topic, 1)
    produce_versions = range(0, 11)
    for version in produce_versions:
        if version < 3:
            builder: Any = LegacyRecordBatchBuilder(1 if version == 2 else 0, 0, 1 << 20)
            builder.append(0, T0 + version if version == 2 else None, b"k", f"p{version}".encode())
        else:
            builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
            builder.append(0, T0 + version, b"k", f"p{version}".encode(), [])
        m = request_types(PRODUCE, version)
        fields = {"transactional_id": None} if version >= 3 else {}
        request = m.ProduceRequest(acks=1, timeout=timedelta(seconds=5), **fields, topic_data=(
            m.TopicProduceData(name=topic, partition_data=(
                m.PartitionProduceData(index=0, records=bytes(builder.build())),)),))
        client = WireClient(port)
        try:
            client.send(encode_request(request, version))
            _, resp = client.read_response(PRODUCE, version)
        finally:
            client.close()
        [answer] = resp.responses[0].partition_responses
        assert (answer.error_code, answer.base_offset) == (0, version), version
    expected = [(v, b"k", f"p{v}".encode()) for v in produce_versions]
    topic_id = _topic_id(port, topic)
    for version in range(0, 17):
        m = request_types(FETCH, version)
        partition = registry_make(m.FetchPartition, partition=0, fetch_offset=0,
                                  partition_max_bytes=1 << 20, current_leader_epoch=-1,
                                  last_fetched_epoch=-1, log_start_offset=-1)
        request = registry_make(
            m.FetchRequest, replica_id=-1, max_wait=timedelta(0), min_bytes=1,
            max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
            topics=(registry_make(m.FetchTopic, topic=topic, topic_id=topic_id,
                                  partitions=(partition,)),),
            forgotten_topics_data=(), rack_id="")
        client = WireClient(port)
        try:
            client.send(encode_request(request, version))
            _, resp = client.read_response(FETCH, version)
        finally:
            client.close()
        [data] = resp.responses[0].partitions
        assert data.error_code == 0, version
        records = MemoryRecords(bytes(data.records))
        found = []
        magics = set()
        while (batch := records.next_batch()) is not None:
            magics.add(batch.magic)
            found.extend((r.offset, r.key, r.value) for r in batch)
        assert found == expected, version
        assert magics == ({0} if version < 2 else {1} if version < 4 else {2}), version
