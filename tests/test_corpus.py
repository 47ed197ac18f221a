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
from xenstream.reference.checker import Checker
from xenstream.reference.examples import all_examples
from xenstream.reference.formats import get_codec, names, validate
from xenstream.reference.source import Source

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


def _copy_of_committed(dest: Path) -> Path:
    """The committed corpus (manifest and files) copied to ``dest``: a rebuild there
    stands for a rebuild of the checkout, without touching it."""
    import shutil

    for o in committed():
        (dest / o["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / o["path"], dest / o["path"])
    shutil.copyfile(CORPUS / mf.MANIFEST, dest / mf.MANIFEST)
    return dest


def test_committed_corpus_is_what_build_makes(tmp_path):
    """The generated part is up to date and the build is deterministic: building
    from scratch, in this process, gives byte for byte the files and manifest
    committed from another process (another hash seed, another day)."""
    out = build(tmp_path, strategies=True)
    from xenstream.corpus.manifest import KEPT_ORIGINS

    fuzz = {o["id"] for o in committed() if o["origin"] in KEPT_ORIGINS}
    built = {e.id: e.sha256 for e in out.entries}
    mine = {o["id"]: o["sha256"] for o in committed() if o["id"] not in fuzz}
    assert built == mine
    for o in committed():
        if o["id"] not in fuzz:
            assert (tmp_path / o["path"]).read_bytes() == (CORPUS / o["path"]).read_bytes(), o["id"]
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.bin"))
    assert files == sorted(o["path"] for o in committed() if o["id"] not in fuzz)


def test_rebuild_in_place_keeps_fuzz_entries_and_drops_stale_files(tmp_path):
    from xenstream.corpus.add import add

    _copy_of_committed(tmp_path)
    stale = tmp_path / "libxc" / "n_stale.bin"
    stale.write_bytes(b"x")
    found = tmp_path / "found.bin"
    found.write_bytes(b"\xff" * 40)
    entry = add(tmp_path, found, "libxc", "a fuzz finding (test)", reduce=False)
    assert entry.origin == "fuzz" and entry.expected == "reject" and entry.rule
    result = build(tmp_path, strategies=True)
    assert result.removed == ["libxc/n_stale.bin"]
    assert result.written == 0  # nothing else changes: the build is deterministic
    assert entry.id in {e.id for e in result.entries}
    listed = json.loads((tmp_path / mf.MANIFEST).read_text())
    assert [o["id"] for o in listed].count(entry.id) == 1
    assert check(tmp_path).failures == []


def test_check_notices_a_wrong_label_and_a_changed_file(tmp_path):
    _copy_of_committed(tmp_path)
    raw = json.loads((tmp_path / mf.MANIFEST).read_text())
    victim = next(o for o in raw if o["expected"] == "accept")
    (tmp_path / victim["path"]).write_bytes(b"garbage")
    assert any(victim["id"] in f for f in check(tmp_path).failures)


def test_add_minimises_a_fuzz_finding(tmp_path):
    """A valid stream with a megabyte of noise after it, added as a finding:
    the file added is small and the reference still says the same about it."""
    import random

    from xenstream.corpus.add import add
    from xenstream.corpus.verdict import signature

    valid = max((e for e in all_examples() if e.format == "xenstore" and e.rule is None),
                key=lambda e: len(e.data))
    noise = random.Random(1).randbytes(1 << 20)
    found = tmp_path / "crash.bin"
    found.write_bytes(valid.data + noise)
    (tmp_path / "corpus").mkdir()
    entry = add(tmp_path / "corpus", found, "xenstore", "noise after END (test)")
    added = (tmp_path / "corpus" / entry.path).read_bytes()
    assert len(added) < len(valid.data) // 2
    assert signature("xenstore", added, {}) == signature("xenstore", found.read_bytes(), {})
    assert entry.meta["original_size"] == len(found.read_bytes())
    assert f"to {len(added)} octets" in entry.description
    kept = add(tmp_path / "corpus", found, "xenstore", "as it is (test)", name="as-is",
               reduce=False)
    assert (tmp_path / "corpus" / kept.path).read_bytes() == found.read_bytes()


def test_writing_commands_default_to_the_checkout_and_refuse_an_installed_package(
        tmp_path, monkeypatch):
    from xenstream.corpus import location
    from xenstream.reference.errors import UsageError

    checkout = Path(__file__).resolve().parent.parent
    assert location.default_dir(write=True, cwd=checkout / "docs") == checkout / "corpus"
    installed = tmp_path / "site-packages" / "xenstream" / "corpus"
    installed.mkdir(parents=True)
    monkeypatch.setattr(location, "package_dir", lambda: installed)
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    with pytest.raises(UsageError, match="--dir"):
        location.default_dir(write=True, cwd=elsewhere)
    assert location.default_dir(write=False, cwd=elsewhere) == installed
    assert location.default_dir(write=True, cwd=checkout) == checkout / "corpus"


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


@pytest.mark.parametrize("fmt", [f for f in names() if f != "xenstore"])
def test_codec_trim_cuts_a_page_batch_and_keeps_the_stream_valid(fmt):
    """``Codec.trim`` (the reducer's smaller variants): a valid stream's page batch cut to its
    first pages is shorter and still valid; a stream without pages gives no variant."""
    codec = get_codec(fmt)
    ex = next(e for e in all_examples() if e.format == fmt and e.expected == "accept" and any(codec.trim(e.data, codec.pick_options(e.meta))))
    opts = codec.pick_options(ex.meta)
    variants = list(codec.trim(ex.data, opts))
    assert variants and all(len(v) < len(ex.data) for v in variants)
    for v in variants:
        assert validate(Source.from_bytes(v), fmt, Checker(), **opts).rule_ids() == []
    assert list(codec.trim(ex.data[:64], opts)) == []


def test_keep_whole_is_a_codec_property():
    """The formats whose valid streams a real restorer restores are kept whole (Codec.keep_whole)."""
    assert [f for f in names() if get_codec(f).keep_whole] == ["libxc", "libxl", "xl"]
