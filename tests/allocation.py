"""Run a decoder so that it may allocate only what its input justifies, and tell if it tried more.

Decoders allocate in two places, and each needs its own measurement:

- Python objects and buffers (pamqp, kio's result objects, bytes the codecs return)
  are seen by ``tracemalloc``: their peak during the call must be linear in the input.
- Native code that calls malloc directly (kio's Rust decoder, cramjam, lz4, zstd) is
  invisible to tracemalloc, and a large allocation there need not touch a page, so
  RSS does not show it either: a 20-byte input can reserve gigabytes unseen or, when
  the reservation fails, abort the process (kio did, issue 9). So the call first runs
  in a worker process whose address space is limited (RLIMIT_AS) to what it already
  uses plus the allowance. A decoder that needs more dies there, or answers
  differently (a MemoryError turned into some other error): either way the input
  made it allocate beyond the bytes it came with. Only then does the call run here,
  unlimited, for the caller's functional checks.

The worker is forked once per test session and reused (a fork per call costs 20 ms
on a busy machine); a worker that dies is replaced for the next call. Calls are sent
to it as a module-level function and its arguments, pickled.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import re
import resource
import signal
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_VM_SIZE = re.compile(r"^VmSize:\s+(\d+) kB$", re.MULTILINE)
_LENGTH = struct.Struct(">I")
# Allowances: objects per input byte (a one-byte array element becomes a Python object
# of ~100 bytes), and constants for a decoder's own working set.
PER_BYTE = 256
PYTHON_SLACK = 256 * 1024
NATIVE_SLACK = 32 << 20

Outcome = tuple[str, ...]


def _outcome(error: BaseException | None) -> Outcome:
    if error is None:
        return ("returned",)
    return ("raised", type(error).__qualname__, str(error))


def _run(call: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, BaseException | None]:
    try:
        return call(*args), None
    except Exception as exc:  # the caller decides which types may escape
        return None, exc


def _vm_size() -> int | None:
    try:
        found = _VM_SIZE.search(_STATUS.read_text())
    except OSError:  # not Linux: no address-space figure to limit from
        return None
    return int(found.group(1)) * 1024 if found else None


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, value: Any) -> None:
    data = pickle.dumps(value)
    os.write(fd, _LENGTH.pack(len(data)) + data)


def _receive(fd: int) -> Any:
    return pickle.loads(_read_exactly(fd, _LENGTH.unpack(_read_exactly(fd, 4))[0]))


def _serve(requests: int, replies: int) -> None:
    """The worker's loop: (function, args, allowance) in, (python peak, outcome) out."""
    # A decoder that aborts here is the finding; pytest's fault handler would add a dump
    # of this process's stack to the report, which says nothing about the decoder.
    faulthandler.disable()
    unlimited = resource.getrlimit(resource.RLIMIT_AS)
    tracemalloc.start()
    while True:
        try:
            call, args, allowance = _receive(requests)
        except EOFError:
            return
        if allowance is None:  # a warm-up: run unlimited and unmeasured
            _, error = _run(call, args)
            _send(replies, (0, _outcome(error)))
            continue
        vm_size = _vm_size()
        if vm_size is not None:
            resource.setrlimit(resource.RLIMIT_AS, (vm_size + allowance, unlimited[1]))
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        _, error = _run(call, args)
        _, peak = tracemalloc.get_traced_memory()
        resource.setrlimit(resource.RLIMIT_AS, unlimited)
        _send(replies, (peak - before, _outcome(error)))


class _Worker:
    def __init__(self) -> None:
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover  (the child never returns)
            try:
                os.close(self._to_worker)
                os.close(self._from_worker)
                _serve(to_worker_r, from_worker_w)
            finally:
                os._exit(0)
        os.close(to_worker_r)
        os.close(from_worker_w)

    def run(self, call: Callable[..., Any], args: tuple[Any, ...],
            allowance: int | None) -> tuple[int, Outcome] | str:
        """(python peak, outcome), or the name of the signal that killed the worker."""
        try:
            _send(self._to_worker, (call, args, allowance))
            return _receive(self._from_worker)  # type: ignore[no-any-return]
        except (EOFError, BrokenPipeError):
            self.close()
            _, status = os.waitpid(self.pid, 0)
            if os.WIFSIGNALED(status):
                return signal.Signals(os.WTERMSIG(status)).name
            return f"exit status {os.WEXITSTATUS(status)}"

    def close(self) -> None:
        for fd in (self._to_worker, self._from_worker):
            with contextlib.suppress(OSError):  # already closed
                os.close(fd)


_worker: _Worker | None = None


def warm(call: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run ``call(*args)`` in the worker without a limit or a measurement: for caches a
    decoder fills on first use (the worker was forked whenever the session first needed
    it, so it may lack what this process has since built), which ``bounded`` would
    otherwise count against one unlucky input."""
    global _worker
    if _worker is None:
        _worker = _Worker()
    if isinstance(_worker.run(call, args, None), str):
        _worker = None


def bounded(
    call: Callable[..., Any], args: tuple[Any, ...], input_size: int, what: str, *,
    native: bool = True, per_byte: int = PER_BYTE, python_slack: int = PYTHON_SLACK,
    native_slack: int = NATIVE_SLACK,
) -> tuple[Any, BaseException | None]:
    """``call(*args)``'s (result, exception), after failing the test if it allocates more
    than ``per_byte`` per input byte plus the slack. ``native=False`` skips the worker,
    for decoders that are pure Python (tracemalloc sees all they allocate)."""
    global _worker
    python_limit = python_slack + per_byte * input_size
    if not native:
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result, error = _run(call, args)
        _, peak = tracemalloc.get_traced_memory()
        if started:
            tracemalloc.stop()
        assert peak - before <= python_limit, (
            f"{what}: {peak - before} bytes of Python objects for {input_size} input bytes "
            f"(limit {python_limit})"
        )
        return result, error

    native_limit = native_slack + per_byte * input_size
    if _worker is None:
        _worker = _Worker()
    answer = _worker.run(call, args, native_limit)
    if isinstance(answer, str):
        _worker = None
        raise AssertionError(
            f"{what}: the decoder died ({answer}) when its process could grow by at most "
            f"{native_limit} bytes for {input_size} input bytes"
        )
    peak, limited = answer
    assert peak <= python_limit, (
        f"{what}: {peak} bytes of Python objects for {input_size} input bytes "
        f"(limit {python_limit})"
    )
    result, error = _run(call, args)
    assert _outcome(error) == limited, (
        f"{what}: with its process limited to {native_limit} more bytes the decoder "
        f"answered {limited}, unlimited {_outcome(error)}: it allocates beyond what "
        f"{input_size} input bytes justify"
    )
    return result, error
