"""An error answer to any Kafka request, built from the request itself (fault rules).

Kafka's own brokers do this per request class (``AbstractRequest.getErrorResponse``):
every topic, partition, group or key the request names comes back with the error, and
an API without such lists carries the error in its top-level ``error_code``. Here one
walk over kio's response schema does it for every API and version: a response list that
holds error codes mirrors the request list it answers (same name, or the name Kafka
gives the answer, table below), identifying fields (topic name, partition index, group
id, key) are copied from the request, and everything else gets the value Kafka puts in
an error answer (-1 for offsets, ids and epochs, empty otherwise).

Produce and Fetch answers are hand-encoded (hot paths) and Metadata must keep its
broker list, so those three are answered by their own modules' code (``faults.py``).
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
import uuid
from functools import cache
from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.errors import ErrorCode

MESSAGE = "injected by the Portask control API"

# Response list -> the request lists it answers, tried in order after its own name
# ("a.b": the b lists of every item of a, joined; "a+b": both lists, one after the other).
_ANSWERS: dict[str, tuple[str, ...]] = {
    "responses": ("topic_data", "topics", "topic_names", "resources"),
    "partition_responses": ("partition_data",),
    "partitions": ("partition_indexes", "partition_data"),
    "results_by_topic_v3_and_below": ("v3_and_below_topics",),
    "results_by_transaction": ("transactions",),
    "topic_results": ("topics",),
    "results_by_partition": ("partitions",),
    "coordinators": ("coordinator_keys",),
    "groups": ("group_ids",),
    "results": ("creations", "resources", "topics", "groups_names",
                "dirs.topics", "users", "deletions+upsertions"),
    "filter_results": ("filters",),
    "replica_election_results": ("topic_partitions",),
    "partition_result": ("partitions",),
    "transaction_states": ("transactional_ids",),
}
# Response field -> the request fields that carry its value.
_COPIED: dict[str, tuple[str, ...]] = {
    "name": ("name", "topic", "topic_name"),
    "topic": ("topic", "name"),
    "topic_name": ("topic_name", "name", "topic"),
    "user": ("user", "name"),
    "partition_index": ("partition_index", "partition", "index"),
    "partition": ("partition", "partition_index", "index"),
}
# Integer fields that Kafka fills with -1 in an error answer (offsets, ids, epochs).
_UNKNOWN_SUFFIXES = ("offset", "timestamp", "_id", "epoch", "port", "_time", "leader")


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kafka_type: str | None
    nullable: bool
    element: type | None  # the entity type of a list of entities, or of an entity
    is_list: bool

    @property
    def is_error(self) -> bool:
        # Most are "error_code"; AddPartitionsToTxn says "partition_error_code".
        return self.kafka_type == "error_code"


@cache
def _fields(entity: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(entity)
    described = []
    for f in dataclasses.fields(entity):
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = isinstance(hint, types.UnionType) and type(None) in args
        if nullable:
            hint = next(a for a in args if a is not type(None))
        is_list = typing.get_origin(hint) is tuple
        element = typing.get_args(hint)[0] if is_list else hint
        described.append(_Field(f.name, f.metadata.get("kafka_type"), nullable,
                                element if dataclasses.is_dataclass(element) else None,
                                is_list))
    return tuple(described)


@cache
def _has_errors(entity: type) -> bool:
    return any(f.is_error or (f.element is not None and _has_errors(f.element))
               for f in _fields(entity))


def error_response(key: int, version: int, request: Any, code: int) -> Any:
    """The kio response of (key, version) answering ``request`` with ``code``."""
    return _answer(registry.schema(key, version).response_type, request, ErrorCode(code))


def _answer(entity: type, asked: Any, code: ErrorCode) -> Any:
    values: dict[str, Any] = {}
    for f in _fields(entity):
        if f.is_error:
            values[f.name] = code
        elif f.name == "error_message":
            values[f.name] = MESSAGE
        elif f.element is not None and not f.is_list:
            # A nested struct (a tagged field, e.g. a partition's current leader).
            values[f.name] = None if f.nullable else _answer(f.element, None, code)
        elif f.element is not None:
            values[f.name] = _answer_list(f, asked, code)
        else:
            values[f.name] = _copied(f, asked)
    return entity(**values)


def _answer_list(f: _Field, asked: Any, code: ErrorCode) -> Any:
    assert f.element is not None
    if not _has_errors(f.element):
        return () if not f.nullable else None
    source = _request_list(f.name, asked)
    return tuple(_answer(f.element, item, code) if dataclasses.is_dataclass(item)
                 else _answer_key(f.element, item, code) for item in source)


def _request_list(name: str, asked: Any) -> tuple[Any, ...]:
    if asked is None or not dataclasses.is_dataclass(asked):
        return ()
    for candidate in (name, *_ANSWERS.get(name, ())):
        if "+" in candidate:  # two lists answered as one (AlterUserScramCredentials)
            parts = [getattr(asked, part, None) for part in candidate.split("+")]
            if all(isinstance(part, tuple) for part in parts):
                return tuple(x for part in parts for x in part)
            continue
        if "." in candidate:  # a list inside each item of another (AlterReplicaLogDirs)
            outer, inner = candidate.split(".")
            items = getattr(asked, outer, None)
            if isinstance(items, tuple):
                return tuple(x for item in items for x in getattr(item, inner, ()))
            continue
        value = getattr(asked, candidate, None)
        if isinstance(value, tuple):
            return value
    return ()


def _answer_key(entity: type, key: Any, code: ErrorCode) -> Any:
    """An answer to a plain request item (a group id, a partition index): the item goes
    into the answer's first field of its kind (``key``, ``group_id``, ``partition_index``)."""
    answer = _answer(entity, None, code)
    wanted = str if isinstance(key, str) else int
    for f in _fields(entity):
        if not f.is_list and isinstance(getattr(answer, f.name), wanted) and not isinstance(
                getattr(answer, f.name), bool):
            return dataclasses.replace(answer, **{f.name: key})
    return answer


def _copied(f: _Field, asked: Any) -> Any:
    if asked is not None and dataclasses.is_dataclass(asked) and not f.is_list:
        for candidate in _COPIED.get(f.name, (f.name,)):
            if candidate in _names(type(asked)):
                value = getattr(asked, candidate)
                if value is not None and not isinstance(value, tuple | bytes):
                    return value
    return _empty(f)


@cache
def _names(entity: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(entity))


def _empty(f: _Field) -> Any:
    if f.is_list:
        return None if f.nullable else ()
    kind = f.kafka_type
    if kind in ("int8", "int16", "int32", "int64"):
        return -1 if f.name.endswith(_UNKNOWN_SUFFIXES) else 0
    if kind in ("timedelta_i32", "timedelta_i64"):
        return datetime.timedelta(0)
    if f.nullable:
        return None
    if kind == "string":
        return ""
    if kind == "bool":
        return False
    if kind in ("bytes", "records"):
        return b""
    if kind == "uuid":
        return uuid.UUID(int=0)
    if kind == "datetime_i64":
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    return 0
