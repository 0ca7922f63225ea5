"""Error answers built from the request for every Kafka API and version (fault rules)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import portask.protocols.kafka.apis  # noqa: F401  (registers every API)
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.error_answers import error_response
from portask.protocols.kafka.errors import ErrorCode
from tests.unit.protocols.kafka.kio_values import sample

VERSIONS = [(key, version) for key, api in sorted(registry.APIS.items())
            for version in range(api.min_version, api.max_version + 1)]


def _error_codes(entity: Any) -> list[int]:
    found = []
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.metadata.get("kafka_type") == "error_code":
            found.append(int(value))
        elif dataclasses.is_dataclass(value):
            found.extend(_error_codes(value))
        elif isinstance(value, tuple):
            for item in value:
                if dataclasses.is_dataclass(item):
                    found.extend(_error_codes(item))
    return found


@pytest.mark.parametrize(("key", "version"), VERSIONS,
                         ids=[f"{ApiKey(k).name}-v{v}" for k, v in VERSIONS])
def test_every_api_answers_with_the_error_and_nothing_else(key: int, version: int) -> None:
    request = sample(registry.request_type(key, version))
    answer = error_response(key, version, request, ErrorCode.not_coordinator)
    encoded = registry.encode(registry.schema(key, version), answer)
    assert encoded
    codes = _error_codes(answer)
    assert codes and set(codes) == {int(ErrorCode.not_coordinator)}


def test_partitions_mirror_the_request() -> None:
    types = registry.request_type(ApiKey.OFFSET_COMMIT, 8)
    module = __import__(types.__module__, fromlist=["*"])
    request = registry.make(
        types, group_id="g", generation_id_or_member_epoch=1, member_id="m",
        group_instance_id=None, topics=(module.OffsetCommitRequestTopic(name="t", partitions=(
            module.OffsetCommitRequestPartition(partition_index=3, committed_offset=42,
                                                committed_leader_epoch=-1,
                                                committed_metadata=None),
            module.OffsetCommitRequestPartition(partition_index=5, committed_offset=7,
                                                committed_leader_epoch=-1,
                                                committed_metadata=None))),))
    answer = error_response(ApiKey.OFFSET_COMMIT, 8, request, ErrorCode.not_coordinator)
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions])
            for t in answer.topics] == [("t", [(3, ErrorCode.not_coordinator),
                                               (5, ErrorCode.not_coordinator)])]


def test_plain_keys_go_into_the_answer() -> None:
    types = registry.request_type(ApiKey.FIND_COORDINATOR, 4)
    request = registry.make(types, key_type=0, coordinator_keys=("g1", "g2"))
    answer = error_response(ApiKey.FIND_COORDINATOR, 4, request,
                            ErrorCode.coordinator_not_available)
    assert [(c.key, c.node_id, c.error_code) for c in answer.coordinators] == [
        ("g1", -1, ErrorCode.coordinator_not_available),
        ("g2", -1, ErrorCode.coordinator_not_available)]
    deleted = error_response(ApiKey.DELETE_TOPICS, 0, registry.make(
        registry.request_type(ApiKey.DELETE_TOPICS, 0), topic_names=("a", "b"),
        timeout=__import__("datetime").timedelta(seconds=1)), ErrorCode.not_controller)
    assert [(r.name, r.error_code) for r in deleted.responses] == [
        ("a", ErrorCode.not_controller), ("b", ErrorCode.not_controller)]


def test_two_request_lists_answered_in_one() -> None:
    # AlterUserScramCredentials answers its deletions and upsertions in one results list.
    request = sample(registry.request_type(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0))
    answer = error_response(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, request,
                            ErrorCode.not_controller)
    assert [(r.user, r.error_code) for r in answer.results] == [
        (request.deletions[0].name, ErrorCode.not_controller),
        (request.upsertions[0].name, ErrorCode.not_controller)]
