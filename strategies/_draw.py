"""One drawing interface for two drivers.

The builders of :mod:`xenstream.strategies` take a :class:`Draw` and ask it for
small integers, choices and booleans.  :class:`HypothesisDraw` forwards each
request to a Hypothesis ``draw`` (inside ``st.composite``), so that examples
shrink: integers towards their lower bound, choices towards the first
element, booleans towards False.  :class:`RandomDraw` answers from a seeded
``random.Random`` for ``xenstream sample``: the same seed gives the same
bytes, with no Hypothesis machinery involved.

Large contents (pages, contexts) are never drawn octet by octet: builders
draw a small seed and expand it deterministically (:func:`pattern`).
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


class Draw:
    """The requests a builder may make."""

    def int(self, lo: int, hi: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def choice(self, seq: Sequence[T]) -> T:
        seq = list(seq)
        return seq[self.int(0, len(seq) - 1)]

    def bytes(self, lo: int, hi: int, alphabet: bytes | None = None) -> bytes:
        n = self.int(lo, hi)
        if alphabet is None:
            return bytes(self.int(0, 255) for _ in range(n))
        return bytes(alphabet[self.int(0, len(alphabet) - 1)] for _ in range(n))

    def sample(self, seq: Sequence[T], lo: int, hi: int) -> list[T]:
        """``lo``..``hi`` distinct elements of ``seq``, in ``seq`` order."""
        seq = list(seq)
        hi = min(hi, len(seq))
        n = self.int(min(lo, hi), hi)
        pool = list(range(len(seq)))
        picked = []
        for _ in range(n):
            picked.append(pool.pop(self.int(0, len(pool) - 1)))
        return [seq[i] for i in sorted(picked)]


class HypothesisDraw(Draw):
    def __init__(self, draw: Callable):
        from hypothesis import strategies as st

        self._draw = draw
        self._st = st

    def int(self, lo: int, hi: int) -> int:
        if lo >= hi:
            return lo
        return self._draw(self._st.integers(lo, hi))

    def bool(self) -> bool:
        return self._draw(self._st.booleans())

    def choice(self, seq):
        seq = list(seq)
        if len(seq) == 1:
            return seq[0]
        return self._draw(self._st.sampled_from(seq))

    def bytes(self, lo: int, hi: int, alphabet: bytes | None = None) -> bytes:
        st = self._st
        if alphabet is None:
            return self._draw(st.binary(min_size=lo, max_size=hi))
        chars = st.sampled_from(list(alphabet))
        return bytes(self._draw(st.lists(chars, min_size=lo, max_size=hi)))


class RandomDraw(Draw):
    def __init__(self, rnd: random.Random | int):
        self.rnd = rnd if isinstance(rnd, random.Random) else random.Random(rnd)

    def int(self, lo: int, hi: int) -> int:
        if lo >= hi:
            return lo
        return self.rnd.randint(lo, hi)

    def bool(self) -> bool:
        return self.rnd.random() < 0.5


def pattern(seed: int, size: int) -> bytes:
    """``size`` deterministic, recognisable octets derived from ``seed``."""
    block = hashlib.sha256(seed.to_bytes(16, "little", signed=True)).digest()
    return (block * (size // len(block) + 1))[:size]


def pick(d: Draw, value, default: Callable[[], T]) -> T:
    """An option: None draws with ``default``, a (lo, hi) tuple draws in range, else the value."""
    if value is None:
        return default()
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return d.int(*value)
    return value


def broken_magic(d: Draw, data: bytes, magic: bytes) -> tuple[bytes, str]:
    """``data`` (which starts with ``magic``) with one octet of the magic changed."""
    i = d.int(0, len(magic) - 1)
    value = (data[i] + d.int(1, 255)) & 0xFF
    return data[:i] + bytes([value]) + data[i + 1:], f"magic octet {i} is 0x{value:02x}"
