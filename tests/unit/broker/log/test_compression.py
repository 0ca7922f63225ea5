"""The record-batch codecs: what clients write decodes, anything else is CodecError, and
no input makes a decoder hold more than its limit (or one output chunk, when checking)."""

from __future__ import annotations

import contextlib
import gzip
import os
import tracemalloc

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from portask.broker.log import compression
from portask.broker.log.compression import GZIP, LZ4, SNAPPY, ZSTD, CodecError, LimitExceeded

CODECS = {"gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
DATA = os.urandom(200_000).hex().encode()  # compresses about 2:1, like the load tool's values
REPETITIVE = b"".join(b"event %d page /products/%d; " % (i, i % 97) for i in range(20_000))
BIG = 1 << 30


def _xerial(data: bytes, block: int = 32 * 1024) -> bytes:
    """Snappy as the Java client, kafka-python and aiokafka frame it."""
    out = [b"\x82SNAPPY\x00" + (1).to_bytes(4, "big") + (1).to_bytes(4, "big")]
    for start in range(0, len(data), block):
        raw = bytes(cramjam.snappy.compress_raw(data[start : start + block]))
        out.append(len(raw).to_bytes(4, "big") + raw)
    return b"".join(out)


def _zstd_streamed(data: bytes) -> bytes:
    """zstd as a streaming producer writes it: no content size in the frame header."""
    writer = zstandard.ZstdCompressor(write_content_size=False, write_checksum=True)
    obj = writer.compressobj()
    return obj.compress(data) + obj.flush()


# What clients send, made by third-party encoders: librdkafka's raw snappy, the Java
# clients' xerial snappy, zstd frames with and without a content size.
CLIENT_FORMS = {
    "gzip": (GZIP, gzip.compress(DATA)),
    "gzip, two members": (GZIP, gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:])),
    "snappy raw": (SNAPPY, bytes(cramjam.snappy.compress_raw(DATA))),
    "snappy xerial": (SNAPPY, _xerial(DATA)),
    "lz4 frame": (LZ4, lz4.frame.compress(DATA)),
    # librdkafka's and Java's framing: independent 64 KiB blocks, no content size.
    "lz4 independent 64 KiB blocks": (LZ4, lz4.frame.compress(
        DATA, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False, store_size=False,
    )),
    # Linked blocks refer back into earlier ones; with checksums, which are skipped.
    "lz4 linked blocks, checksums": (LZ4, lz4.frame.compress(
        REPETITIVE, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=True,
        content_checksum=True, block_checksum=True,
    )),
    "zstd with content size": (ZSTD, zstandard.ZstdCompressor().compress(DATA)),
    "zstd streamed": (ZSTD, _zstd_streamed(DATA)),
    "zstd, two frames": (
        ZSTD,
        zstandard.ZstdCompressor().compress(DATA[:1000]) + _zstd_streamed(DATA[1000:]),
    ),
}


@pytest.mark.parametrize("form", list(CLIENT_FORMS))
def test_what_clients_write_decodes_and_checks_to_its_size(form: str) -> None:
    codec, data = CLIENT_FORMS[form]
    expected = REPETITIVE if "linked" in form else DATA
    assert compression.decompress(codec, memoryview(data), BIG) == expected
    assert compression.uncompressed_size(codec, memoryview(data), BIG) == len(expected)


@pytest.mark.parametrize("codec", list(CODECS.values()), ids=list(CODECS))
def test_what_the_broker_writes_reads_back(codec: int) -> None:
    assert compression.decompress(codec, compression.compress(codec, DATA), BIG) == DATA


# Each codec's own magic followed by junk: the decoders must look past the header.
MAGIC_THEN_JUNK = {
    "gzip": (GZIP, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"junk" * 20),
    "snappy xerial": (SNAPPY, b"\x82SNAPPY\x00" + bytes(8) + (40).to_bytes(4, "big") + b"j" * 40),
    "snappy raw": (SNAPPY, b"\x80\x01" + b"junk" * 20),
    "lz4": (LZ4, (0x184D2204).to_bytes(4, "little") + b"\x64\x40\xa7" + b"junk" * 20),
    "zstd": (ZSTD, (0xFD2FB528).to_bytes(4, "little") + b"junk" * 20),
}


@pytest.mark.parametrize("form", list(MAGIC_THEN_JUNK))
def test_a_codec_magic_followed_by_junk_is_a_codec_error(form: str) -> None:
    codec, data = MAGIC_THEN_JUNK[form]
    with pytest.raises(CodecError):
        compression.uncompressed_size(codec, data, BIG)
    with pytest.raises(CodecError):
        compression.decompress(codec, data, BIG)


@pytest.mark.parametrize("form", list(CLIENT_FORMS))
def test_truncated_streams_are_codec_errors(form: str) -> None:
    codec, data = CLIENT_FORMS[form]
    for cut in (1, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(CodecError):
            compression.uncompressed_size(codec, data[:cut], BIG)


def test_unknown_codec_and_empty_data_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="unknown compression codec 5"):
        compression.uncompressed_size(5, b"abc", BIG)
    for codec in CODECS.values():
        with pytest.raises(CodecError):
            compression.uncompressed_size(codec, b"", BIG)


ZEROS = bytes(256 << 20)
BOMBS = {
    "gzip": (GZIP, gzip.compress(ZEROS[: 64 << 20], compresslevel=9)),
    "snappy raw": (SNAPPY, bytes(cramjam.snappy.compress_raw(ZEROS[: 16 << 20]))),
    "lz4": (LZ4, lz4.frame.compress(ZEROS[: 128 << 20])),
    "zstd": (ZSTD, zstandard.ZstdCompressor(level=19).compress(ZEROS)),
}
del ZEROS


@pytest.mark.parametrize("form", list(BOMBS))
def test_a_small_batch_that_expands_past_the_limit_is_refused(form: str) -> None:
    codec, data = BOMBS[form]
    assert len(data) < 1 << 20
    with pytest.raises(LimitExceeded):
        compression.uncompressed_size(codec, data, 4 << 20)
    with pytest.raises(LimitExceeded):
        compression.decompress(codec, data, 4 << 20)


@pytest.mark.parametrize("form", ["gzip", "lz4", "zstd"])
def test_checking_holds_one_chunk_whatever_the_data_expands_to(form: str) -> None:
    codec, data = BOMBS[form]
    tracemalloc.start()
    try:
        size = compression.uncompressed_size(codec, data, BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size >= 64 << 20
    # A few 64 KiB chunks and the input, against 64-256 MiB of output.
    assert peak < (2 << 20) + 2 * len(data)


def _mutations() -> st.SearchStrategy[tuple[int, bytes]]:
    forms = st.sampled_from(list(CLIENT_FORMS.values()))

    def mutate(form: tuple[int, bytes], draw: st.DrawFn) -> tuple[int, bytes]:
        codec, data = form
        data = bytearray(data[: draw(st.integers(1, len(data)))])
        for _ in range(draw(st.integers(0, 4))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        return codec, bytes(data)

    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, bytes]:
        return mutate(draw(forms), draw)

    return build()


@settings(max_examples=300, deadline=None)
@given(_mutations())
def test_mutated_streams_decode_consistently_or_raise_codec_error(form: tuple[int, bytes]) -> None:
    """What the produce check accepts, the readers can decode: one decoder serves both."""
    codec, data = form
    try:
        size = compression.uncompressed_size(codec, data, 8 << 20)
    except CodecError:
        with pytest.raises(CodecError):
            compression.decompress(codec, data, 8 << 20)
        return
    assert len(compression.decompress(codec, data, 8 << 20)) == size


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(CODECS.values())), st.binary(max_size=300))
def test_random_bytes_raise_only_codec_error(codec: int, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        compression.uncompressed_size(codec, data, 1 << 20)
