"""`python -m tests.integration.amqp.enospc_broker serve ...`: Portask on a disk that fills.

For the full-disk tests on machines where they cannot mount a small filesystem (not
root, or no mount permission). The broker runs unchanged; only the two system calls
through which the storage layer writes segments and indexes, ``os.pwrite`` and
``os.pwritev``, are wrapped: the bytes they write count against a budget read from
the file named by ``TEST_DISK_BUDGET_FILE``, and a write that would exceed it
fails with ENOSPC without writing anything, as on a full disk. Writing a larger
number into that file is "space freed"; it is read again whenever the budget runs
out. Nothing in ``portask`` reads that variable.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from portask.cli import main

BUDGET_FILE_ENV = "TEST_DISK_BUDGET_FILE"


class Budget:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.used = 0
        self.limit = self._read()

    def _read(self) -> int:
        return int(self.path.read_text())

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            self.limit = self._read()
            if self.used + size > self.limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.used += size


def install(budget: Budget) -> None:
    real_pwrite, real_pwritev = os.pwrite, os.pwritev

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        budget.take(memoryview(data).nbytes)
        return real_pwrite(fd, data, offset)

    def pwritev(fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        budget.take(sum(memoryview(b).nbytes for b in buffers))
        return real_pwritev(fd, buffers, offset)

    os.pwrite = pwrite
    os.pwritev = pwritev


if __name__ == "__main__":
    install(Budget(Path(os.environ[BUDGET_FILE_ENV])))
    raise SystemExit(main())
