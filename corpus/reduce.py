"""A small, deterministic test-case reducer.

Two passes, repeated until neither shrinks the input:

0. *variants*: smaller variants the caller knows how to make (page batches
   cut to their first pages, :attr:`Codec.trim <xenstream.reference.formats.Codec.trim>`), first one that keeps wins;
1. *items*: delete runs of whole items (records, chunks, headers; see
   :mod:`.frames`), long runs first, then single items, from the end of the
   stream towards its start;
2. *bytes*: delta debugging (ddmin) over the octets, in chunks that halve
   down to one octet, bounded by ``max_tests``.

``keep(candidate) -> bool`` says whether a candidate still shows what is
being preserved (the same verdict and findings for the corpus, the same
exception for a fuzz crash).  The result is deterministic for a
deterministic ``keep``: the corpus builder relies on that.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from .frames import boundaries

Keep = Callable[[bytes], bool]


class _Budget:
    def __init__(self, max_tests: int, deadline: float | None):
        self.tests = 0
        self.max_tests = max_tests
        self.deadline = deadline

    def spent(self) -> bool:
        if self.tests >= self.max_tests:
            return True
        return self.deadline is not None and time.monotonic() > self.deadline


def _items_pass(fmt: str, data: bytes, keep: Keep, budget: _Budget, options: dict | None) -> bytes:
    run = None
    while not budget.spent():
        points = boundaries(fmt, data, options)
        count = len(points) - 1
        if count <= 0:
            return data
        run = count if run is None else min(run, count)
        shrunk = False
        # runs of `run` items, from the end; halve the run length when none goes
        for i in range(count - run, -1, -1):
            if budget.spent():
                return data
            a, b = points[i], points[i + run]
            candidate = data[:a] + data[b:]
            budget.tests += 1
            if keep(candidate):
                data = candidate
                shrunk = True
                break
        if shrunk:
            continue
        if run == 1:
            return data
        run //= 2
    return data


def _variants_pass(data: bytes, variants, keep: Keep, budget: _Budget) -> bytes:
    progress = True
    while progress and not budget.spent():
        progress = False
        for candidate in variants(data):
            if budget.spent():
                break
            if len(candidate) >= len(data):
                continue
            budget.tests += 1
            if keep(candidate):
                data, progress = candidate, True
                break
    return data


def _bytes_pass(data: bytes, keep: Keep, budget: _Budget, *, min_chunk: int = 1) -> bytes:
    chunk = max(len(data) // 2, 1)
    while chunk >= min_chunk and not budget.spent():
        shrunk = False
        i = len(data) - chunk
        while i >= 0 and not budget.spent():
            candidate = data[:i] + data[i + chunk:]
            budget.tests += 1
            if keep(candidate):
                data = candidate
                shrunk = True
            i = min(i - chunk, len(data) - chunk)
        if not shrunk:
            if chunk == 1:
                break
            chunk //= 2
    return data


def reduce(data: bytes, keep: Keep, *, fmt: str, items: bool = True, octets: bool = False,
           max_tests: int = 5000, seconds: float | None = None, min_chunk: int = 1,
           variants: Callable[[bytes], Iterable[bytes]] | None = None,
           options: dict | None = None) -> bytes:
    """The smallest variant of ``data`` found for which ``keep`` holds.

    ``keep(data)`` must hold on entry (checked; ``ValueError`` otherwise).
    ``octets`` adds the byte-level pass (fuzz findings); the corpus builder
    uses the item pass only, so that reduced streams stay well framed.
    """
    data = bytes(data)
    if not keep(data):
        raise ValueError("the property to keep does not hold on the input")
    budget = _Budget(max_tests, None if seconds is None else time.monotonic() + seconds)
    while True:
        before = len(data)
        if variants is not None:
            data = _variants_pass(data, variants, keep, budget)
        if items:
            data = _items_pass(fmt, data, keep, budget, options)
        if octets:
            data = _bytes_pass(data, keep, budget, min_chunk=min_chunk)
        if len(data) == before or budget.spent():
            return data
