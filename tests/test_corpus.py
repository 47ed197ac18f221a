"""The regression corpus: manifest schema, deterministic build, committed corpus checks out, rules covered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xenstream.corpus import manifest as mf
from xenstream.corpus.build import build, default_dir
from xenstream.corpus.check import check, uncovered_rules
from xenstream.corpus.reduce import reduce
from xenstream.corpus.verdict import classify, problems
from xenstream.reference.examples import all_examples

CORPUS = default_dir()
pytestmark = pytest.mark.skipif(not (CORPUS / mf.MANIFEST).is_file(), reason="corpus not built")


def committed():
    return json.loads((CORPUS / mf.MANIFEST).read_text())


def test_manifest_schema():
    raw = committed()
    assert mf.schema_problems(raw) == []
    for obj in raw:
        assert set(obj) <= set(mf.KEYS + mf.OPTIONAL_KEYS)
        assert Path(obj["path"]).name[:2] == mf.PREFIX[obj["expected"]] + "_"


def test_schema_problems_are_caught():
    good = committed()[0]
    assert mf.schema_problems([{**good, "expected": "maybe"}])
    assert mf.schema_problems([{k: v for k, v in good.items() if k != "sha256"}])
    assert mf.schema_problems([good, good])  # duplicate id
    assert mf.schema_problems({"entries": []})


def test_committed_corpus_checks_out():
    result = check(CORPUS)
    assert result.failures == []
    assert result.entries == len(committed())


def test_every_rule_has_a_malformed_file():
    entries = [mf.Entry.from_json(o) for o in committed()]
    assert uncovered_rules(entries) == []


def test_every_format_has_valid_files_and_realistic_xenstore_states():
    raw = committed()
    for fmt in mf.FORMATS:
        assert any(o["format"] == fmt and o["expected"] == "accept" for o in raw), fmt
    lu = {(o["version"], o["byteorder"]) for o in raw
          if o["format"] == "xenstore" and o["expected"] == "accept" and "live_update" in o["id"]}
    assert lu >= {(1, "little"), (1, "big"), (2, "little"), (2, "big")}


def test_corpus_is_small():
    # 7 MiB: streams a real restorer restores are kept whole (their records name each other's
    # pfns), and so are the writer profiles, whose shape is the point
    assert sum((CORPUS / o["path"]).stat().st_size for o in committed()) < 7 * 2**20


def test_committed_corpus_is_what_build_makes(tmp_path):
    """The generated part is up to date: building from scratch gives the committed files."""
    out = build(tmp_path / "a")
    from xenstream.corpus.manifest import KEPT_ORIGINS

    fuzz = {o["id"] for o in committed() if o["origin"] in KEPT_ORIGINS}
    built = {e.id: e.sha256 for e in out.entries}
    mine = {o["id"]: o["sha256"] for o in committed() if o["id"] not in fuzz}
    assert built == mine


def test_build_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(a, strategies=True)
    build(b, strategies=True)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    # and a rebuild in place changes nothing
    again = build(a)
    assert again.written == 0 and again.removed == []


def test_build_keeps_fuzz_entries_and_drops_stale_files(tmp_path):
    from xenstream.corpus.add import add

    build(tmp_path, strategies=False)
    stale = tmp_path / "libxc" / "n_stale.bin"
    stale.write_bytes(b"x")
    found = tmp_path / "found.bin"
    found.write_bytes(b"\xff" * 40)
    entry = add(tmp_path, found, "libxc", "a fuzz finding (test)")
    assert entry.origin == "fuzz" and entry.expected == "reject" and entry.rule
    result = build(tmp_path, strategies=False)
    assert "libxc/n_stale.bin" in result.removed
    assert entry.id in {e.id for e in result.entries}
    assert check(tmp_path).failures == []


def test_check_notices_a_wrong_label_and_a_changed_file(tmp_path):
    build(tmp_path, strategies=False)
    raw = json.loads((tmp_path / mf.MANIFEST).read_text())
    victim = next(o for o in raw if o["expected"] == "accept")
    (tmp_path / victim["path"]).write_bytes(b"garbage")
    assert any(victim["id"] in f for f in check(tmp_path).failures)


def test_verdict_rules():
    ex = next(e for e in all_examples() if e.format == "libxc" and e.expected == "writer")
    assert problems(ex.format, ex.data, "writer", ex.rule) == []
    assert problems(ex.format, ex.data, "accept", None)
    assert problems(ex.format, ex.data, "reject", ex.rule)
    assert classify(ex.format, ex.data).expected == "writer"


def test_reducer_keeps_the_property():
    ex = next(e for e in all_examples() if e.format == "libxc" and e.rule is None)
    small = reduce(ex.data, lambda d: b"XENFLAGS"[:4] in d or True, fmt="libxc", max_tests=50)
    assert len(small) <= len(ex.data)
    target = ex.data[100:108]
    small = reduce(ex.data, lambda d: target in d, fmt="libxc", octets=True, max_tests=3000)
    assert target in small and len(small) < 64
