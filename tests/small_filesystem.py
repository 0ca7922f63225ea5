"""A small, real file system for full-disk tests: a tmpfs mounted for the test.

tmpfs gives real ENOSPC from the kernel (short writes included) at a size the test
picks, and ``nr_inodes`` makes creating a file fail the same way. Mounting needs root
(CAP_SYS_ADMIN): CI runs as root, so there the tests run; elsewhere they are skipped
with the reason, never passed vacuously.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: int, inodes: int | None = None) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for a full disk needs root (CI runs as root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        # Lazy: a test that failed may still hold files open; the mount goes when they do.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(path: Path, chunk: int = 4096) -> int:
    """Write ``path`` until the file system is full; returns the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                written += f.write(b"\xaa" * chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return written


def use_every_inode(directory: Path) -> list[Path]:
    """Create empty files until no inode is left; returns them, to free later."""
    made = []
    try:
        while True:
            path = directory / f"inode-{len(made)}"
            path.touch()
            made.append(path)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    return made
