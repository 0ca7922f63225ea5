"""Mutations of valid protocol bytes, shared by the fuzz targets and the end-to-end fuzzer.

A decoder rarely breaks on random bytes (they fail its first check); it breaks on a
valid frame with one thing wrong: a length that lies, a count of 2^32-1, a frame cut
short, two frames spliced together. So every fuzz input here starts as a valid frame
and goes through a few of these operators.

The operators draw their choices from a ``Choose`` (an integer in [low, high]), so the
same code runs under hypothesis (the unit fuzz targets, which shrink what they find)
and under ``random.Random(seed).randint`` (the end-to-end fuzzer, which runs for minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

Choose = Callable[[int, int], int]

# The fuzz targets' hypothesis profiles. `make test` runs the short one: few examples,
# derandomized so that the suite gives the same answer every run (a finding there is
# reproducible, never a flake). `make fuzz` runs the long one: random, many examples.
# tests/conftest.py sets FUZZ_PROFILE from --fuzz-profile before any target is collected.
SHORT, LONG = "fuzz-short", "fuzz-long"
_COMMON: dict[str, object] = {
    "deadline": None,
    # One failure, the first found, shrunk: xfail(raises=AssertionError) marks for
    # defects fixed elsewhere must see an AssertionError, not a group of them.
    "report_multiple_bugs": False,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.filter_too_much],
}
settings.register_profile(SHORT, max_examples=60, derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(LONG, max_examples=20_000, **_COMMON)  # type: ignore[arg-type]
FUZZ_PROFILE = SHORT


def fuzz_settings(scale: float = 1.0) -> settings:
    """The active fuzz profile, with its example count scaled for a costly target."""
    profile = settings.get_profile(FUZZ_PROFILE)
    return settings(profile, max_examples=max(1, int(profile.max_examples * scale)))


# Values that sit on the edges decoders get wrong: zero, sign bits, all ones, and
# the largest values of each width (counts of 2^31-1 and 2^32-1 are the classic lies).
_EDGE_VALUES = (
    0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000,
    0xFFFF_FFFE, 0xFFFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF,
)
_EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_WIDTHS = (1, 2, 4, 8)
# Unsigned varints of huge counts: 2^31, 2^32-1 (KIP-482 compact arrays read it as
# 2^32-2 elements), 2^35-1 and 2^63-1; the last is also a zigzag varint's extreme.
_HUGE_VARINTS = tuple(
    bytes(b) for b in (
        (0x80, 0x80, 0x80, 0x80, 0x08),
        (0xFF, 0xFF, 0xFF, 0xFF, 0x0F),
        (0xFF, 0xFF, 0xFF, 0xFF, 0x7F),
        (0xFF,) * 8 + (0x7F,),
    )
)


def _position(data: bytes, choose: Choose) -> int:
    return choose(0, len(data))


def flip_bit(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    if not data:
        return data
    at = choose(0, len(data) - 1)
    out = bytearray(data)
    out[at] ^= 1 << choose(0, 7)
    return bytes(out)


def set_byte(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    if not data:
        return data
    at = choose(0, len(data) - 1)
    pick = choose(0, len(_EDGE_BYTES))
    value = _EDGE_BYTES[pick] if pick < len(_EDGE_BYTES) else choose(0, 255)
    return data[:at] + bytes((value,)) + data[at + 1 :]


def lying_integer(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    """Overwrite an integer of some width with an edge value: a length or count that lies."""
    width = _WIDTHS[choose(0, len(_WIDTHS) - 1)]
    at = _position(data, choose)
    candidates = (*_EDGE_VALUES, len(data), len(data) + 1, max(len(data) - at - 1, 0))
    value = candidates[choose(0, len(candidates) - 1)]
    if choose(0, 1):
        value = max(value - choose(0, 3), 0)  # near misses: one byte too long or short
    raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big" if choose(0, 3) else "little")
    return data[:at] + raw + data[at + width :]


def huge_varint(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    at = _position(data, choose)
    raw = _HUGE_VARINTS[choose(0, len(_HUGE_VARINTS) - 1)]
    if choose(0, 1):
        return data[:at] + raw + data[at:]
    return data[:at] + raw + data[at + len(raw) :]


def truncate(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    return data[: _position(data, choose)]


def delete_range(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    at = _position(data, choose)
    return data[:at] + data[at + choose(1, 16) :]


def duplicate_range(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    at = _position(data, choose)
    end = min(len(data), at + choose(1, 32))
    return data[:end] + data[at:end] * choose(1, 4) + data[end:]


def insert_bytes(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    at = _position(data, choose)
    return data[:at] + bytes(choose(0, 255) for _ in range(choose(1, 8))) + data[at:]


def splice(data: bytes, choose: Choose, donors: Sequence[bytes]) -> bytes:
    """Graft a piece of another valid frame in: fields of the right shape in the wrong place."""
    donor = donors[choose(0, len(donors) - 1)] if donors else data
    start = _position(donor, choose)
    piece = donor[start : start + choose(1, 64)]
    at = _position(data, choose)
    if choose(0, 1):
        return data[:at] + piece + data[at:]
    return data[:at] + piece + data[at + len(piece) :]


OPERATORS: tuple[Callable[[bytes, Choose, Sequence[bytes]], bytes], ...] = (
    flip_bit, set_byte, lying_integer, lying_integer, huge_varint, truncate,
    delete_range, duplicate_range, insert_bytes, splice,
)


def mutate(data: bytes, choose: Choose, donors: Sequence[bytes] = (), most: int = 4) -> bytes:
    """``data`` after between 1 and ``most`` operators."""
    for _ in range(choose(1, most)):
        data = OPERATORS[choose(0, len(OPERATORS) - 1)](data, choose, donors)
    return data


@st.composite
def mutated(
    draw: st.DrawFn, valid: st.SearchStrategy[bytes], donors: Sequence[bytes] = (),
    most: int = 4,
) -> tuple[bytes, bytes]:
    """(valid, mutated) pairs; sometimes the valid bytes unchanged, so that the target is
    also seen to accept what it must accept."""
    original = draw(valid)
    if draw(st.integers(0, 15)) == 0:
        return original, original

    def choose(low: int, high: int) -> int:
        return draw(st.integers(low, high))

    return original, mutate(original, choose, donors, most)
