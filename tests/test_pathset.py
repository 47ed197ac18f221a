"""The xenstore reader's set of known paths (reference/pathset.py) is exact.

A hash only chooses a bucket; every answer is confirmed against the stored
path.  With the stored hash cut to nothing (``_MASK32 = 0``) every path
shares one hash and one bucket, so every answer rests on that confirmation:
the set must still answer exactly as a ``set`` of the paths does, and the
xenstore validator must still find exactly what it finds with real hashes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xenstream.reference import pathset, spill
from xenstream.reference.checker import Checker
from xenstream.reference.examples import all_examples
from xenstream.reference.formats import validate
from xenstream.reference.pathset import PathSet
from xenstream.reference.rules import Role
from xenstream.reference.source import Source

# paths made of few letters, slashes and empty components, so that prefixes, doubled
# slashes and look-alikes ("/x" beside "//x", "/a/b" beside "/ab") come up often
_paths = st.lists(st.sampled_from([b"a", b"b", b"ab", b"", b"@"]), min_size=1, max_size=5).map(
    lambda parts: b"/" + b"/".join(parts))


def _add_like_the_reader(ps: PathSet, path: bytes) -> None:
    """Add ``path`` as the xenstore reader does: as a child of its parent when that is known."""
    cut = path.rfind(b"/")
    ps.add(path, ps.find(path[:cut] if cut > 0 else b"/"), cut)


def _check_against_a_set(adds: list[bytes], asks: list[bytes]) -> PathSet:
    """``adds`` added as the reader adds them; every path of ``adds`` and ``asks`` is a
    member exactly when a plain set says so.  The set, for more questions."""
    ps, ref = PathSet((b"/",)), {b"/"}
    for p in adds:
        _add_like_the_reader(ps, p)
        ref.add(p)
    for p in adds + asks:
        assert (p in ps) == (p in ref), p
        assert (ps.find(p) >= 0) == (p in ref), p
    return ps


@settings(max_examples=200, deadline=None)
@given(st.lists(_paths, max_size=40), st.lists(_paths, max_size=40))
def test_answers_as_a_set_does(adds, asks):
    _check_against_a_set(adds, asks)


@settings(max_examples=200, deadline=None)
@given(st.lists(_paths, max_size=40), st.lists(_paths, max_size=40))
def test_answers_as_a_set_does_when_every_hash_collides(adds, asks):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pathset, "_MASK32", 0)  # one hash and one bucket for every path
        _check_against_a_set(adds, asks)


def test_look_alikes_are_told_apart_when_hashes_collide(monkeypatch):
    monkeypatch.setattr(pathset, "_MASK32", 0)
    ps = PathSet((b"/",))
    for p in (b"/local", b"/local/domain", b"//local", b"/local/domain/1"):
        _add_like_the_reader(ps, p)
    for p in (b"/local/domai", b"/local/domain/", b"/local//domain", b"/localdomain", b"/local/domain/1/",
              b"local/domain", b"//local/domain", b"/local/domain/12"):
        assert p not in ps, p
    for p in (b"/", b"/local", b"/local/domain", b"//local", b"/local/domain/1"):
        assert p in ps, p


@pytest.fixture
def in_memory(monkeypatch):
    """The default budget, whatever the environment says: these tests look at the columns."""
    monkeypatch.delenv(spill.BUDGET_ENV, raising=False)


def test_grows_and_stays_exact(in_memory):
    ps = PathSet((b"/",))
    paths = [b"/d%d" % d for d in range(30)] + [b"/d%d/k%d" % (d, k) for d in range(30) for k in range(1000)]
    for p in paths:
        _add_like_the_reader(ps, p)
    assert len(ps) == len(paths) + 1
    assert all(p in ps for p in paths[::97])
    assert b"/d30/k0" not in ps and b"/d3/k1000" not in ps and b"/d3/k" not in ps
    # a path whose parent is known is its parent's index and its last component
    assert ps.memory() < 40 * len(ps)


def test_xenstore_findings_do_not_depend_on_hashes(monkeypatch):
    examples = [e for e in all_examples() if e.format == "xenstore"]
    assert examples

    def outcome(e, role):
        ck = validate(Source.from_bytes(e.data), "xenstore", Checker(role))
        return [(f.rule.id, f.offset, f.message, f.location) for f in ck.findings], ck.accepted

    before = [(outcome(e, Role.STRICT), outcome(e, Role.RESTORE)) for e in examples]
    assert any("parent" in r for (fs, _), _ in before for r, *_ in fs)  # the parent rules are exercised
    monkeypatch.setattr(pathset, "_MASK32", 0)
    after = [(outcome(e, Role.STRICT), outcome(e, Role.RESTORE)) for e in examples]
    assert after == before


def test_orphans_share_their_missing_parents_octets(in_memory):
    # children first: every node's parent comes after it; the missing parents get entries
    # that are not members until they come, so the paths are stored once, as a tree
    ps = PathSet((b"/",))
    leaves = [b"/local/domain/%d/data/k%d" % (d, k) for d in range(20) for k in range(200)]
    for p in leaves:
        _add_like_the_reader(ps, p)
    assert len(ps) == 1 + len(leaves)
    for p in (b"/local", b"/local/domain", b"/local/domain/3", b"/local/domain/3/data"):
        assert p not in ps, p
    assert ps.entries() == 1 + len(leaves) + 2 + 20 * 2
    _add_like_the_reader(ps, b"/local/domain/3/data")
    assert b"/local/domain/3/data" in ps and b"/local/domain/3" not in ps
    assert len(ps) == 2 + len(leaves) and ps.entries() == 1 + len(leaves) + 2 + 20 * 2
    assert ps.memory() < 40 * ps.entries()
    deep = b"/x" * 2000  # more components than Python's recursion limit
    ps.add(deep)
    assert deep in ps and deep[:-2] not in ps
