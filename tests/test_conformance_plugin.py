"""The conformance pytest plugin, run with pytester on the toy format and a buggy fake verifier."""

import json
import pathlib

import pytest

import conformance_toy as toy  # tests/ is on pytest's pythonpath (pyproject.toml)

pytest_plugins = ["pytester"]

SUITE = pathlib.Path(__file__).resolve().parent.parent / "conformance" / "test_conformance.py"


@pytest.fixture
def suite(pytester, monkeypatch):
    toy.register(monkeypatch)
    pytester.makeconftest("from xenstream.conformance.conftest import *  # noqa\n"
                          "from xenstream.conformance.plugin import pytest_collection_modifyitems  # noqa\n")
    pytester.makepyfile(test_conformance=SUITE.read_text())
    toy.write_corpus(pytester.path / "corpus")
    pytester.fake = toy.write_fake_verifier(pytester.path)
    return pytester


def outcomes(result, **want):
    got = result.parseoutcomes()
    assert {k: got.get(k, 0) for k in want} == want, got


BASE = ["--corpus=corpus", "--sources=corpus", "--formats=toy", "-p", "no:cacheprovider",
        "--impl-timeout=30"]


def test_builtin_passes(suite):
    r = suite.runpytest(*BASE, "--sources=corpus,prefixes")
    assert r.ret == 0
    out = r.stdout.str()
    assert "xenstream conformance: verifier" in out and "builtin (strict)" in out
    assert int(r.parseoutcomes()["passed"]) > len(toy.CASES) + 4  # and the prefixes


def test_failures_show_rule_verdicts_stderr_and_replay(suite):
    r = suite.runpytest(*BASE, f"--impl={suite.fake}", "--delivery=file", "--report=rep")
    assert r.ret == 1
    out = r.stdout.str()
    # strict role: the fake ignores reserved bodies
    assert "toy/toy.reserved.zero/reserved-set-" in out
    assert "wrong-verdict: accepted a stream it must refuse" in out
    assert "toy rule toy.reserved.zero" in out
    # the ODD record crashes it: an either case still fails on a crash
    assert "crash (exit 2)" in out and "Script Error: odd" in out
    saved = list((suite.path / "failures").rglob("*.bin"))
    assert len(saved) == 2
    assert f"replay:    {suite.fake} -f toy -i " in out
    results = json.loads((suite.path / "rep" / "results.json").read_text())
    outcomes = {c["id"].split("/")[2].rsplit("-", 1)[0]: c["outcome"] for c in results["cases"]}
    assert outcomes["plain"] == "pass" and outcomes["reserved-set"] == "fail"
    assert outcomes["odd"] == "fail" and outcomes["bad-version"] == "pass"
    assert (suite.path / "rep" / "report.md").exists()


def test_restore_role_accepts_writer_cases(suite):
    r = suite.runpytest(*BASE, f"--impl={suite.fake}", "--impl-role=restore", "--delivery=file")
    out = r.stdout.str()
    assert "reserved-set" not in "".join(l for l in out.splitlines() if "FAILED" in l)
    outcomes(r, passed=len(toy.CASES) - 1, failed=1)


def test_known_failures_update_then_pass_then_stale(suite):
    args = [*BASE, f"--impl={suite.fake}", "--delivery=file", "--known-failures=kf.txt"]
    r = suite.runpytest(*args, "--update-known-failures")
    kf = (suite.path / "kf.txt").read_text()
    assert "toy/toy.reserved.zero/reserved-set-" in kf and "wrong-verdict" in kf
    assert "toy/toy.odd.present/odd-" in kf
    r = suite.runpytest(*args)
    assert r.ret == 0
    outcomes(r, passed=len(toy.CASES) - 2, xfailed=2)
    # an entry for a case that passes fails the run
    from xenstream.conformance.cases import make_id
    pid = make_id("toy", None, "plain", toy.VALID)
    with open(suite.path / "kf.txt", "a") as f:
        f.write(f"{pid}  thought broken\n")
    r = suite.runpytest(*args)
    assert r.ret == 1
    assert "listed in" in r.stdout.str() and "now passes" in r.stdout.str()


def test_unsupported_formats_are_skipped_once(suite):
    r = suite.runpytest("--corpus=corpus", "--sources=corpus", "--formats=libxc", "-rs",
                        f"--impl={suite.fake}")
    out = r.stdout.str()
    assert "format toy is not in --formats=libxc" in out
    assert out.count("format toy is not in") == 1


def test_non_executable_impl_is_a_verdict_not_a_broken_run(suite):
    r = suite.runpytest(*BASE, "--impl=./nonexistent-verifier")
    out = r.stdout.str()
    assert "PROBLEM: ./nonexistent-verifier: no such file" in out
    assert "not-executable" in out
    outcomes(r, failed=len(toy.CASES))


def test_hangs_crashes_and_floods_do_not_stall_the_run(suite, tmp_path):
    cases = [("hang", toy.stream((9, b"")), None, "accept"),
             ("segv", toy.stream((10, b"")), None, "accept"),
             ("flood", toy.stream((11, b"")), None, "accept"),
             ("alloc", toy.stream((12, b"")), None, "accept")]
    toy.write_corpus(suite.path / "corpus2", cases)
    r = suite.runpytest("--corpus=corpus2", "--sources=corpus", "--formats=toy",
                        f"--impl={suite.fake}", "--impl-timeout=1", "--impl-memory=512",
                        "--delivery=file", "--impl-output-limit=100000")
    out = r.stdout.str()
    for label in ("timeout", "signal (SIGSEGV)", "output-flood", "memory (MemoryError"):
        assert label in out, label
    outcomes(r, failed=4)


def test_delivery_modes_find_inconsistency(suite):
    r = suite.runpytest(*BASE, f"--impl={suite.fake}", "--delivery=all", "--impl-role=restore")
    out = r.stdout.str()
    assert "inconsistent: the verdict depends on how the stream is delivered" in out
    assert "pipe: accept" in out


def test_impl_cmd_template_and_builtin_subprocess(suite):
    r = suite.runpytest(*BASE, f"--impl-cmd={suite.fake} -f {{format}} -i {{path}}",
                        "--delivery=stdin", "--impl-role=restore")
    outcomes(r, passed=len(toy.CASES) - 1, failed=1)


def test_xdist_gathers_results(suite):
    suite.runpytest(*BASE, "-n", "2", f"--impl={suite.fake}", "--delivery=file",
                    "--report=rep", "--known-failures=kf.txt", "--update-known-failures")
    data = json.loads((suite.path / "rep" / "results.json").read_text())
    assert len(data["cases"]) == len(toy.CASES)
    assert len([l for l in (suite.path / "kf.txt").read_text().splitlines()
                if l and not l.startswith("#")]) == 2


def test_converter_kind_skips_until_there_are_legacy_cases(suite):
    r = suite.runpytest(*BASE, "--impl-kind=converter", "-rs")
    assert r.ret == 0
    assert "converter" in r.stdout.str()


# -- options no run can use, and the runner's own failures ----------------------

@pytest.mark.parametrize("option, says", [
    ("--formats=libcx", "--formats: unknown format libcx"),
    ("--impl-timeout=0", "--impl-timeout=0: give a number of seconds above 0"),
    ("--impl-timeout=-1", "--impl-timeout=-1"),
    ("--impl-memory=1", "--impl-memory=1: give 0 (no limit) or at least 16 MiB"),
    ("--impl-memory=-5", "--impl-memory=-5"),
    ("--impl-output-limit=0", "--impl-output-limit=0"),
    ("--sources=corpus,nope", "unknown nope"),
    ("--corpus=missing-folder", "no manifest.json"),
    ("--hypothesis-examples=0", "--hypothesis-examples=0"),
    ("--delivery=carrier-pigeon", "--delivery"),
])
def test_impossible_options_are_usage_errors_before_any_case(suite, option, says):
    r = suite.runpytest("--corpus=corpus", "--sources=corpus", "--formats=toy", option)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert says in r.stderr.str()
    assert "passed" not in r.stdout.str() and not (suite.path / "failures").exists()


def test_harness_errors_are_counted_apart(suite, monkeypatch):
    from xenstream.conformance.runner import Runner

    def no_space(self):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Runner, "private_dir", no_space)
    r = suite.runpytest(*BASE, f"--impl={suite.fake}", "--delivery=file", "--report=rep",
                        "--known-failures=kf.txt", "--update-known-failures")
    assert r.ret == 1
    out = r.stdout.str()
    assert f"{len(toy.CASES)} cases: {len(toy.CASES)} harness-error" in out
    assert "harness-error: the runner failed on these cases, not the implementation" in out
    report = (suite.path / "rep" / "report.md").read_text()
    assert f"{len(toy.CASES)} harness error(s)" in report
    listed = [l for l in (suite.path / "kf.txt").read_text().splitlines() if l and l[0] != "#"]
    assert listed == []   # never a known failure of the implementation


def test_a_timeout_is_not_shrunk_beyond_the_budget(suite, monkeypatch):
    from xenstream.conformance import plugin

    calls = suite.path / "calls"
    hang = suite.path / "hang"
    hang.write_text(f"#!/bin/sh\necho >> {calls}\nexec sleep 30\n")
    hang.chmod(0o755)
    r = suite.runpytest("--sources=strategies", "--formats=xl", f"--impl={hang}",
                        "--impl-timeout=0.2", "--hypothesis-examples=20", "--delivery=file", "-k", "valid")
    assert r.ret == 1
    runs = len(calls.read_text().splitlines())
    assert runs == 1 + plugin.SHRINK_BUDGET, r.stdout.str()
    assert "crashes and timeouts are not shrunk further" in r.stdout.str()


TERMINATION = r"""
import os, signal, subprocess, sys, time
sig, folder = getattr(signal, sys.argv[1]), sys.argv[2]
p = subprocess.Popen([sys.executable, "-m", "pytest", "test_conformance.py", "-p", "no:cacheprovider",
                      "--corpus=corpus", "--sources=corpus", "--formats=toy", "--impl=./hang",
                      "--impl-timeout=60", "-q", *sys.argv[3:]], cwd=folder,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(400):
    if os.path.exists(os.path.join(folder, "started")):
        break
    time.sleep(0.05)
time.sleep(0.2)
p.send_signal(sig)
print(p.wait(60))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_signal_to_pytest_cleans_up_everything(suite, sig, workers, tmp_path):
    import random
    import subprocess
    import sys

    token = str(random.randrange(6_000_000, 7_000_000))
    hang = suite.path / "hang"
    hang.write_text(f"#!/bin/sh\nsetsid sleep {token} &\nsleep {token} >/dev/null 2>&1 &\n"
                    f"touch {suite.path}/started\nexec sleep {token}\n")
    hang.chmod(0o755)
    temp = tmp_path / "temp"
    temp.mkdir()
    root = str(pathlib.Path(__import__("xenstream").__file__).resolve().parents[1])
    env = {**__import__("os").environ, "TMPDIR": str(temp), "PYTHONPATH": root}
    p = subprocess.run([sys.executable, "-c", TERMINATION, sig, str(suite.path), *workers],
                       env=env, capture_output=True, text=True, timeout=90)
    assert p.stdout.strip() in ("1", "2"), p.stderr   # interrupted
    left = []
    for proc in pathlib.Path("/proc").iterdir():
        try:
            if token.encode() in (proc / "cmdline").read_bytes():
                left.append(proc.name)
        except OSError:
            continue
    assert left == []
    assert [p.name for p in temp.iterdir() if p.name.startswith("xenstream")] == []
