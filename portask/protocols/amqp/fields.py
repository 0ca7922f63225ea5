"""AMQP 0-9-1 field types read strictly from bytes a client sent: pure functions, no I/O.

Every reader takes ``(data, pos, end)`` and returns ``(value, next_pos)``; ``end`` is
where the enclosing structure (method payload, table, array) stops, and no length field
may point past it. Anything that does not decode exactly raises ``FieldError``, which
the connection turns into 502 SYNTAX_ERROR. The rules are RabbitMQ's
(``rabbit_binary_parser``, ``rabbit_framing_amqp_0_9_1``): a short string is at most 255
bytes of UTF-8, a table or array must be consumed exactly, and the value types are the
0-9-1 errata's (``t b B s u I i l L f d D S x A T F V``).

Why not pamqp's decoder (which builds the objects these values end up in): it slices a
copy of the rest of the buffer for every table entry, so a 128 KiB table of empty
entries costs gigabytes of copying; it accepts lengths that run past the data; and
out-of-range timestamps or deep nesting raise exceptions it does not catch.

Layout reminders (big-endian): shortstr = octet length + bytes; longstr = uint32 length +
bytes; table = uint32 byte length + (shortstr key, octet type tag, value)*; array =
uint32 byte length + (octet type tag, value)*; decimal = octet scale + int32.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from collections.abc import Callable
from typing import Any

_U8 = struct.Struct(">B")
_I8 = struct.Struct(">b")
_U16 = struct.Struct(">H")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DECIMAL = struct.Struct(">Bi")

# Nesting RabbitMQ would follow further, but no client needs: each level costs a Python
# stack frame, and a 128 KiB frame could otherwise ask for 20 000 of them.
MAX_NESTING = 64


class FieldError(ValueError):
    """Bytes that do not decode as the AMQP field they should be."""


class MalformedUtf8(FieldError):
    """A short string that is not UTF-8 (RabbitMQ: "Malformed UTF-8 in shortstr")."""


Reader = Callable[[bytes | memoryview, int, int], tuple[Any, int]]


def _need(pos: int, size: int, end: int, what: str) -> int:
    stop = pos + size
    if stop > end:
        raise FieldError(f"{what} runs {stop - end} bytes past the end of its field")
    return stop


def octet(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    stop = _need(pos, 1, end, "octet")
    return data[pos], stop


def short(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    stop = _need(pos, 2, end, "short")
    return _U16.unpack_from(data, pos)[0], stop


def long(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    stop = _need(pos, 4, end, "long")
    return _U32.unpack_from(data, pos)[0], stop


def longlong(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    stop = _need(pos, 8, end, "longlong")
    return _U64.unpack_from(data, pos)[0], stop


def shortstr(data: bytes | memoryview, pos: int, end: int) -> tuple[str, int]:
    start = _need(pos, 1, end, "short string length")
    stop = _need(start, data[pos], end, "short string")
    try:
        return bytes(data[start:stop]).decode(), stop
    except UnicodeDecodeError:
        raise MalformedUtf8("short string is not valid UTF-8") from None


def longstr(data: bytes | memoryview, pos: int, end: int) -> tuple[str | bytes, int]:
    """UTF-8 text when it is, else the bytes (SASL responses, binary header values),
    as pamqp hands them to the rest of the broker."""
    start = _need(pos, 4, end, "long string length")
    stop = _need(start, _U32.unpack_from(data, pos)[0], end, "long string")
    raw = bytes(data[start:stop])
    try:
        return raw.decode(), stop
    except UnicodeDecodeError:
        return raw, stop


def timestamp(data: bytes | memoryview, pos: int, end: int) -> tuple[datetime.datetime, int]:
    stop = _need(pos, 8, end, "timestamp")
    seconds: float = _U64.unpack_from(data, pos)[0]
    # pamqp's reading, kept so values compare equal with what clients decode:
    # anything past 2106 is taken to be milliseconds.
    if seconds > 0xFFFFFFFF:
        seconds /= 1000.0
    try:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC), stop
    except (OverflowError, ValueError, OSError):
        raise FieldError(f"timestamp {seconds:.0f} is out of range") from None


def table(
    data: bytes | memoryview, pos: int, end: int, depth: int = 0
) -> tuple[dict[str, Any], int]:
    start = _need(pos, 4, end, "table length")
    stop = _need(start, _U32.unpack_from(data, pos)[0], end, "table")
    if depth >= MAX_NESTING:
        raise FieldError(f"tables and arrays nested deeper than {MAX_NESTING}")
    out: dict[str, Any] = {}
    pos = start
    while pos < stop:
        key, pos = shortstr(data, pos, stop)
        out[key], pos = _value(data, pos, stop, depth)
    return out, stop


def array(
    data: bytes | memoryview, pos: int, end: int, depth: int = 0
) -> tuple[list[Any], int]:
    start = _need(pos, 4, end, "array length")
    stop = _need(start, _U32.unpack_from(data, pos)[0], end, "array")
    if depth >= MAX_NESTING:
        raise FieldError(f"tables and arrays nested deeper than {MAX_NESTING}")
    out: list[Any] = []
    pos = start
    while pos < stop:
        value, pos = _value(data, pos, stop, depth)
        out.append(value)
    return out, stop


def _fixed(fmt: struct.Struct, what: str) -> Reader:
    size = fmt.size
    unpack = fmt.unpack_from

    def read(data: bytes | memoryview, pos: int, end: int) -> tuple[Any, int]:
        stop = _need(pos, size, end, what)
        return unpack(data, pos)[0], stop

    return read


def _boolean(data: bytes | memoryview, pos: int, end: int) -> tuple[bool, int]:
    stop = _need(pos, 1, end, "boolean")
    return data[pos] != 0, stop


def _decimal(data: bytes | memoryview, pos: int, end: int) -> tuple[decimal.Decimal, int]:
    stop = _need(pos, 5, end, "decimal")
    scale, raw = _DECIMAL.unpack_from(data, pos)
    return decimal.Decimal(raw) * (decimal.Decimal(10) ** -scale), stop


def _bytes(data: bytes | memoryview, pos: int, end: int) -> tuple[bytearray, int]:
    start = _need(pos, 4, end, "byte array length")
    stop = _need(start, _U32.unpack_from(data, pos)[0], end, "byte array")
    return bytearray(data[start:stop]), stop


def _void(data: bytes | memoryview, pos: int, end: int) -> tuple[None, int]:
    return None, pos


# Value types by tag, with the Python types pamqp gives them (the broker's argument
# checks and the 406 texts look at those types).
_VALUES: dict[int, Reader] = {
    ord("t"): _boolean,
    ord("b"): _fixed(_I8, "byte"),
    ord("B"): _fixed(_U8, "unsigned byte"),
    ord("s"): _fixed(_I16, "short"),
    ord("u"): _fixed(_U16, "unsigned short"),
    ord("I"): _fixed(_I32, "int"),
    ord("i"): _fixed(_U32, "unsigned int"),
    ord("l"): _fixed(_I64, "long"),
    ord("L"): _fixed(_I64, "long"),  # RabbitMQ reads 'L' as signed too (0-9-1 errata)
    ord("f"): _fixed(_F32, "float"),
    ord("d"): _fixed(_F64, "double"),
    ord("D"): _decimal,
    ord("S"): longstr,
    ord("x"): _bytes,
    ord("T"): timestamp,
    ord("V"): _void,
    0: _void,  # pamqp reads a zero tag as void and some clients send it
}


def _value(data: bytes | memoryview, pos: int, end: int, depth: int) -> tuple[Any, int]:
    stop = _need(pos, 1, end, "field type")
    tag = data[pos]
    if tag == 0x46:  # 'F'
        return table(data, stop, end, depth + 1)
    if tag == 0x41:  # 'A'
        return array(data, stop, end, depth + 1)
    reader = _VALUES.get(tag)
    if reader is None:
        raise FieldError(f"unknown field type {chr(tag)!r}" if 32 < tag < 127
                         else f"unknown field type 0x{tag:02x}")
    return reader(data, stop, end)


# Method argument types (the spec's domains resolved) to their readers; 'bit' is packed
# and handled by the method decoder.
ARGUMENTS: dict[str, Reader] = {
    "octet": octet,
    "short": short,
    "long": long,
    "longlong": longlong,
    "shortstr": shortstr,
    "longstr": longstr,
    "timestamp": timestamp,
    "table": table,
}
