"""Writer process for test_log_crash.py: appends known records until it is killed.

Prints ``offset count size`` for every entry right after the append returns, so every
printed line is an acknowledgement the parent may hold the log to. Payloads are a pure
function of (offset, size), so the parent can check them without being told.

Usage: python crash_writer.py DIRECTORY SEED {none,flush_messages,fsync_always}
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from portask.storage import Log, LogConfig


def payload(offset: int, size: int) -> bytes:
    stamp = f"{offset}:".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def main() -> None:
    directory, seed, policy = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    config = LogConfig(
        segment_bytes=256 * 1024,
        segment_ms=None,
        index_interval_bytes=1024,
        flush_messages=25 if policy == "flush_messages" else None,
        fsync_always=policy == "fsync_always",
    )
    log = Log.open(directory, config)
    rng = random.Random(seed)
    out = sys.stdout
    while True:
        offset = log.end_offset
        if rng.random() < 0.7:
            size = rng.randrange(0, 20_000)
            count = rng.randint(1, 4)
            log.append(payload(offset, size), count=count, timestamp=offset)
            out.write(f"{offset} {count} {size}\n")
        else:
            sizes = [rng.randrange(0, 2000) for _ in range(rng.randint(1, 50))]
            log.append_many([payload(offset + i, s) for i, s in enumerate(sizes)],
                            timestamp=offset)
            out.write("".join(f"{offset + i} 1 {s}\n" for i, s in enumerate(sizes)))
        out.flush()


if __name__ == "__main__":
    main()
