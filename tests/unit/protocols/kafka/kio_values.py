"""Build a small valid instance of any kio request type, for tests that walk every schema.

Arrays get one element, so that every nested struct and array count appears in the
encoded bytes where a mutation can hit it.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import uuid
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from kio.schema.errors import ErrorCode
from kio.serial import entity_writer

_VALUES: dict[str, Any] = {
    "bool": True,
    "int8": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 1,
    "int64": 1,
    "float64": 1.0,
    "string": "s",
    "bytes": b"b",
    "records": b"r",
    "uuid": uuid.UUID(int=1),
    "error_code": ErrorCode.none,
    "datetime_i64": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    "timedelta_i32": datetime.timedelta(milliseconds=1),
    "timedelta_i64": datetime.timedelta(milliseconds=1),
}


def _strip_optional(field_type: Any) -> Any:
    if get_origin(field_type) in (UnionType, Union):
        return next(a for a in get_args(field_type) if a is not NoneType)
    return field_type


def sample(entity_type: type) -> Any:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(entity_type):  # type: ignore[arg-type]
        inner = _strip_optional(field.type)
        if get_origin(inner) is tuple:
            element = get_args(inner)[0]
            if dataclasses.is_dataclass(element):
                values[field.name] = (sample(element),)  # type: ignore[arg-type]
            else:
                values[field.name] = (_VALUES[field.metadata["kafka_type"]],)
        elif dataclasses.is_dataclass(inner):
            values[field.name] = sample(inner)  # type: ignore[arg-type]
        else:
            values[field.name] = _VALUES[field.metadata["kafka_type"]]
    return entity_type(**values)


def encode_body(request: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(request))(buf, request)
    return buf.getvalue()
