"""The API index (apis/__init__.py) says what the registry serves and ApiVersions advertises."""

from __future__ import annotations

from typing import Any, cast

from kio.serial import entity_reader

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis import INDEX, api_versions
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode


def test_the_index_lists_every_registered_key_once_in_key_order() -> None:
    keys = [key for key, _, _ in INDEX]
    assert keys == sorted(registry.APIS)
    assert len(set(keys)) == len(keys)


def test_each_row_names_the_registered_handler_and_its_module() -> None:
    for key, module, name in INDEX:
        handler = getattr(module, name)
        assert registry.APIS[key].handler is handler, key
        assert handler.__module__ == module.__name__, key


def test_handlers_are_named_after_their_api() -> None:
    assert [name for _, _, name in INDEX] == [key.name.lower() for key, _, _ in INDEX]


def advertised(api_version: int, request: Any) -> tuple[int, dict[int, tuple[int, int]]]:
    """What ApiVersions answers, decoded with kio."""
    ctx = RequestContext(
        server=cast(Any, None), connection=cast(Any, None), api_key=ApiKey.API_VERSIONS,
        api_version=api_version, correlation_id=1, client_id=None,
    )
    (body,) = api_versions.api_versions(ctx, request)
    schema = registry.schema(ApiKey.API_VERSIONS, api_version)
    response, _ = entity_reader(schema.response_type)(body, 0)
    ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    return response.error_code, ranges


def test_api_versions_advertises_exactly_the_index_with_the_registered_ranges() -> None:
    request = registry.schema(ApiKey.API_VERSIONS, 3).request_type(
        client_software_name="test", client_software_version="1"
    )
    error, ranges = advertised(3, request)
    assert error == ErrorCode.none
    assert ranges == {
        key: (registry.APIS[key].min_version, registry.APIS[key].max_version)
        for key, _, _ in INDEX
    }


def test_an_unsupported_api_versions_version_gets_the_same_list_in_v0() -> None:
    # server.py hands a version above ours to the handler undecoded, as None.
    error, ranges = advertised(0, None)
    assert error == ErrorCode.unsupported_version
    assert sorted(ranges) == [key for key, _, _ in INDEX]
