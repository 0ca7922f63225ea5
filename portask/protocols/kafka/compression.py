"""Kafka's record-batch compression codecs, for the few places the broker looks inside.

Batches are stored as producers compressed them; this module is used only when a
topic's ``compression.type`` asks for a different codec and when a ListOffsets
lookup by timestamp must find the exact record. Codec ids are the batch attribute
values: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.

Snappy comes in two framings: librdkafka sends raw snappy blocks, while the Java
client, kafka-python and aiokafka send xerial's framing (a magic header, then
length-prefixed raw blocks). Both are read; xerial is written, since every client
reads it.
"""

from __future__ import annotations

import gzip
import struct

import cramjam
import lz4.frame
import zstandard

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
NAMES = {"uncompressed": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
_INT32 = struct.Struct(">i")


class CodecError(ValueError):
    """The bytes do not decompress with the codec the batch names."""


def decompress(codec: int, data: bytes | memoryview) -> bytes:
    try:
        if codec == NONE:
            return bytes(data)
        if codec == GZIP:
            return gzip.decompress(data)
        if codec == SNAPPY:
            return _snappy_decompress(bytes(data))
        if codec == LZ4:
            return lz4.frame.decompress(data)
        if codec == ZSTD:
            # decompressobj: producers write frames without a content size, which
            # ZstdDecompressor.decompress() refuses.
            return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data))
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"cannot decompress {_name(codec)} data: {exc}") from None
    raise CodecError(f"unknown compression codec {codec}")


def compress(codec: int, data: bytes) -> bytes:
    if codec == NONE:
        return data
    if codec == GZIP:
        return gzip.compress(data, compresslevel=6)
    if codec == SNAPPY:
        blocks = [_XERIAL_HEADER]
        for start in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[start: start + _XERIAL_BLOCK]))
            blocks.append(_INT32.pack(len(block)) + block)
        return b"".join(blocks)
    if codec == LZ4:
        return lz4.frame.compress(data)
    if codec == ZSTD:
        return zstandard.ZstdCompressor().compress(data)
    raise CodecError(f"unknown compression codec {codec}")


def _snappy_decompress(data: bytes) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))
    out = []
    pos = len(_XERIAL_HEADER)
    while pos < len(data):
        if pos + 4 > len(data):
            raise CodecError("xerial snappy block length truncated")
        (size,) = _INT32.unpack_from(data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise CodecError("xerial snappy block runs past the data")
        out.append(bytes(cramjam.snappy.decompress_raw(data[pos: pos + size])))
        pos += size
    return b"".join(out)


def _name(codec: int) -> str:
    return next((n for n, c in NAMES.items() if c == codec), str(codec))
