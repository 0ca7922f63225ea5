"""Check a request's lengths, counts and nulls against its own bytes before kio decodes it.

kio's native decoder trusts array counts: a compact array announcing 2^32-1 elements
makes it allocate tens of gigabytes and abort the whole process. So every request body
is first walked here, in pure Python, from the same kio schema: each string, bytes and
array length must fit in what is left of the frame (an array element takes at least
one byte), each non-nullable field must not be null, and known tagged fields must fit
inside their announced size. Only a body that passes reaches kio, so what kio
allocates is bounded by the bytes actually received.

The walker for each request type is compiled once into closures; walking a Produce
request costs a few microseconds, nothing next to storing its batches.

Wire layouts (Kafka protocol guide, KIP-482 for the compact forms):
    string   int16 length, -1 = null        | compact: uvarint length+1, 0 = null
    bytes    int32 length, -1 = null        | compact: uvarint length+1, 0 = null
    array    int32 count, -1 = null         | compact: uvarint count+1, 0 = null
    struct   its fields in order            | flexible: then a tagged-field section
    nullable struct   int8 marker: -1 null, 1 then the struct
    tagged   uvarint count, then per field: uvarint tag, uvarint size, size bytes
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from portask.protocols.kafka.wire import INT16, INT32, MalformedRequest, read_uvarint

# (buffer, position, end) -> position after the value
Walk = Callable[[Any, int, int], int]

_FIXED_SIZES = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "datetime_i64": 8,
    "timedelta_i64": 8,
    "float64": 8,
    "uuid": 16,
}
_SIZED = frozenset(("string", "bytes", "records"))

_WALKERS: dict[type, Walk] = {}


def check_request(request_type: type, data: Any, offset: int) -> None:
    """Raise MalformedRequest unless ``data[offset:]`` is a well-bounded ``request_type``."""
    walk = _WALKERS.get(request_type)
    if walk is None:
        walk = _WALKERS[request_type] = _struct_walker(request_type)
    walk(data, offset, len(data))


def _truncated(what: str) -> MalformedRequest:
    return MalformedRequest(f"{what} runs past the end of the request")


def _split_optional(field_type: Any) -> tuple[Any, bool]:
    if get_origin(field_type) in (UnionType, Union):
        args = [a for a in get_args(field_type) if a is not NoneType]
        return args[0], len(args) < len(get_args(field_type))
    return field_type, False


def _struct_walker(entity_type: type) -> Walk:
    flexible = bool(entity_type.__flexible__)  # type: ignore[attr-defined]
    plain: list[Walk] = []
    tagged: dict[int, Walk] = {}
    for field in dataclasses.fields(entity_type):  # type: ignore[arg-type]
        walk = _field_walker(field, flexible)
        tag = field.metadata.get("tag")
        if tag is None:
            plain.append(walk)
        else:
            tagged[int(tag)] = walk
    name = entity_type.__name__
    if not flexible:

        def walk_struct(data: Any, pos: int, end: int) -> int:
            for walk in plain:
                pos = walk(data, pos, end)
            return pos

        return walk_struct

    def walk_flexible_struct(data: Any, pos: int, end: int) -> int:
        for walk in plain:
            pos = walk(data, pos, end)
        return _walk_tags(data, pos, end, tagged, name)

    return walk_flexible_struct


def _walk_tags(data: Any, pos: int, end: int, known: dict[int, Walk], name: str) -> int:
    count, pos = read_uvarint(data, pos)
    if count > end - pos:
        raise _truncated(f"{name}'s tagged fields")
    for _ in range(count):
        tag, pos = read_uvarint(data, pos)
        size, pos = read_uvarint(data, pos)
        stop = pos + size
        if stop > end:
            raise _truncated(f"{name}'s tagged field {tag}")
        walk = known.get(tag)
        if walk is not None and walk(data, pos, stop) != stop:
            raise MalformedRequest(f"{name}'s tagged field {tag} does not fill its size")
        pos = stop
    if pos > end:
        raise _truncated(f"{name}'s tagged fields")
    return pos


def _field_walker(field: dataclasses.Field[Any], flexible: bool) -> Walk:
    inner, nullable = _split_optional(field.type)
    what = field.name
    if get_origin(inner) is tuple:
        element_type = get_args(inner)[0]
        if dataclasses.is_dataclass(element_type):
            element = _struct_walker(element_type)  # type: ignore[arg-type]
        else:
            element = _value_walker(field.metadata["kafka_type"], False, flexible, what)
        return _array_walker(element, nullable, flexible, what)
    if dataclasses.is_dataclass(inner):
        struct_walk = _struct_walker(inner)  # type: ignore[arg-type]
        return _nullable_struct_walker(struct_walk, what) if nullable else struct_walk
    return _value_walker(field.metadata["kafka_type"], nullable, flexible, what)


def _nullable_struct_walker(struct_walk: Walk, what: str) -> Walk:
    """A nullable struct (e.g. DescribeTopicPartitions' cursor): an int8 marker first,
    -1 for null, 1 for a struct that follows."""

    def walk_nullable_struct(data: Any, pos: int, end: int) -> int:
        if pos >= end:
            raise _truncated(what)
        marker = data[pos]
        if marker == 0xFF:
            return pos + 1
        if marker != 1:
            raise MalformedRequest(f"{what} has a presence marker of {marker}")
        return struct_walk(data, pos + 1, end)

    return walk_nullable_struct


def _array_walker(element: Walk, nullable: bool, flexible: bool, what: str) -> Walk:
    return _prefixed_walker(INT32, flexible, nullable, what, element)


def _value_walker(kafka_type: str, nullable: bool, flexible: bool, what: str) -> Walk:
    size = _FIXED_SIZES.get(kafka_type)
    if size is not None:

        def walk_fixed(data: Any, pos: int, end: int) -> int:
            pos += size
            if pos > end:
                raise _truncated(what)
            return pos

        return walk_fixed
    if kafka_type not in _SIZED:
        raise LookupError(f"no bounds check for kafka_type {kafka_type!r} ({what})")
    header = INT16 if kafka_type == "string" else INT32
    return _prefixed_walker(header, flexible, nullable, what, None)


def _prefixed_walker(
    header: struct.Struct, flexible: bool, nullable: bool, what: str, element: Walk | None
) -> Walk:
    """An array of ``element`` values, or with ``element`` None a string or bytes value:
    a count or length first (``header`` or compact), -1 for null, then what it counts."""
    if element is None:
        noun, null_rule = "length", "forbids it"
    else:
        noun, null_rule = "count", "requires an array"

    def walk_prefixed(data: Any, pos: int, end: int) -> int:
        if flexible:
            value, pos = read_uvarint(data, pos)
            value -= 1
        else:
            if pos + header.size > end:
                raise _truncated(what)
            value = header.unpack_from(data, pos)[0]
            pos += header.size
        if value < 0:
            if value != -1:
                raise MalformedRequest(f"{what} has a negative {noun} ({value})")
            if not nullable:
                raise MalformedRequest(f"{what} is null where the protocol {null_rule}")
            return pos
        if element is None:  # a length in bytes
            pos += value
            if pos > end:
                raise _truncated(what)
            return pos
        # Every element takes at least one byte, so a count larger than what is left
        # is a lie: refuse it before anything allocates for it.
        if value > end - pos:
            raise _truncated(f"{what} ({value} elements)")
        for _ in range(value):
            pos = element(data, pos, end)
        return pos

    return walk_prefixed
