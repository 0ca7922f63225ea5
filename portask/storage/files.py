"""File-system steps more than one store needs."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path | str) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
