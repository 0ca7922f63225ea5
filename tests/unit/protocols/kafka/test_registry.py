"""The API registry: one handler per key, and kio schemas built once and cached."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from kio.serial import entity_reader

from portask.protocols.kafka import (
    apis,  # noqa: F401  (registers every API)
    registry,
)
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis import produce
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode


def test_a_key_registered_twice_is_refused_and_the_first_handler_stays() -> None:
    def another_produce(ctx: RequestContext, request: Any) -> None:
        return None

    with pytest.raises(registry.DuplicateApi, match=r"PRODUCE \(0\) is already served by "
                       r"portask\.protocols\.kafka\.apis\.produce\.produce"):
        registry.api(ApiKey.PRODUCE, (3, 10))(another_produce)
    assert registry.APIS[ApiKey.PRODUCE].handler is produce.produce


def test_an_api_is_labelled_with_its_kio_schema_name() -> None:
    api = registry.APIS[ApiKey.OFFSET_FOR_LEADER_EPOCH]
    assert api.schema == "offset_for_leader_epoch"
    assert (api.min_version, api.max_version) == (0, 4)


def test_versions_kio_dropped_come_from_kafka_37_definitions() -> None:
    # kio follows Kafka 4 (KIP-896 removed these); Kafka 3.7 still serves them.
    old = registry.schema(ApiKey.LIST_OFFSETS, 0)
    assert old.request_type.__module__ == "portask.protocols.kafka.old_schemas.list_offsets_v0"
    partition = registry.response_types(ApiKey.LIST_OFFSETS, 0).ListOffsetsPartitionResponse
    assert [f.name for f in dataclasses.fields(partition)] == [
        "partition_index", "error_code", "old_style_offsets"
    ]
    # A field old versions share with kio keeps kio's name, so one handler serves all.
    assert "generation_id_or_member_epoch" in {
        f.name for f in dataclasses.fields(registry.schema(ApiKey.OFFSET_COMMIT, 1).request_type)
    }
    assert registry.schema(ApiKey.PRODUCE, 3).request_type.__module__.startswith("kio.")


def test_a_schema_is_built_once_and_then_served_from_the_cache() -> None:
    first = registry.schema(ApiKey.METADATA, 9)
    assert registry.schema(ApiKey.METADATA, 9) is first
    assert registry.schema(int(ApiKey.METADATA), 9) is first
    assert first.request_type.__name__ == "MetadataRequest"
    assert registry.schema(ApiKey.METADATA, 8) is not first


@pytest.mark.parametrize(
    ("key", "version", "request_flexible", "response_flexible"),
    [
        (ApiKey.PRODUCE, 8, False, False),
        (ApiKey.PRODUCE, 9, True, True),
        # ApiVersions answers with header v0 at every version (KIP-511).
        (ApiKey.API_VERSIONS, 3, True, False),
    ],
)
def test_flexible_headers_follow_the_schema(
    key: ApiKey, version: int, request_flexible: bool, response_flexible: bool
) -> None:
    s = registry.schema(key, version)
    assert (s.request_flexible, s.response_flexible) == (request_flexible, response_flexible)


def test_make_keeps_only_the_fields_a_version_has() -> None:
    v0 = registry.response_types(ApiKey.METADATA, 0)
    response = registry.make(
        v0.MetadataResponse, brokers=(), topics=(), cluster_id="c",
        throttle_time=datetime.timedelta(0), controller_id=0,
    )
    assert response == v0.MetadataResponse(brokers=(), topics=())


def test_an_encoded_response_reads_back_with_kio() -> None:
    s = registry.schema(ApiKey.HEARTBEAT, 4)
    types = registry.response_types(ApiKey.HEARTBEAT, 4)
    response = registry.make(
        types.HeartbeatResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.rebalance_in_progress,
    )
    body = registry.encode(s, response)
    assert entity_reader(s.response_type)(body, 0)[0] == response
