"""Sets past their memory budget spill to a temporary file (reference/spill.py) and stay exact.

The budget is lowered (to nothing, and to a little more than an empty set
holds) so that the spilled sets answer the same questions as ``set`` does
under Hypothesis, the xenstore validator finds exactly what it finds with
everything in memory, no file is left behind and a temporary directory that
cannot be made is one line on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from xenstream.reference import pathset, spill
from xenstream.reference import xenstore_build as xb
from xenstream.reference import xenstore_records as xr
from xenstream.reference.checker import Checker
from xenstream.reference.examples import all_examples
from xenstream.reference.formats import validate
from xenstream.reference.layout import Endian
from xenstream.reference.pathset import PathSet
from xenstream.reference.rules import Role
from xenstream.reference.source import Source

from test_intset import _check_ints_against_a_set, _keys
from test_pathset import _add_like_the_reader, _check_against_a_set, _paths

IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__import__("xenstream").__file__)))
#: budgets: spill at once; spill after some entries are in memory
_BUDGETS = (0, PathSet().memory() + 300)


@pytest.fixture
def budget(monkeypatch):
    def set_to(octets: int) -> None:
        monkeypatch.setenv(spill.BUDGET_ENV, str(octets))
    monkeypatch.delenv(spill.BUDGET_ENV, raising=False)
    return set_to




@settings(max_examples=100, deadline=None)
@given(st.sampled_from(_BUDGETS), st.booleans(), st.sampled_from([8, 64, 1 << 24]),
       st.lists(_paths, max_size=60), st.lists(_paths, max_size=40))
def test_spilled_paths_answer_as_a_set_does(b, collide, filter_bits, adds, asks):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(spill.BUDGET_ENV, str(b))
        mp.setattr(spill, "FILTER_BITS", filter_bits)  # 8 bits: nearly every question reaches the disk
        if collide:
            mp.setattr(pathset, "_MASK32", 0)
        ps = _check_against_a_set(adds, asks)
        if b == 0 and set(adds) - {b"/"}:
            assert ps.spilled()
        ps.close()


@settings(max_examples=100, deadline=None)
@given(st.sampled_from((0, 2000, 5000)), st.sampled_from([8, 1 << 24]), st.lists(_keys, max_size=300),
       st.lists(_keys, max_size=50))
def test_spilled_ints_answer_as_a_set_does(b, filter_bits, adds, asks):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(spill.BUDGET_ENV, str(b))
        mp.setattr(spill, "FILTER_BITS", filter_bits)
        s = _check_ints_against_a_set(adds, asks)
        if b == 0 or len(set(adds)) > 200:  # the table takes no key at 2000 octets, 86 at 5000
            assert s.spilled()
        s.close()


def test_a_large_spilled_set_stays_exact(budget):
    budget(1 << 16)
    ps, n = PathSet((b"/",)), 0
    for d in range(40):
        _add_like_the_reader(ps, b"/d%d" % d)
        for k in range(500):
            _add_like_the_reader(ps, b"/d%d/k%d" % (d, k))
            n += 1
    assert ps.spilled() and ps.memory() < 2 * (1 << 16)
    assert all(b"/d%d/k%d" % (d, k) in ps for d in range(40) for k in range(0, 500, 7))
    assert b"/d40" not in ps and b"/d3/k500" not in ps and b"/d3/k" not in ps
    assert len(ps) == 1 + 40 + n
    ps.close()


def _outcome(data: bytes, role: Role):
    ck = validate(Source.from_bytes(data), "xenstore", Checker(role))
    return [(f.rule.id, f.offset, f.message, f.location) for f in ck.findings], ck.accepted


def test_xenstore_examples_find_the_same_when_spilled(budget):
    examples = [e for e in all_examples() if e.format == "xenstore"]
    assert examples
    before = [(_outcome(e.data, Role.STRICT), _outcome(e.data, Role.RESTORE)) for e in examples]
    for b in _BUDGETS:
        budget(b)
        assert [(_outcome(e.data, Role.STRICT), _outcome(e.data, Role.RESTORE)) for e in examples] == before


def _stream(nodes: int, transactions: int) -> bytes:
    """A live-update stream: ``nodes`` committed nodes (a few orphans and a few whose parents come
    late, so the parent rule both passes and fails), then ``transactions`` transactions with a
    pending node each, one of them in an unannounced transaction."""
    e, enc = Endian.LITTLE, xr.encode_one
    out = [xr.encode_header(xr.Header(2, e)), enc(xr.GlobalData(rw_socket_fd=5, evtchn_fd=7), e),
           enc(xr.ConnectionData(1, xr.Socket(12)), e)]
    perms = xb.owner(xb.DOM0)
    for p in (b"/", b"/local", b"/local/domain"):
        out.append(enc(xr.NodeData(p, b"", perms), e))
    for i in range(nodes):
        d, k = divmod(i, 300)
        if k == 0:
            out.append(enc(xr.NodeData(b"/local/domain/%d" % d, b"", perms), e))
        out.append(enc(xr.NodeData(b"/local/domain/%d/k%d" % (d, k), b"v%d" % i, perms), e))
        if i % 5000 == 17:  # an orphan, and a node under a parent that is not there (yet)
            out.append(enc(xr.NodeData(b"/orphan/%d/x" % i, b"", perms), e))
            out.append(enc(xr.NodeData(b"/local/domain/%d/k%d/y" % (d, k + 1), b"", perms), e))
    for t in range(transactions):
        out.append(enc(xr.TransactionData(1, t + 1), e))
        out.append(enc(xr.NodeData(b"/local/domain/0/t%d" % t, b"", perms, conn_id=1, tx_id=t + 1), e))
    out.append(enc(xr.NodeData(b"/local/domain/0/nope", b"", perms, conn_id=1, tx_id=transactions + 7), e))
    out.append(xr.END_RECORD[e])
    return b"".join(out)


def test_a_stream_past_the_budget_finds_the_same(budget, monkeypatch, tmp_path):
    data = _stream(30_000, 3_000)
    before = _outcome(data, Role.STRICT)
    assert {r for r, *_ in before[0]} >= {"xenstore.node_data.parent_unknown", "xenstore.node_data.tx_unknown"}
    made = []
    real = spill.DiskSet

    def counted(*a, **k):
        made.append(real(*a, **k))
        assert os.listdir(tmp_path) == []  # the file and its directory are unlinked once open
        return made[-1]

    monkeypatch.setattr(spill, "DiskSet", counted)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    budget(1 << 16)  # some 2,000 paths and 1,365 transactions in memory, the rest on disk
    assert _outcome(data, Role.STRICT) == before
    assert len(made) == 2  # the paths and the transactions spilled; the one connection did not
    assert os.listdir(tmp_path) == []
    for d in made:  # let go of when the reader ended
        with pytest.raises(Exception, match="closed"):
            len(d)


@pytest.mark.parametrize("tmpdir_kind", ["missing", "a file"])
def test_a_temporary_directory_that_cannot_be_made_is_one_line(tmp_path, tmpdir_kind):
    stream = tmp_path / "s.xs"
    stream.write_bytes(_stream(50, 5))
    where = tmp_path / "nowhere"
    if tmpdir_kind == "a file":
        where.write_bytes(b"")
    env = dict(os.environ, TMPDIR=str(where), **{spill.BUDGET_ENV: "0"})
    env["PYTHONPATH"] = IMPORT_ROOT
    r = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", "xenstore", "-i", str(stream)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(where) in lines[0] and "temporary directory" in lines[0], lines[0]
    # with a directory it can use, the same stream is checked
    ok = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", "xenstore", "-q", "-i", str(stream)],
                        capture_output=True, text=True, env=dict(env, TMPDIR=str(tmp_path)), cwd=tmp_path, timeout=60)
    assert ok.returncode == 1 and not ok.stderr, ok  # the stream's orphans and unknown transaction
    assert sorted(os.listdir(tmp_path)) == sorted(["s.xs"] + (["nowhere"] if tmpdir_kind == "a file" else []))


def test_a_failing_database_is_a_spill_error_naming_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    d = spill.DiskSet("test keys")
    d._db.close()  # every statement fails from now on, as on a full or failing disk
    with pytest.raises(spill.SpillError) as e:
        for k in range(spill.BATCH):
            d.add(b"/k%d" % k)
    assert isinstance(e.value, OSError) and e.value.filename == str(tmp_path) and "test keys" in e.value.strerror
    with pytest.raises(spill.SpillError):
        b"/k0" in d


def test_an_interpreter_without_sqlite3_is_a_spill_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqlite3", None)  # import sqlite3 raises ImportError
    with pytest.raises(spill.SpillError, match="no sqlite3"):
        spill.DiskSet("test keys")


def test_a_budget_that_is_not_a_number_is_a_usage_error(monkeypatch):
    from xenstream.reference.errors import UsageError

    monkeypatch.setenv(spill.BUDGET_ENV, "16M")
    with pytest.raises(UsageError, match="XENSTREAM_SET_BUDGET=16M: give a number of octets"):
        spill.budget()
    monkeypatch.setenv(spill.BUDGET_ENV, "0x1000")
    assert spill.budget() == 4096
