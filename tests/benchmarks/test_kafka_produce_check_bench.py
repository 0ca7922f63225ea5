"""What checking compressed batches at produce time costs. Run with `make bench`.

Batches of 960 records with 1 KiB values, one librdkafka batch of ~1 MB, compressed the
way librdkafka does it (raw snappy, an LZ4 frame of independent 64 KiB blocks, a zstd
frame, gzip at level 6). Two
kinds of values: the load tool's (tools/loadtest.py kafka: hex digits, which gzip and
zstd shrink to ~55% and LZ4 and snappy not at all) and JSON events (~5-12%, more like
application data). ``check_records`` is the per-batch work produce added;
``parse_batches`` (CRC-32C and header checks, already on the path) is measured beside it
for scale. Figures land in each benchmark's extra_info as µs per message and
uncompressed MB/s.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import struct
from typing import Any

import cramjam
import crc32c
import lz4.frame
import pytest
import zstandard
from kafka.record.default_records import DefaultRecordBatchBuilder

from portask.protocols.kafka import records

RECORDS = 960
LIMIT = 64 << 20


def _hex_values() -> list[bytes]:
    values = os.urandom(RECORDS * 512).hex().encode()
    return [values[i * 1024 : (i + 1) * 1024] for i in range(RECORDS)]


def _json_values() -> list[bytes]:
    rng = random.Random(9)
    out = []
    for i in range(RECORDS):
        event = {
            "user_id": rng.randrange(10**6),
            "event": rng.choice(["click", "view", "purchase", "scroll"]),
            "page": f"/products/{rng.randrange(5000)}",
            "ts": 1_700_000_000_000 + i,
            "session": f"{rng.getrandbits(128):032x}",
            "agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
        }
        value = json.dumps(event).encode()
        out.append(value + b" " * (1024 - len(value)))
    return out


def _plain_batch(values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=4 << 20,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


PLAIN = {"hex": _plain_batch(_hex_values()), "json": _plain_batch(_json_values())}
COMPRESS = {
    "none": (0, lambda data: data),
    "gzip": (1, lambda data: gzip.compress(data, compresslevel=6)),
    "snappy": (2, lambda data: bytes(cramjam.snappy.compress_raw(data))),
    "lz4": (3, lambda data: lz4.frame.compress(
        data, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False, store_size=False
    )),
    "zstd": (4, lambda data: zstandard.ZstdCompressor(level=3).compress(data)),
}


def _batch(name: str, values: str) -> bytes:
    codec, compress = COMPRESS[name]
    plain = PLAIN[values]
    out = bytearray(plain[:61]) + compress(plain[61:])
    struct.pack_into(">i", out, 8, len(out) - 12)
    struct.pack_into(">h", out, 21, codec)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def _report(benchmark: Any, uncompressed: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    for label, seconds in (("best", stats.stats.min), ("mean", stats.stats.mean)):
        benchmark.extra_info[f"us/msg ({label})"] = round(seconds / RECORDS * 1e6, 3)
        benchmark.extra_info[f"MB/s uncompressed ({label})"] = round(uncompressed / seconds / 1e6)


@pytest.mark.parametrize("values", list(PLAIN))
@pytest.mark.parametrize("name", list(COMPRESS))
def test_check_records(benchmark: Any, name: str, values: str) -> None:
    batch = memoryview(_batch(name, values))
    (info,) = records.parse_batches(batch)
    benchmark(records.check_records, batch, info, LIMIT)
    benchmark.extra_info["batch bytes"] = len(batch)
    _report(benchmark, len(PLAIN[values]))


def test_parse_batches_for_scale(benchmark: Any) -> None:
    batch = memoryview(_batch("none", "hex"))
    benchmark(records.parse_batches, batch)
    _report(benchmark, len(PLAIN["hex"]))
