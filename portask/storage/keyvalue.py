"""A small durable key-value store: a msgpack snapshot plus an append-only change log.

Used for definitions (topics, exchanges, queues, bindings, users) and consumer
offsets: few keys, values that change often, every change kept. Each change is one
framed record appended to ``<name>.changes``; opening replays the snapshot and the
changes, then compacts them into a fresh snapshot (write temp + fsync + rename) and
an empty change log. A torn last record (a crash mid-write) is dropped; a change is
durable across a process crash once ``put``/``delete`` return, and across a machine
crash when the store was opened with ``fsync=True``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import crc32c
import msgpack

from portask.storage.files import fsync_directory

log = logging.getLogger("portask.storage")

_FRAME = struct.Struct(">II")  # payload length, CRC-32C of payload
_PUT, _DELETE = 0, 1
_SNAPSHOT_MAGIC = b"PTKV1\n"


class KeyValueStoreError(Exception):
    """The store's files cannot be read or written."""


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    # Tuples come back as tuples so that composite keys stay hashable.
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)


class KeyValueStore:
    def __init__(self, directory: Path, name: str = "definitions", *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.name = name
        self.fsync = fsync
        self._data: dict[str, dict[Hashable, Any]] = {}
        self._fd: int | None = None
        self._changes_bytes = 0
        self._snapshot_bytes = 0
        # Inside batch(): changes are written at once and synced together at its end.
        self._batched = 0

    @property
    def snapshot_path(self) -> Path:
        return self.directory / f"{self.name}.snapshot"

    @property
    def changes_path(self) -> Path:
        return self.directory / f"{self.name}.changes"

    def open(self) -> KeyValueStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_snapshot()
        self._replay_changes()
        self._compact()
        return self

    def get(self, namespace: str, key: Hashable, default: Any = None) -> Any:
        return self._data.get(namespace, {}).get(key, default)

    def items(self, namespace: str) -> Iterator[tuple[Hashable, Any]]:
        return iter(list(self._data.get(namespace, {}).items()))

    def put(self, namespace: str, key: Hashable, value: Any) -> None:
        self._append((_PUT, namespace, key, value))
        self._data.setdefault(namespace, {})[key] = value

    def delete(self, namespace: str, key: Hashable) -> None:
        if key not in self._data.get(namespace, {}):
            return
        self._append((_DELETE, namespace, key, None))
        del self._data[namespace][key]

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one sync: each is written as it is made (a process crash keeps
        it) and all are made durable together when the block ends."""
        self._batched += 1
        try:
            yield
        finally:
            self._batched -= 1
            if not self._batched and self.fsync and self._fd is not None:
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    raise KeyValueStoreError(
                        f"{self.changes_path}: cannot write: {exc.strerror}") from exc

    def close(self) -> None:
        if self._fd is not None:
            self._compact()
            os.close(self._fd)
            self._fd = None

    def _append(self, change: tuple[Any, ...]) -> None:
        if self._fd is None:
            raise KeyValueStoreError(f"{self.changes_path}: store is not open")
        payload = _pack(change)
        record = _FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload
        try:
            os.write(self._fd, record)
            if self.fsync and not self._batched:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise KeyValueStoreError(f"{self.changes_path}: cannot write: {exc.strerror}") from exc
        self._changes_bytes += len(record)
        # Compacting when the change log outgrows the snapshot keeps replay short.
        if self._changes_bytes > max(1 << 20, 2 * self._snapshot_bytes):
            self._compact()

    def _load_snapshot(self) -> None:
        path = self.snapshot_path
        if not path.exists():
            return
        raw = path.read_bytes()
        body = raw[len(_SNAPSHOT_MAGIC) + _FRAME.size:]
        if not raw.startswith(_SNAPSHOT_MAGIC):
            raise KeyValueStoreError(f"{path}: not a Portask snapshot (bad magic)")
        length, crc = _FRAME.unpack_from(raw, len(_SNAPSHOT_MAGIC))
        if length != len(body) or crc32c.crc32c(body) != crc:
            # A snapshot is only ever replaced by rename, so damage here is not a torn write.
            raise KeyValueStoreError(f"{path}: snapshot checksum mismatch; restore it from backup")
        data = _unpack(body)
        self._data = {ns: dict(entries) for ns, entries in data.items()}
        self._snapshot_bytes = len(raw)

    def _replay_changes(self) -> None:
        path = self.changes_path
        if not path.exists():
            return
        raw = path.read_bytes()
        pos = 0
        while pos + _FRAME.size <= len(raw):
            length, crc = _FRAME.unpack_from(raw, pos)
            payload = raw[pos + _FRAME.size: pos + _FRAME.size + length]
            if len(payload) != length or crc32c.crc32c(payload) != crc:
                break
            op, namespace, key, value = _unpack(payload)
            if op == _PUT:
                self._data.setdefault(namespace, {})[key] = value
            else:
                self._data.get(namespace, {}).pop(key, None)
            pos += _FRAME.size + length
        if pos != len(raw):
            log.warning(
                "dropped a torn change record at the end of the store",
                extra={"fields": {"file": str(path), "position": pos,
                                  "bytes_dropped": len(raw) - pos}},
            )

    def _compact(self) -> None:
        body = _pack(self._data)
        blob = _SNAPSHOT_MAGIC + _FRAME.pack(len(body), crc32c.crc32c(body)) + body
        tmp = self.snapshot_path.with_suffix(".snapshot.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.snapshot_path)
            fsync_directory(self.directory)
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(
                self.changes_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644
            )
        except OSError as exc:
            raise KeyValueStoreError(f"{self.directory}: cannot write {self.name}: {exc}") from exc
        self._snapshot_bytes = len(blob)
        self._changes_bytes = 0
