"""reference/intset.py: an exact set of unsigned 64-bit integers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xenstream.reference import spill
from xenstream.reference.intset import IntSet, pair

_keys = st.one_of(st.integers(0, 40), st.integers(0, (1 << 64) - 1),
                  st.sampled_from([(1 << 64) - 1, (1 << 64) - 2, 1 << 63, 0]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_keys, max_size=200), st.lists(_keys, max_size=50))
def test_answers_as_a_set_does(adds, asks):
    _check_ints_against_a_set(adds, asks)


def _check_ints_against_a_set(adds: list[int], asks: list[int]) -> IntSet:
    """After each of ``adds`` the sizes agree with a plain set's; every key of ``adds`` and
    ``asks`` is a member exactly when the plain set says so.  The set, for more questions."""
    s, ref = IntSet(), set()
    for k in adds:
        s.add(k)
        ref.add(k)
        assert len(s) == len(ref)
    for k in adds + asks:
        assert (k in s) == (k in ref)
    return s


def test_crafted_and_sequential_keys_grow_it_and_stay_exact(monkeypatch):
    monkeypatch.delenv(spill.BUDGET_ENV, raising=False)  # the default budget: this looks at the table
    s = IntSet()
    keys = [pair(c, t) for c in range(1, 60) for t in range(1, 600)] + [k << 20 for k in range(30000)]
    for k in keys:
        s.add(k)
    assert len(s) == len(set(keys))
    assert all(k in s for k in keys[::37])
    assert pair(60, 1) not in s and pair(1, 600) not in s and (30000 << 20) not in s
    assert s.memory() <= 24 * len(s)


def test_refuses_what_is_not_a_u64():
    with pytest.raises(ValueError):
        IntSet().add(-1)
    with pytest.raises(ValueError):
        IntSet().add(1 << 64)
