"""Valid Kafka record batches (magic 2), built from the protocol guide's layout.

Independent of portask's records module, so that tests check the broker against
their own reading of the format. Used by the fuzz targets and the end-to-end fuzzer;
``fix_checksums`` lets a mutated batch carry a correct CRC-32C (and lz4 header
checksum), which is what a buggy or hostile producer sends and the only way a mutation
reaches the records behind the CRC.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass

import cramjam
import crc32c
import lz4.frame
import zstandard

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
TRANSACTIONAL, CONTROL = 0x10, 0x20
HEADER = struct.Struct(">qiibIhiqqqhii")
ATTRIBUTES_AT, CRC_AT, RECORDS_COUNT_AT = 21, 17, 57
BASE_TS = 1_767_225_600_000  # 2026-01-01, milliseconds
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_XERIAL = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> bytes:
    return uvarint((value << 1) ^ (value >> 63))


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...]
    ts_delta: int


def _record(offset_delta: int, r: Record) -> bytes:
    body = b"\x00" + zigzag(r.ts_delta) + zigzag(offset_delta)
    for field in (r.key, r.value):
        body += zigzag(-1) if field is None else zigzag(len(field)) + field
    body += zigzag(len(r.headers))
    for name, value in r.headers:
        body += zigzag(len(name)) + name
        body += zigzag(-1) if value is None else zigzag(len(value)) + value
    return zigzag(len(body)) + body


def compress(codec: int, raw: bytes, xerial: bool) -> bytes:
    # Each codec the way real producers write it (see compression.py's docstring).
    if codec == GZIP:
        return gzip.compress(raw)
    if codec == SNAPPY:
        if not xerial:
            return bytes(cramjam.snappy.compress_raw(raw))
        block = bytes(cramjam.snappy.compress_raw(raw))
        return _XERIAL + struct.pack(">i", len(block)) + block
    if codec == LZ4:
        return lz4.frame.compress(raw, store_size=True)
    if codec == ZSTD:
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def batch(rs: list[Record], codec: int, xerial: bool = False, control: bool = False) -> bytes:
    raw = b"".join(_record(i, r) for i, r in enumerate(rs))
    payload = compress(codec, raw, xerial)
    attributes = codec | (CONTROL | TRANSACTIONAL if control else 0)
    max_ts = BASE_TS + max((r.ts_delta for r in rs), default=0)
    head = HEADER.pack(0, HEADER.size - 12 + len(payload), -1, 2, 0, attributes,
                        max(len(rs) - 1, 0), BASE_TS, max_ts, -1, -1, -1, len(rs))
    return fix_checksums(head + payload)


def xxh32_small(data: bytes, seed: int = 0) -> int:
    """XXH32 of fewer than 16 bytes (all an lz4 frame descriptor can be)."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    h = (seed + p5 + len(data)) & mask
    pos = 0
    while pos + 4 <= len(data):
        h = rotl((h + int.from_bytes(data[pos : pos + 4], "little") * p3) & mask, 17) * p4 & mask
        pos += 4
    for byte in data[pos:]:
        h = rotl((h + byte * p5) & mask, 11) * p1 & mask
    h ^= h >> 15
    h = h * p2 & mask
    h ^= h >> 13
    h = h * p3 & mask
    return h ^ (h >> 16)


def fix_lz4_header(data: bytearray, at: int) -> None:
    """Recompute the header checksum of an lz4 frame at ``at``, if one starts there."""
    if data[at : at + 4] != _LZ4_MAGIC or len(data) < at + 7:
        return
    flags = data[at + 4]
    end = at + 6 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0)
    if end < len(data):
        data[end] = (xxh32_small(bytes(data[at + 4 : end])) >> 8) & 0xFF


def fix_checksums(payload: bytes) -> bytes:
    """Make every batch whose length still fits carry a correct CRC-32C."""
    out = bytearray(payload)
    pos = 0
    while len(out) - pos >= HEADER.size:
        size = struct.unpack_from(">i", out, pos + 8)[0] + 12
        if size < HEADER.size or pos + size > len(out):
            break
        if out[pos + ATTRIBUTES_AT + 1] & 0x07 == LZ4:
            fix_lz4_header(out, pos + HEADER.size)
        crc = crc32c.crc32c(bytes(out[pos + ATTRIBUTES_AT : pos + size]))
        struct.pack_into(">I", out, pos + CRC_AT, crc)
        pos += size
    return bytes(out)
