"""The validation fast paths (reference/fastpath.py) find what the per-record parsers find.

Every hand-written example, every corpus file and a sample of every strategy's
valid and malformed streams is validated with the switch on and off, in both
roles (and under an entry's reader profile); the findings (rule, offset,
message, location) and the verdicts must be the same.  Streams are fed whole
and, for the fast paths' formats, in small reads, so that runs stop at a
buffer's end too.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

import xenstream.strategies as strategies
from xenstream.corpus.build import default_dir
from xenstream.corpus.verdict import options_of, reader_of
from xenstream.reference import fastpath
from xenstream.reference.checker import Checker
from xenstream.reference.examples import all_examples
from xenstream.reference.formats import get_codec, names, validate
from xenstream.reference.rules import Role
from xenstream.reference.source import Source

STRATEGY_SAMPLES = 12


class _Trickle(io.RawIOBase):
    """A pipe-like file: reads come back at most ``size`` octets long, not seekable."""

    def __init__(self, data: bytes, size: int):
        self.data, self.pos, self.size = data, 0, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.size, len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def _outcome(fmt: str, data: bytes, options: dict, reader, trickle: int | None) -> list:
    out = []
    for role in (Role.STRICT, Role.RESTORE):
        src = Source.from_bytes(data) if trickle is None else Source(_Trickle(data, trickle))
        ck = validate(src, fmt, Checker(role, reader=reader), **options)
        out.append((ck.accepted, ck.total, [(f.rule.id, f.offset, f.message, f.location) for f in ck.findings]))
    return out


def _same_with_and_without(fmt: str, data: bytes, options: dict | None = None, reader=None) -> None:
    options = options or {}
    reads = [None] + ([4093] if fmt in ("libxc", "libxl", "xl", "xenstore") else [])
    for trickle in reads:
        fast = _outcome(fmt, data, options, reader, trickle)
        with fastpath.disabled():
            slow = _outcome(fmt, data, options, reader, trickle)
        assert fast == slow, f"{fmt}: the fast path changes the findings (reads of {trickle})"


def test_the_switch_turns_both_fast_paths_off(monkeypatch):
    from xenstream.reference import libxc, xenstore

    calls = []
    monkeypatch.setattr(libxc.LibxcReader, "_page_data_run", lambda self: calls.append("libxc"))
    monkeypatch.setattr(xenstore.XenstoreReader, "_node_data_run", lambda self: calls.append("xenstore"))
    examples = {e.format: e for e in all_examples() if e.rule is None and e.format in ("libxc", "xenstore")}
    for e in examples.values():
        validate(Source.from_bytes(e.data), e.format, Checker())
    assert set(calls) == {"libxc", "xenstore"}
    calls.clear()
    with fastpath.disabled():
        for e in examples.values():
            validate(Source.from_bytes(e.data), e.format, Checker())
    assert calls == []


def test_every_example():
    for e in all_examples():
        _same_with_and_without(e.format, e.data, get_codec(e.format).pick_options(e.meta), e.reader)


def test_every_corpus_file():
    folder = default_dir()
    for entry in json.loads((folder / "manifest.json").read_text()):
        data = (folder / entry["path"]).read_bytes()
        meta = entry.get("meta")
        _same_with_and_without(entry["format"], data, options_of(entry["format"], meta), reader_of(meta))


@pytest.mark.parametrize("fmt", names())
def test_a_sample_of_every_strategy(fmt):
    rnd = random.Random(0xFA57)
    for _ in range(STRATEGY_SAMPLES):
        _same_with_and_without(fmt, strategies.generate_valid(fmt, rnd).data)
        for family in strategies.families(fmt):
            _same_with_and_without(fmt, strategies.generate_malformed(fmt, rnd, family).data)


def test_a_run_of_valid_records_is_taken_and_a_broken_one_is_not():
    """The fast paths do take runs (else this file proves nothing), and hand a record that
    breaks a rule to the parser."""
    from xenstream.reference import build, libxc

    stream = build.libxc_stream(pages=64, batch=1)
    taken = []
    original = libxc.LibxcReader.read_one

    def counting(self):
        taken.append(1)
        return original(self)

    libxc.LibxcReader.read_one = counting
    try:
        validate(Source.from_bytes(libxc.encode(stream)), "libxc", Checker())
        fast = len(taken)
        taken.clear()
        with fastpath.disabled():
            validate(Source.from_bytes(libxc.encode(stream)), "libxc", Checker())
        assert len(taken) - fast >= 60
    finally:
        libxc.LibxcReader.read_one = original


def _libxc_with_late(broken) -> bytes:
    """A stream of many valid one-page PAGE_DATA records, the tenth replaced by ``broken``."""
    from dataclasses import replace

    from xenstream.reference import build, libxc

    s = build.libxc_stream(pages=32, batch=1)
    k = [i for i, r in enumerate(s.records) if isinstance(r, libxc.PageData)][10]
    recs = list(s.records)
    recs[k] = broken(recs[k])
    return libxc.encode(replace(s, records=tuple(recs)))


@pytest.mark.parametrize("name", ["reserved", "count_zero", "page_type", "pfn_reserved", "xtab", "extra_page",
                                  "missing_page", "raw_short"])
def test_a_page_data_breaking_a_rule_after_a_run(name):
    from dataclasses import replace

    from xenstream.reference import libxc
    from xenstream.reference.framing import RawRecord

    broken = {
        "reserved": lambda r: replace(r, reserved=1),
        "count_zero": lambda r: libxc.PageData((), b""),
        "page_type": lambda r: replace(r, pfns=(libxc.with_page_type(r.pfns[0], 5),)),
        "pfn_reserved": lambda r: replace(r, pfns=(r.pfns[0] | 1 << 52,)),
        "xtab": lambda r: replace(r, pfns=(libxc.with_page_type(r.pfns[0], libxc.PageType.XTAB),)),
        "extra_page": lambda r: replace(r, pages=r.pages * 2),
        "missing_page": lambda r: replace(r, pages=b""),
        "raw_short": lambda r: RawRecord(libxc.RecordType.PAGE_DATA, r.encode_body(libxc.Endian.LITTLE)[:12]),
    }[name]
    data = _libxc_with_late(broken)
    assert not validate(Source.from_bytes(data), "libxc", Checker()).accepted or name == "xtab"
    _same_with_and_without("libxc", data)
    from xenstream.reference import readers

    _same_with_and_without("libxc", data, reader=readers.get("xen-4.9"))


@pytest.mark.parametrize("name", ["tx_id", "access", "no_perms", "perm_letter", "perm_flags", "relative",
                                  "special", "no_nul", "orphan", "excess", "padding"])
def test_a_node_data_breaking_a_rule_after_a_run(name):
    from dataclasses import replace

    from xenstream.reference.examples.xenstore import Raw, raw, stream
    from xenstream.reference.xenstore_records import GlobalData, NodeData, Permission

    perms = (Permission("n", 0),)
    good = [NodeData(b"/n%d" % i, b"v" * i, perms) for i in range(20)]
    node = NodeData(b"/late", b"value", perms)
    broken = {
        "tx_id": replace(node, tx_id=3), "access": replace(node, access=1), "no_perms": replace(node, perms=()),
        "perm_letter": replace(node, perms=(Permission("x", 0),)),
        "perm_flags": replace(node, perms=(Permission("n", 0, flags=2),)),
        "relative": replace(node, path=b"late"), "special": replace(node, path=b"@late"),
        "no_nul": raw(node, at=16 + 4 + 5, data=b"x"), "orphan": replace(node, path=b"/none/late"),
        "excess": Raw(5, raw(node).body + bytes(8)), "padding": Raw(5, raw(node).body, padding=b"\0\0\1"),
    }[name]
    for live in (False, True):
        recs = ([GlobalData()] if live else []) + good[:10] + [broken] + good[10:]
        data, _ = stream(*recs)
        _same_with_and_without("xenstore", data)
