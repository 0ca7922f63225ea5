"""A log's checkpoint file: its start offset and its recovery point (everything before it
is synced), written temp-and-rename so that a reader sees the old file or the new one.

Layout (little-endian): magic "PTKC", version u16, start offset, recovery point
(segment base, position, next offset) as u64 each, then the CRC-32C of all that.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

from portask.storage.files import fsync_directory

logger = logging.getLogger("portask.storage")

CHECKPOINT_NAME = "checkpoint"
CHECKPOINT_TMP = "checkpoint.tmp"
_CHECKPOINT = struct.Struct("<4sHQQQQ")
_CHECKPOINT_CRC = struct.Struct("<I")
_CHECKPOINT_MAGIC = b"PTKC"
_CHECKPOINT_VERSION = 1


class RecoveryPoint(NamedTuple):
    """Everything before ``position`` in segment ``segment_base`` is synced to disk."""

    segment_base: int
    position: int
    next_offset: int


def read_checkpoint(directory: Path) -> tuple[int, RecoveryPoint] | None:
    """(start offset, recovery point), or None: no checkpoint, or one that is unreadable
    (logged), so that recovery verifies every segment."""
    path = directory / CHECKPOINT_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    size = _CHECKPOINT.size
    if (len(data) == size + _CHECKPOINT_CRC.size
            and _CHECKPOINT_CRC.unpack_from(data, size)[0] == crc32c(data[:size])):
        magic, version, start, rp_base, rp_pos, rp_next = _CHECKPOINT.unpack_from(data)
        if magic == _CHECKPOINT_MAGIC and version == _CHECKPOINT_VERSION:
            return start, RecoveryPoint(rp_base, rp_pos, rp_next)
    logger.warning("log %s: checkpoint is unreadable; verifying every segment", directory)
    return None


def write_checkpoint(directory: Path, start_offset: int, rp: RecoveryPoint,
                     durable: bool) -> None:
    """Write-temp-and-rename; ``durable`` fsyncs the file and the directory."""
    body = _CHECKPOINT.pack(_CHECKPOINT_MAGIC, _CHECKPOINT_VERSION, start_offset,
                            rp.segment_base, rp.position, rp.next_offset)
    data = body + _CHECKPOINT_CRC.pack(crc32c(body))
    tmp = os.path.join(directory, CHECKPOINT_TMP)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"{tmp}: short write")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, CHECKPOINT_NAME))
    if durable:
        fsync_directory(directory)
