"""The xenstore ``c-restorable`` variant: valid streams inside what C xenstored
4.17 and 4.20 restore (docs/findings.md, "C xenstored").

Each stream must be valid in the strict role and keep every constraint
:func:`c_restorable_problems` checks; each constraint must matter: a valid
stream that breaks it is flagged, so the variant really is narrower than the
spec, constraint by constraint."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import HealthCheck, find, given, settings

import xenstream.strategies as S
from xenstream.reference.checker import Checker
from xenstream.reference.errors import UsageError
from xenstream.reference.formats import get_codec, validate
from xenstream.reference.layout import Endian
from xenstream.reference.rules import Role
from xenstream.reference.source import Source
from xenstream.reference import xenstore as XS
from xenstream.reference.xenstore_records import (
    ConnectionData, DomainData, GlobalData, GlobalQuotaData, Header, NodeData, Permission, SharedRing,
    Socket, TransactionData, WatchData, WatchDataExtended, XenstoreStream,
)
from xenstream.strategies.xenstore import XS_MSG, c_restorable_problems

CODEC = get_codec("xenstore")
VARIANT = S.valid("xenstore", variant="c-restorable")


def strict(data: bytes):
    return validate(Source.from_bytes(data), "xenstore", Checker(Role.STRICT))


def decode(data: bytes) -> XenstoreStream:
    return CODEC.decode(data)


def encode(stream: XenstoreStream) -> bytes:
    return CODEC.encode(stream)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(VARIANT)
def test_streams_are_strict_valid_and_c_restorable(ex):
    checked = strict(ex.data)
    assert checked.first_refused() is None, checked.first_refused()
    assert c_restorable_problems(ex.data) == []
    either = {f.rule.id for f in checked.findings}
    # the label names the one either rule the stream leans on, and only then
    if ex.rule is None:
        assert ex.expected == "accept" and not either
    else:
        assert (ex.rule, ex.expected) == (XS.PATH_SPECIAL, "either") and either == {XS.PATH_SPECIAL}


def _sample(n: int = 200):
    return [S.generate_valid("xenstore", i, variant="c-restorable") for i in range(n)]


def test_the_variant_has_the_variety_of_the_plain_strategy():
    """Sockets, guests, device models, watches of every kind, transactions,
    pending output and input, nodes with other domains' permissions, values
    past one word, the special nodes: each in some draw of a small sample."""
    seen = set()
    for ex in _sample():
        recs = decode(ex.data).records
        last_conn = max(i for i, r in enumerate(recs) if isinstance(r, ConnectionData))
        if any(isinstance(r, NodeData) for r in recs[:last_conn]):
            seen.add("node between connections")
        for r in recs:
            if isinstance(r, ConnectionData):
                seen.add(type(r.spec).__name__)
                if isinstance(r.spec, SharedRing) and r.spec.domid:
                    seen.add("guest")
                if isinstance(r.spec, SharedRing) and r.spec.tdomid != 0x7FF0:
                    seen.add("device model")
                if r.unique_id is not None:
                    seen.add("unique-id")
                if r.out_resp_len:
                    seen.add("partial response")
                if len(r.out_data) > r.out_resp_len:
                    seen.add("pending messages")
                if r.in_data:
                    seen.add("pending input")
            elif isinstance(r, WatchData):
                seen.add("watch " + ("special" if r.wpath[:1] == b"@" else
                                     "absolute" if r.wpath[:1] == b"/" else "relative"))
            elif isinstance(r, TransactionData):
                seen.add("transaction")
            elif isinstance(r, NodeData):
                if r.path[:1] == b"@":
                    seen.add("special node")
                elif r.path == b"/":
                    seen.add("root")
                else:
                    seen.add("node")
                    if len(r.perms) > 1:
                        seen.add("acl")
                    if r.path.count(b"/") > 1:
                        seen.add("nested")
                    if len(r.value) > 512:
                        seen.add("large value")
    assert seen >= {"SharedRing", "Socket", "guest", "device model", "unique-id", "partial response",
                    "pending messages", "pending input", "watch special", "watch absolute",
                    "watch relative", "transaction", "special node", "node between connections", "root", "node", "acl", "nested",
                    "large value"}, seen


# -- every constraint matters: a valid stream that breaks it is flagged --------------

def _base() -> XenstoreStream:
    """A drawn variant stream with a guest ring, a socket and a node owned by the guest."""
    for ex in _sample(400):
        s = decode(ex.data)
        rings = [r for r in s.records if isinstance(r, ConnectionData) and isinstance(r.spec, SharedRing)
                 and r.spec.domid]
        if rings and any(isinstance(r, ConnectionData) and isinstance(r.spec, Socket) for r in s.records) \
                and any(isinstance(r, NodeData) and r.perms and r.perms[0].domid for r in s.records):
            return s
    raise AssertionError("no draw with a guest, a socket and a guest's node")


def _records(s, recs, **header) -> XenstoreStream:
    h = s.header
    return XenstoreStream(Header(header.get("version", h.version), header.get("endian", h.endian)), tuple(recs))


def _node_at(recs) -> int:
    return next(i for i, r in enumerate(recs) if isinstance(r, NodeData) and r.path[:1] == b"/")


def _is_dom0_ring(r) -> bool:
    return isinstance(r, ConnectionData) and isinstance(r.spec, SharedRing) and r.spec.domid == 0


def _break(name: str, s: XenstoreStream) -> XenstoreStream:
    recs = list(s.records)
    if name == "version 2":
        return _records(s, recs, version=2)
    if name == "big-endian":
        return _records(s, recs, endian=Endian.BIG)
    if name == "no GLOBAL_DATA":
        return _records(s, [r for r in recs if not isinstance(r, GlobalData)])
    if name == "no dom0 ring":
        # its nodes given to a guest, so that only the ring is missing
        guest = next(r.spec.domid for r in recs if isinstance(r, ConnectionData)
                     and isinstance(r.spec, SharedRing) and r.spec.domid)
        out = []
        for r in recs:
            if _is_dom0_ring(r) or (isinstance(r, (WatchData, TransactionData)) and r.conn_id ==
                                    next(c.conn_id for c in recs if _is_dom0_ring(c))):
                continue
            if isinstance(r, NodeData):
                r = NodeData(r.path, r.value, tuple(Permission(p.perm, guest if p.domid == 0 else p.domid)
                                                    for p in r.perms))
            out.append(r)
        return _records(s, out)
    if name == "node before dom0 ring":
        node = NodeData(b"/early", b"1234567", (Permission("n", 0),))   # 16+4+7+7: whole words
        return _records(s, recs[:1] + [node] + recs[1:])
    if name == "body not whole words":
        i = _node_at(recs)
        r = recs[i]
        recs[i] = NodeData(r.path, r.value + b"x", r.perms)
        return _records(s, recs)
    if name == "quota record":
        return _records(s, recs[:1] + [GlobalQuotaData()] + recs[1:])
    if name == "DOMAIN_DATA":
        return _records(s, recs + [DomainData(0)])
    if name == "WATCH_DATA_EXTENDED":
        c = next(r.conn_id for r in recs if _is_dom0_ring(r))
        return _records(s, recs + [WatchDataExtended(c, b"/abc", b"t", 1)], version=2)
    if name == "pending node":
        c = next(r.conn_id for r in recs if _is_dom0_ring(r))
        return _records(s, recs + [TransactionData(c, 5), NodeData(b"/pend", b"1234", (Permission("n", 0),),
                                                                   c, 5, 2)])
    if name == "owner without ring":
        i = _node_at(recs)
        r = recs[i]
        recs[i] = NodeData(r.path, r.value, (Permission("n", 0x7000),) + r.perms[1:])
        return _records(s, recs)
    if name == "output not whole messages":
        i = next(i for i, r in enumerate(recs) if isinstance(r, ConnectionData) and isinstance(r.spec, Socket))
        r = recs[i]
        out = XS_MSG.pack(2, 1, 0, 4096) + b"12345678"   # a header claiming more than follows
        recs[i] = ConnectionData(r.conn_id, r.spec, b"", out, 0)
        return _records(s, recs)
    raise AssertionError(name)


CONSTRAINTS = {
    "version 2": "version 2",
    "big-endian": "big-endian",
    "no GLOBAL_DATA": "no GLOBAL_DATA",
    "no dom0 ring": "no shared ring of domain 0",
    "node before dom0 ring": "before domain 0's ring",
    "body not whole words": "not whole words",
    "quota record": "GLOBAL_QUOTA_DATA",
    "DOMAIN_DATA": "DOMAIN_DATA",
    "WATCH_DATA_EXTENDED": "WATCH_DATA_EXTENDED",
    "pending node": "a pending node",
    "owner without ring": "node owner 28672 has no ring",
    "output not whole messages": "not whole messages",
}


@pytest.mark.parametrize("name", CONSTRAINTS)
def test_each_constraint_matters(name):
    s = _base()
    assert c_restorable_problems(encode(s)) == []
    broken = encode(_break(name, s))
    # still valid by the spec (the strict role), yet outside what C xenstored restores
    assert strict(broken).first_refused() is None, (name, strict(broken).first_refused())
    problems = c_restorable_problems(broken)
    assert any(CONSTRAINTS[name] in p for p in problems), (name, problems)


def test_the_plain_valid_strategy_leaves_the_variant():
    """What the variant narrows: most plain valid draws break some constraint."""
    outside = sum(1 for i in range(100)
                  if c_restorable_problems(S.generate_valid("xenstore", i).data))
    assert outside > 80


def test_it_shrinks_to_global_data_and_dom0s_ring():
    least = find(VARIANT, lambda ex: True, settings=settings(database=None), random=Random(0))
    recs = decode(least.data).records
    assert [type(r) for r in recs] == [GlobalData, ConnectionData] and _is_dom0_ring(recs[1])
    # a stream with a guest's node shrinks to the least that holds one: the
    # guest's ring, then the node, with nothing else (seeded: a search may end
    # in a local minimum, one node more)
    least = find(VARIANT, lambda ex: any(isinstance(r, NodeData) and r.perms and r.perms[0].domid
                                         for r in decode(ex.data).records),
                 settings=settings(database=None, max_examples=2000), random=Random(0))
    kinds = [type(r).__name__ for r in decode(least.data).records]
    assert kinds == ["GlobalData", "ConnectionData", "ConnectionData", "NodeData"], kinds


def test_variants_are_listed_and_unknown_ones_refused():
    assert S.variants("xenstore") == ["c-restorable"]
    assert S.variants("libxc") == []
    with pytest.raises(UsageError, match="no valid variant 'nope'; known: c-restorable"):
        S.valid("xenstore", variant="nope")
    with pytest.raises(UsageError, match="known: none"):
        S.generate_valid("libxc", 0, variant="c-restorable")


def test_sample_writes_the_variant(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-m", "xenstream", "sample", "xenstore", "--valid", "--variant",
                           "c-restorable", "-n", "4", "--seed", "3", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    bins = sorted(out.glob("*.bin"))
    assert len(bins) == 4
    for b in bins:
        assert c_restorable_problems(b.read_bytes()) == []
        assert "C-restorable" in json.loads(b.with_suffix(".json").read_text())["description"]


# -- by execution: the real daemons restore the variant, and not what breaks it -----------

import os  # noqa: E402
from pathlib import Path  # noqa: E402

TOOLS = Path(os.environ.get("XEN_TOOLS_DIR") or Path(__file__).resolve().parents[1] / ".cache" / "xen-tools")
#: The constraints whose breach the daemons show over the wire (the quota records and
#: WATCH_DATA_EXTENDED are skipped, losing what nobody reads back; a pending message's
#: header read past the record crashes only when it claims more than is mapped).
SHOWN = ("version 2", "big-endian", "no dom0 ring", "node before dom0 ring", "body not whole words",
         "owner without ring", "pending node")


@pytest.fixture(scope="module")
def daemons():
    from xenstream.conformance.execute import Limits
    from xenstream.conformance.native import Unavailable
    from xenstream.conformance.xenstored.daemon import build_shim
    from xenstream.conformance.xenstored.runner import XenstoredProgram

    missing = [r for r in ("4.17", "4.20") if not (TOOLS / r / "xenstored").exists()]
    if missing:
        pytest.skip(f"xenstored {', '.join(missing)} not fetched under {TOOLS}: run scripts/fetch-xen-tools")
    try:
        shim = build_shim()
    except Unavailable as exc:
        pytest.skip(str(exc))
    return {r: XenstoredProgram([str(TOOLS / r / "xenstored")], Limits(timeout=10, memory_mb=0), shim)
            for r in ("4.17", "4.20")}


def test_real_daemons_restore_the_variant_exactly(daemons):
    for ex in _sample(12):
        for release, prog in daemons.items():
            out = prog.restore(ex.data)
            assert (out.observed.verdict, out.diffs) == ("accept", []), (release, ex.description,
                                                                         out.observed.stderr)


@pytest.mark.parametrize("name", SHOWN)
def test_real_daemons_fail_a_stream_that_breaks_a_constraint(daemons, name):
    s = _base()
    broken = encode(_break(name, s))
    for release, prog in daemons.items():
        out = prog.restore(broken)
        assert (out.observed.verdict, out.diffs) != ("accept", []), (release, name)
