"""Case collection, ids, prefixes, known-failures files and reports of the conformance runner."""

import json
import pathlib

import pytest

import conformance_toy as toy  # tests/ is on pytest's pythonpath (pyproject.toml)
from xenstream.conformance import cases as cm
from xenstream.conformance import report_cmd
from xenstream.conformance.known_failures import KnownFailures
from xenstream.conformance.results import CaseResult, Run


@pytest.fixture(autouse=True)
def toy_format(monkeypatch):
    toy.register(monkeypatch)


def test_ids_are_stable_and_name_format_rule_and_content():
    a = cm.make_id("libxc", "libxc.page_data.count", "zero count", b"abc")
    assert a == cm.make_id("libxc", "libxc.page_data.count", "zero count", b"abc")
    assert a.startswith("libxc/libxc.page_data.count/zero_count-")
    assert a != cm.make_id("libxc", "libxc.page_data.count", "zero count", b"abd")
    assert cm.make_id("xl", None, "v", b"").startswith("xl/valid/v-")


def test_corpus_source(tmp_path):
    toy.write_corpus(tmp_path / "corpus")
    coll = cm.collect(["corpus"], corpus_dir=tmp_path / "corpus")
    assert [c.expected for c in coll.cases] == [e for *_, e in toy.CASES]
    first = coll.cases[0]
    assert first.source == "corpus" and first.format == "toy" and first.meta["section"] == "toy section"
    assert first.family == ""
    assert coll.cases[2].family == "toy.header"


def test_corpus_problems_are_notes_not_errors(tmp_path):
    notes = []
    assert cm.from_corpus(notes, tmp_path) == []
    assert "cannot read" in notes[0] and "manifest.json" in notes[0]
    toy.write_corpus(tmp_path)
    (tmp_path / "plain.bin").write_bytes(b"changed")
    notes = []
    got = cm.from_corpus(notes, tmp_path)
    assert len(got) == len(toy.CASES) - 1 and "sha256" in notes[0]


def test_missing_sources_give_notes(monkeypatch):
    coll = cm.collect(["examples", "corpus"], corpus_dir=pathlib.Path("/nonexistent"))
    assert any("corpus" in n for n in coll.notes)


def test_prefixes_are_boundary_aware_refused_and_stable():
    data = toy.stream((1, b"hello world"), (2, b"\0" * 6), (1, b"x" * 20))
    marks = cm.boundaries("toy", data)
    assert 3 in marks and 4 in marks and 6 in marks  # magic, version, first record header
    lengths = cm.prefix_lengths("toy", data)
    assert lengths == cm.prefix_lengths("toy", data)
    assert 0 in lengths and len(data) - 1 in lengths and len(lengths) == cm.PREFIX_SAMPLE
    assert any(l in marks for l in lengths)
    assert any(l not in marks for l in lengths if l)
    case = cm.Case(cm.make_id("toy", None, "v", data), "toy", data, None, "accept", "", "examples")
    prefixes = cm.prefixes_of(case)
    assert prefixes and all(p.expected == "reject" and p.source == "prefixes" for p in prefixes)
    assert all(p.id.startswith("toy/prefix/v-") and p.family == "toy.stream" for p in prefixes)
    assert {p.rule for p in prefixes} <= {"toy.stream.truncated", "toy.header.magic"}


def test_collect_dedupes_and_derives_prefixes(tmp_path):
    toy.write_corpus(tmp_path)
    coll = cm.collect(["corpus", "prefixes"], corpus_dir=tmp_path, prefix_sample=3)
    ids = [c.id for c in coll.cases]
    assert len(ids) == len(set(ids))
    assert sum(c.source == "prefixes" for c in coll.cases) >= 4
    assert not cm.collect(["corpus"], corpus_dir=tmp_path, formats=["libxc"]).cases


def test_failure_path(tmp_path):
    p = cm.failure_path(tmp_path, "libxc/prefix/a.b-1@12-abc")
    assert p == tmp_path / "libxc" / "prefix" / "a.b-1@12-abc.bin"


# -- known failures ------------------------------------------------------------------

def test_known_failures_file_roundtrip(tmp_path):
    text = "# comment\n\nlibxc/a/b-1  rejects optional records\nlibxl/*/x-*  pattern\nbare\n"
    kf = KnownFailures.parse(text)
    assert kf.entries == {"libxc/a/b-1": "rejects optional records", "libxl/*/x-*": "pattern",
                          "bare": ""}
    assert kf.match("libxc/a/b-1") == "libxc/a/b-1"
    assert kf.match("libxl/r/x-9") == "libxl/*/x-*"
    assert kf.match("libxl/r/y-9") is None
    f = tmp_path / "k.txt"
    kf.write(f, impl="v2")
    assert KnownFailures.load(f).entries == kf.entries
    assert KnownFailures.load(tmp_path / "missing.txt").entries == {}


def test_known_failures_stale_and_update():
    kf = KnownFailures({"a/r/1": "old reason", "a/r/2": "fixed now", "b/*": "pattern",
                        "c/r/9": "other format, not run"})
    results = {"a/r/1": True, "a/r/2": False, "b/x": False, "b/y": False, "a/r/3": True}
    assert kf.stale(results) == ["a/r/2", "b/*"]
    # c/r/9 is in the selection but did not run (deselected): kept
    up = kf.updated({"a/r/1": "new", "a/r/3": "fresh"}, set(results), set(results) | {"c/r/9"})
    assert up.entries == {"a/r/1": "old reason", "a/r/3": "fresh", "c/r/9": "other format, not run"}
    # c/r/9 names no case of the run: dropped
    up = kf.updated({"a/r/1": "new", "a/r/3": "fresh"}, set(results), set(results))
    assert up.entries == {"a/r/1": "old reason", "a/r/3": "fresh"}


def test_known_failures_problems_stale_unknown_and_selection(tmp_path):
    kf = KnownFailures({"a/r/1": "x", "b/*": "pattern", "c/r/9": "gone", "d/*": "no such"})
    kf.write(tmp_path / "k.txt", impl="v2", args="--formats=a,b ", selection="formats a,b")
    text = (tmp_path / "k.txt").read_text()
    assert "# Cases: formats a,b" in text
    assert "# Regenerate with: pytest conformance --formats=a,b --update-known-failures" in text
    kf = KnownFailures.load(tmp_path / "k.txt")
    assert kf.selection == "formats a,b"
    results = {"a/r/1": True, "b/x": False}
    problems = kf.problems(results, set(results), "formats a,b")
    assert problems == ["unknown: c/r/9 is no case of this run",
                        "unknown: d/* matches no case of this run",
                        "stale: b/* matches only cases that pass"]
    other = kf.problems({"a/r/1": True, "b/x": True}, {"a/r/1", "b/x", "c/r/9", "d/1"}, "formats a")
    assert len(other) == 1 and "another selection" in other[0]


# -- reports ---------------------------------------------------------------------------

def _run(name, outcomes):
    run = Run(implementation=name, formats=["toy"], sources=["corpus"])
    for i, (fam, outcome, kind) in enumerate(outcomes):
        run.cases.append(CaseResult(f"toy/{fam}/c{i}", "toy", f"{fam}.x", fam, "corpus", "reject",
                                    "reject", "accept" if outcome != "pass" else "reject",
                                    outcome, kind, 0.001))
    return run


def test_results_json_and_report_md(tmp_path):
    run = _run("impl-a", [("toy.header", "pass", ""), ("toy.header", "fail", "wrong-verdict"),
                          ("toy.odd", "reported", ""), ("toy.record", "xfail", "crash")])
    run.write(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["implementation"] == "impl-a" and data["summary"]["fail"] == 1
    assert set(data["cases"][0]) >= {"id", "format", "rule", "expected", "observed", "duration"}
    md = (tmp_path / "report.md").read_text()
    assert "| toy | 4 | 1 | 1 | 1 | 1 |" in md
    assert "`toy.header`" in md and "## Failures" in md
    assert Run.load(tmp_path).cases == run.cases


def test_report_command_merges_runs(tmp_path, capsys):
    _run("impl-a", [("toy.header", "pass", ""), ("toy.record", "fail", "crash")]).write(tmp_path / "a")
    _run("impl-b", [("toy.header", "fail", "wrong-verdict"), ("toy.record", "pass", "")]).write(tmp_path / "b")
    import argparse
    p = argparse.ArgumentParser()
    report_cmd.add_arguments(p)
    assert report_cmd.run(p.parse_args([str(tmp_path / "a"), str(tmp_path / "b")])) == 0
    out = capsys.readouterr().out
    assert "| family | impl-a | impl-b |" in out
    assert "| `toy.header` | 1/1 | 0/1 |" in out
    assert "| `toy.record` | 0/1, 1 crash | 1/1 |" in out
    report_cmd.run(p.parse_args([str(tmp_path / "a"), str(tmp_path / "b"), "--by", "case",
                                 "-o", str(tmp_path / "t.md")]))
    assert "FAIL accept" in (tmp_path / "t.md").read_text()


def test_report_is_registered_in_the_cli(tmp_path, capsys):
    from xenstream.cli import main
    _run("impl-a", [("toy.header", "pass", "")]).write(tmp_path / "a")
    assert main(["report", str(tmp_path / "a")]) == 0
    assert "impl-a" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
