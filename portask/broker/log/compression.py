"""Kafka's record-batch compression codecs, for the few places the broker looks inside.

Batches are stored as producers compressed them. Produce checks that a compressed
batch really decompresses (``uncompressed_size``, as Kafka's LogValidator does before
it stores one); the records are decompressed only when a topic's ``compression.type``
asks for a different codec, for compaction and when a ListOffsets lookup by timestamp
must find the exact record. Codec ids are the batch attribute values: 0 none, 1 gzip,
2 snappy, 3 lz4, 4 zstd.

Decompression is bounded by a caller's ``limit`` (``kafka.max_uncompressed_batch_bytes``):
a few kilobytes of zstd or gzip can expand to gigabytes, and the bytes a client sent
must not decide how much the broker allocates. Output comes in chunks of at most
``_CHUNK`` bytes, so a check holds one chunk at a time whatever the batch expands to.

Snappy comes in two framings: librdkafka sends raw snappy blocks, while the Java
client, kafka-python and aiokafka send xerial's framing (a magic header, then
length-prefixed raw blocks). Both are read; xerial is written, since every client
reads it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator

import cramjam
import lz4.block
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


class LimitExceeded(CodecError):
    """The data decompresses to more than the caller's limit."""


# Output chunk of the streaming decoders. Below glibc's mmap threshold (128 KiB), so chunks
# come from the heap: measured in the broker, fresh 256 KiB-1 MiB buffers per batch cost
# ~400 page faults (~1.6 ms of CPU) per 1 MB batch, far more than decompressing it.
_CHUNK = 64 << 10
# Where snappy and zstd decode to when checking, reused for every batch for the same
# reason; kept up to this size (a raw snappy block is a whole librdkafka batch).
_SCRATCH_KEEP = 4 << 20
_scratch = bytearray(_CHUNK)
_GZIP_MAGIC = b"\x1f\x8b"
_UINT32_LE = struct.Struct("<I")
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE, _ZSTD_SKIPPABLE_MASK = 0x184D2A50, 0xFFFFFFF0
_ZSTD_DICTIONARY_ID_SIZE = (0, 1, 2, 4)
# By Frame_Content_Size_flag; with flag 0 the field is 1 byte if Single_Segment_flag is set.
_ZSTD_CONTENT_SIZE_SIZE = (0, 2, 4, 8)
_ZSTD_RLE_BLOCK, _ZSTD_RESERVED_BLOCK = 1, 3
# One zstd decompressor for every batch: creating one costs ~20 us. Each use resets it
# and runs to the end (or is dropped) before the next starts, on the event loop's thread.
_ZSTD = zstandard.ZstdDecompressor()
_LZ4_MAGIC = 0x184D2204
_LZ4_INDEPENDENT_BLOCKS, _LZ4_BLOCK_CHECKSUM = 0x20, 0x10
_LZ4_CONTENT_SIZE, _LZ4_CONTENT_CHECKSUM, _LZ4_DICTIONARY_ID = 0x08, 0x04, 0x01
_LZ4_BLOCK_MAX = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}
_LZ4_STORED_BLOCK = 0x80000000
_LZ4_WINDOW = 64 << 10


def decompress(codec: int, data: bytes | memoryview, limit: int) -> bytes:
    """The uncompressed bytes; CodecError if invalid, LimitExceeded past ``limit`` bytes."""
    if codec == NONE:
        return bytes(data)
    # Copied chunk by chunk: a chunk may be a view of the scratch buffer the next reuses.
    return b"".join([bytes(chunk) for chunk in _chunks(codec, data, limit)])


def uncompressed_size(codec: int, data: bytes | memoryview, limit: int) -> int:
    """Decompress to nowhere: how many bytes ``data`` expands to, holding one chunk at a time.

    Raises CodecError for data the codec cannot read (bad header, bad block, bad checksum,
    truncated) and LimitExceeded past ``limit``.
    """
    if codec == NONE:
        return len(data)
    total = 0
    for chunk in _chunks(codec, data, limit):
        total += len(chunk)
    return total


def _chunks(codec: int, data: bytes | memoryview, limit: int) -> Iterator[bytes | memoryview]:
    """Every codec's output as chunks of at most ``_CHUNK`` bytes (a snappy block whole),
    ``limit`` enforced. A chunk is valid until the next one is asked for."""
    if codec == GZIP:
        decoder: Iterator[bytes | memoryview] = _gzip_chunks(data)
    elif codec == SNAPPY:
        decoder = _snappy_chunks(memoryview(data), limit)
    elif codec == LZ4:
        decoder = _lz4_chunks(data)
    elif codec == ZSTD:
        decoder = _zstd_chunks(data)
    else:
        raise CodecError(f"unknown compression codec {codec}")
    total = 0
    try:
        for chunk in decoder:
            total += len(chunk)
            if total > limit:
                raise LimitExceeded(
                    f"{name(codec)} data decompresses to more than {limit} bytes"
                )
            yield chunk
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"cannot decompress {name(codec)} data: {exc}") from None


def _scratch_view(size: int) -> memoryview:
    global _scratch
    if size > len(_scratch):
        if size > _SCRATCH_KEEP:
            return memoryview(bytearray(size))  # rare: used once, not kept
        _scratch = bytearray(size)
    return memoryview(_scratch)[:size]


def _gzip_chunks(data: bytes | memoryview) -> Iterator[bytes]:
    # Members follow each other as in a .gz file; bytes after the last member that do
    # not start another are ignored, as Java's GZIPInputStream does. The input goes in
    # in slices: zlib copies what a call leaves unconsumed, which for the whole batch at
    # every chunk would be quadratic.
    view = memoryview(data)
    end = len(view)
    start = 0
    while True:
        decoder = zlib.decompressobj(wbits=31)
        pos = start
        pending: bytes | memoryview = b""
        while not decoder.eof:
            if not pending:
                if pos >= end:
                    raise CodecError("gzip data is truncated")
                pending = view[pos : pos + _CHUNK]
                pos += len(pending)
            chunk = decoder.decompress(pending, _CHUNK)
            pending = decoder.unconsumed_tail
            if chunk:
                yield chunk
        start = pos - len(pending) - len(decoder.unused_data)
        if bytes(view[start : start + 2]) != _GZIP_MAGIC:
            return


def _lz4_chunks(data: bytes | memoryview) -> Iterator[bytes | memoryview]:
    """One LZ4 frame, block by block, as Kafka's KafkaLZ4BlockInputStream reads it.

    Walked here rather than with lz4.frame's decompressor, which copies the input it
    has not consumed yet on every call (quadratic in chunked use) and measured ~1.5 ms
    of CPU per 1 MB librdkafka batch; block by block it is the LZ4 library's own speed.
    What follows the frame is ignored, as Kafka does. Checksums are not verified: the
    batch's CRC-32C already covers these bytes.
    """
    view = memoryview(data)
    end = len(view)
    if end < 7:
        raise CodecError("lz4 frame header truncated")
    if _UINT32_LE.unpack_from(view, 0)[0] != _LZ4_MAGIC:
        raise CodecError("no lz4 frame")
    flags, block_descriptor = view[4], view[5]
    if flags >> 6 != 1:
        raise CodecError(f"lz4 frame version {flags >> 6}")
    if flags & _LZ4_DICTIONARY_ID:
        raise CodecError("lz4 frame needs a dictionary")
    max_block = _LZ4_BLOCK_MAX.get(block_descriptor >> 4 & 7)
    if max_block is None:
        raise CodecError(f"lz4 frame block size code {block_descriptor >> 4 & 7}")
    linked = not flags & _LZ4_INDEPENDENT_BLOCKS
    block_checksum = 4 if flags & _LZ4_BLOCK_CHECKSUM else 0
    pos = 7 + (8 if flags & _LZ4_CONTENT_SIZE else 0)  # magic, FLG, BD, [size], HC
    window = b""  # linked blocks may refer to the last 64 KiB decoded
    while True:
        if pos + 4 > end:
            raise CodecError("lz4 frame truncated")
        size = _UINT32_LE.unpack_from(view, pos)[0]
        pos += 4
        if not size:
            break  # end mark
        stored = size & _LZ4_STORED_BLOCK
        size &= ~_LZ4_STORED_BLOCK
        if size > max_block or pos + size > end:
            raise CodecError(f"lz4 block of {size} bytes at byte {pos} does not fit")
        block = view[pos : pos + size]
        pos += size + block_checksum
        if stored:
            out: bytes | memoryview = block
        elif linked:
            out = lz4.block.decompress(block, uncompressed_size=max_block, dict=window)
        else:
            out = lz4.block.decompress(block, uncompressed_size=max_block)
        if linked:
            window = (window + bytes(out))[-_LZ4_WINDOW:]
        yield out
    if pos + (4 if flags & _LZ4_CONTENT_CHECKSUM else 0) > end:
        raise CodecError("lz4 frame truncated")


def _zstd_chunks(data: bytes | memoryview) -> Iterator[memoryview]:
    # Frames one after another, as zstd-jni's stream reads them; trailing bytes that are
    # not a frame are an error. The stream reader also takes frames without a content
    # size (which producers write and ZstdDecompressor.decompress() refuses), but it ends
    # a truncated frame quietly: the frame walk is what finds those.
    _check_zstd_frames(memoryview(data))
    reader = _ZSTD.stream_reader(data, read_across_frames=True)
    out = _scratch_view(_CHUNK)
    while True:
        n = reader.readinto(out)
        if not n:
            return
        yield out[:n]


def _check_zstd_frames(data: memoryview) -> None:
    """Walk frame and block headers (RFC 8878) to the end: the data must be whole frames."""
    end = len(data)
    if not end:
        raise CodecError("zstd data is empty")
    pos = 0
    while pos < end:
        if pos + 5 > end:
            raise CodecError(f"zstd frame header truncated at byte {pos}")
        magic = _UINT32_LE.unpack_from(data, pos)[0]
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE:
            if pos + 8 > end:
                raise CodecError(f"zstd skippable frame truncated at byte {pos}")
            pos += 8 + _UINT32_LE.unpack_from(data, pos + 4)[0]
            continue
        if magic != _ZSTD_MAGIC:
            raise CodecError(f"no zstd frame at byte {pos}")
        descriptor = data[pos + 4]
        single_segment = descriptor >> 5 & 1
        pos += (
            5
            + (not single_segment)
            + _ZSTD_DICTIONARY_ID_SIZE[descriptor & 3]
            + (_ZSTD_CONTENT_SIZE_SIZE[descriptor >> 6] or single_segment)
        )
        while True:
            if pos + 3 > end:
                raise CodecError("zstd frame truncated")
            block = int.from_bytes(data[pos : pos + 3], "little")
            kind = block >> 1 & 3
            if kind == _ZSTD_RESERVED_BLOCK:
                raise CodecError(f"zstd block of reserved type at byte {pos}")
            pos += 3 + (1 if kind == _ZSTD_RLE_BLOCK else block >> 3)
            if block & 1:
                break
        if descriptor >> 2 & 1:
            pos += 4  # content checksum
    if pos > end:
        raise CodecError("zstd frame truncated")


_SNAPPY_MAX_RATIO = 32


def _snappy_chunks(data: memoryview, limit: int) -> Iterator[memoryview]:
    if bytes(data[: len(_XERIAL_MAGIC)]) != _XERIAL_MAGIC:
        yield _snappy_block(data, limit)
        return
    pos = len(_XERIAL_HEADER)
    while pos < len(data):
        if pos + 4 > len(data):
            raise CodecError("xerial snappy block length truncated")
        (size,) = _INT32.unpack_from(data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise CodecError("xerial snappy block runs past the data")
        yield _snappy_block(data[pos : pos + size], limit)
        pos += size


def _snappy_block(block: memoryview, limit: int) -> memoryview:
    # A raw snappy block is decoded whole (librdkafka sends a batch as one block), so
    # it is the one output not chunked; it starts with its uncompressed length, which
    # is checked against the limit before anything is allocated.
    size = cramjam.snappy.decompress_raw_len(block)
    # No snappy element expands more than 64 bytes out of 3 in, so a block declaring
    # more than 32 times its own length is lying: refuse it before allocating for it.
    if size > _SNAPPY_MAX_RATIO * len(block):
        raise CodecError(f"snappy block of {len(block)} bytes declares {size} bytes")
    if size > limit:
        raise LimitExceeded(f"snappy block declares {size} bytes, more than {limit}")
    out = _scratch_view(size)
    cramjam.snappy.decompress_raw_into(block, out)
    return out


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


def name(codec: int) -> str:
    """The codec's name as compression.type spells it, or its number if unknown."""
    return next((n for n, c in NAMES.items() if c == codec), str(codec))
