"""The conformance pytest plugin, run with pytester on the toy format and a buggy fake verifier."""

import json
import pathlib

import pytest

import conformance_toy as toy  # tests/ is on pytest's pythonpath (pyproject.toml)
from xenstream.reference.examples import all_examples

# The preflight reads the hand-written examples.  Import every example module
# here, once: pytester's in-process runs drop the modules first imported
# inside them, and a second generation of the codec modules would not match
# the classes the first one built.
all_examples()

pytest_plugins = ["pytester"]

SUITE = toy.SUITE


@pytest.fixture
def suite(pytester, monkeypatch):
    return toy.make_suite(pytester, monkeypatch)


def test_the_plugin_stays_out_of_runs_that_are_not_the_suites(pytester):
    """Installed, the plugin is in every pytest run; it runs the suite only when
    the command line names it or gives one of its options."""
    pytester.makeconftest('pytest_plugins = ["xenstream.conformance.plugin"]\n')
    pytester.makepyfile(test_other="def test_other():\n    pass\n")
    r = pytester.runpytest("-p", "no:cacheprovider")
    assert r.ret == 0 and "xenstream conformance" not in r.stdout.str()
    assert not (pytester.path / "failures").exists()
    # the suite's module, collected in a run that is not the suite's: one skip each, saying why
    pytester.makepyfile(test_conformance=SUITE.read_text())
    r = pytester.runpytest("-p", "no:cacheprovider", "-rs", "test_conformance.py")
    outcomes(r, skipped=3)
    assert "runs when the command line names it" in r.stdout.str()
    # a folder that holds the suite (its module and the plugin) names it
    folder = pytester.mkpydir("suite")
    (folder / "test_conformance.py").write_text(SUITE.read_text())
    (folder / "plugin.py").write_text("")
    r = pytester.runpytest("-p", "no:cacheprovider", "suite", "--collect-only", "-q")
    assert "suite/test_conformance.py::test_case[libxc/valid/" in r.stdout.str()


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
    report = (suite.path / "rep" / "report.md").read_text()
    assert f"- failing streams: `{suite.path / 'failures'}`" in report
    families = report.split("## By rule family", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in families.splitlines() if ln.startswith("| toy |")]
    assert {ln.split("|")[2].strip() for ln in rows} == {
        "`toy.header`", "`toy.reserved`", "`toy.odd`", "`toy.stream`"}
    failures = report.split("## Failures", 1)[1]
    reserved = next(ln for ln in failures.splitlines() if "reserved-set-" in ln)
    assert 'section "toy section"' in reserved and f"`{suite.fake} -f toy -i " in reserved
    case = next(c for c in results["cases"] if "reserved-set" in c["id"])
    assert case["replay"].startswith(f"{suite.fake} -f toy -i {suite.path / 'failures'}")
    assert case["section"].endswith('section "toy section"')


def test_each_run_saves_its_own_failing_streams(suite):
    args = [*BASE, f"--impl={suite.fake}", "--delivery=file"]
    r = suite.runpytest(*args)
    folder = suite.path / "failures"
    assert f"failing streams (this run's only) saved under {folder}" in r.stdout.str()
    first = sorted(p.name for p in folder.rglob("*.bin"))
    assert len(first) == 2
    # a run that fails less leaves only its own streams behind
    suite.runpytest(*args, "--impl-role=restore")
    assert sorted(p.name for p in folder.rglob("*.bin")) == [n for n in first if "odd" in n]
    # a run that fails nothing leaves no folder
    r = suite.runpytest(*BASE)
    assert r.ret == 0 and not folder.exists() and "failing streams" not in r.stdout.str()
    # a folder this suite did not write is never emptied
    mine = suite.path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = suite.runpytest(*args, "--failures-dir=mine")
    assert r.ret == pytest.ExitCode.USAGE_ERROR and "holds files" in r.stderr.str()
    assert (mine / "notes.txt").read_text() == "keep me"


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


def test_known_failures_file_records_the_run_and_must_describe_it(suite):
    args = [*BASE, f"--impl={suite.fake}", "--delivery", "file", "--known-failures=kf.txt"]
    suite.runpytest(*args, "--update-known-failures", "--report=rep")
    head = [ln for ln in (suite.path / "kf.txt").read_text().splitlines() if ln.startswith("#")]
    cases = next(ln for ln in head if ln.startswith("# Cases: "))
    assert "kind verifier, role strict; formats toy; sources corpus" in cases
    regen = next(ln for ln in head if ln.startswith("# Regenerate with: "))
    for option in ("--corpus=corpus", "--sources=corpus", "--formats=toy", "--impl-timeout=30",
                   f"--impl={suite.fake}", "--delivery=file", "--hypothesis-seed=0",
                   "--known-failures=kf.txt", "--update-known-failures"):
        assert option in regen, option
    assert "--report" not in regen
    assert suite.runpytest(*args).ret == 0
    # an entry that names no case of the run is a failure of its own
    with open(suite.path / "kf.txt", "a") as f:
        f.write("toy/toy.gone/was-here-00000000  fixed long ago\n")
    r = suite.runpytest(*args, "--report=rep")
    assert r.ret == 1
    out = r.stdout.str()
    assert "does not describe this run" in out and "unknown: toy/toy.gone/was-here-00000000" in out
    report = json.loads((suite.path / "rep" / "results.json").read_text())
    assert any("toy.gone" in p for p in report["known_failures_problems"])
    assert "toy.gone" in (suite.path / "rep" / "report.md").read_text()
    # another selection of cases than the file records
    r = suite.runpytest(*args, "--impl-role=restore")
    assert r.ret == 1 and "another selection of cases" in r.stdout.str()
    # --update-known-failures drops what names no case and records the new selection
    suite.runpytest(*args, "--update-known-failures")
    assert "toy.gone" not in (suite.path / "kf.txt").read_text()
    assert suite.runpytest(*args).ret == 0


def test_new_failures_only_fails_on_what_the_file_does_not_cover(suite):
    """The nightly run: more examples, another seed; the known-failures file only
    tells known failures from new ones, and need not describe the run."""
    from xenstream.conformance.cases import make_id

    args = [*BASE, f"--impl={suite.fake}", "--delivery=file", "--known-failures=kf.txt"]
    suite.runpytest(*args, "--update-known-failures")
    listed = (suite.path / "kf.txt").read_text()
    with open(suite.path / "kf.txt", "a") as f:
        f.write(f"{make_id('toy', None, 'plain', toy.VALID)}  passes now\n"
                "toy/toy.gone/was-here-00000000  not in this run\n")
    assert suite.runpytest(*args).ret == 1
    r = suite.runpytest(*args, "--new-failures-only")
    assert r.ret == 0, r.stdout.str()
    outcomes(r, passed=len(toy.CASES) - 2, xfailed=2)
    # a failure the file does not list is new: it fails
    (suite.path / "kf.txt").write_text("\n".join(l for l in listed.splitlines() if "odd" not in l))
    r = suite.runpytest(*args, "--new-failures-only")
    assert r.ret == 1
    outcomes(r, passed=len(toy.CASES) - 2, xfailed=1, failed=1)
    r = suite.runpytest(*args, "--new-failures-only", "--update-known-failures")
    assert r.ret == pytest.ExitCode.USAGE_ERROR


def test_strategy_runs_are_seeded_and_repeatable(suite):
    args = ["--sources=strategies", "--formats=xl", "--hypothesis-examples=3", "-p",
            "no:cacheprovider"]

    def digests(*extra):
        r = suite.runpytest(*args, "--report=rep", *extra)
        assert r.ret == 0
        cases = json.loads((suite.path / "rep" / "results.json").read_text())["cases"]
        return r.stdout.str(), {c["id"]: c["observed"] for c in cases}

    out, first = digests()
    assert "Hypothesis seed 0 (the default; --hypothesis-seed=N draws other streams)" in out
    assert first and all("ids digest" in o for o in first.values())
    assert digests()[1] == first
    assert digests("--hypothesis-seed=1")[1] != first


def test_unsupported_formats_are_skipped_once(suite):
    r = suite.runpytest("--corpus=corpus", "--sources=corpus", "--formats=libxc", "-rs",
                        f"--impl={suite.fake}")
    out = r.stdout.str()
    assert "format toy is not in --formats=libxc" in out
    assert out.count("format toy is not in") == 1


def test_missing_or_non_executable_impl_is_one_usage_error_and_nothing_runs(suite):
    (suite.path / "not-exec").write_text("#!/bin/sh\nexit 0\n")
    for impl, why in (("./nonexistent-verifier", "no such file"), ("./not-exec", "not executable"),
                      ("no-such-program-on-path", "not found on PATH")):
        r = suite.runpytest(*BASE, f"--impl={impl}")
        assert r.ret == pytest.ExitCode.USAGE_ERROR, impl
        err = r.stderr.str()
        assert why in err and "nothing was run" in err, err
        assert "passed" not in r.stdout.str() and "failed" not in r.stdout.str()
        assert not (suite.path / "failures").exists()
    r = suite.runpytest(*BASE, "--impl-cmd=./nonexistent-verifier {format} {path}")
    assert r.ret == pytest.ExitCode.USAGE_ERROR and "no such file" in r.stderr.str()
    r = suite.runpytest(*BASE, "--impl=.cache/xen-tools/verify-stream-v2")
    assert "scripts/fetch-xen-tools" in r.stderr.str()


USAGE_FAKE = """#!PYTHON
import sys
args = sys.argv[1:]
fmt = args[args.index("-f") + 1]
if fmt not in ALLOWED:
    print("usage: fake-verify -f FORMAT -i FILE", file=sys.stderr)
    print(f"fake-verify: error: option -f: invalid choice: {fmt!r}", file=sys.stderr)
    sys.exit(2)
path = args[args.index("-i") + 1]
data = open(path, "rb").read()
sys.exit(0 if data[:3] == b"TOY" and data[3:4] == b"\\x01" else 1)
"""


def _usage_fake(suite, allowed):
    path = suite.path / "usage-fake"
    import sys

    path.write_text(USAGE_FAKE.replace("PYTHON", sys.executable).replace("ALLOWED", repr(allowed)))
    path.chmod(0o755)
    return str(path)


def test_preflight_skips_formats_the_program_refuses_whatever_the_stream(suite):
    fake = _usage_fake(suite, ("toy",))
    r = suite.runpytest("--corpus=corpus", "--sources=corpus", f"--impl={fake}", "-rs",
                        "--delivery=file")
    out = r.stdout.str()
    line = next(ln for ln in out.splitlines() if "format libxc skipped:" in ln)
    assert "invalid choice: 'libxc'" in line and "exit 2" in line
    assert "--formats=toy" in line
    from xenstream.reference.formats import FORMAT_MODULES

    specified = [f for f in FORMAT_MODULES if f != "toy"]
    for fmt in specified[1:]:
        # the header, the summary and -rs
        assert out.count(f"format {fmt} skipped: ") == 3, fmt
    # the toy cases ran (this fake judges them badly); each refused format is one skip
    results = r.parseoutcomes()
    assert results.get("passed", 0) + results.get("failed", 0) == len(toy.CASES)
    assert results["skipped"] == len(specified) and "deselected" not in results
    # named in --formats: a usage error, nothing run
    r = suite.runpytest("--corpus=corpus", "--sources=corpus", f"--impl={fake}",
                        "--formats=toy,libxc")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "--formats names libxc" in r.stderr.str() and "invalid choice" in r.stderr.str()


def test_preflight_refusing_every_format_is_a_usage_error(suite):
    fake = _usage_fake(suite, ())
    r = suite.runpytest("--corpus=corpus", "--sources=corpus", f"--impl={fake}")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = r.stderr.str()
    assert "refuses every format" in err and "--impl-cmd" in err and "nothing was run" in err
    assert not (suite.path / "failures").exists()


def test_preflight_does_not_skip_a_crash_that_depends_on_the_stream(suite):
    """verify-stream-v2's "Script Error" (exit 2) names what it choked on: a
    crash is a crash, never a refused format."""
    import sys

    fake = suite.path / "crashy"
    fake.write_text(f"#!{sys.executable}\nimport sys, hashlib\n"
                    "data = open(sys.argv[sys.argv.index('-i') + 1], 'rb').read()\n"
                    "print('Script Error:', hashlib.sha256(data).hexdigest(), file=sys.stderr)\n"
                    "sys.exit(2)\n")
    fake.chmod(0o755)
    r = suite.runpytest(*BASE, f"--impl={fake}", "--delivery=file")
    assert "skipped:" not in r.stdout.str()
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
    # the preflight's probe of xl (one timeout: not a refusal), then the property
    assert runs == 1 + 1 + plugin.SHRINK_BUDGET, r.stdout.str()
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


def test_a_format_s_valid_variants_are_properties_of_their_own(suite):
    """xenstore's c-restorable variant runs as xenstore/strategies/valid-c-restorable,
    beside the plain valid target, and is judged like it."""
    r = suite.runpytest("--sources=strategies", "--formats=xenstore", "--hypothesis-examples=3",
                        "-p", "no:cacheprovider",
                        "--report=rep", "-k", "strategies/valid")
    assert r.ret == 0, r.stdout.str()
    cases = json.loads((suite.path / "rep" / "results.json").read_text())["cases"]
    by_id = {c["id"]: c for c in cases}
    assert set(by_id) == {"xenstore/strategies/valid", "xenstore/strategies/valid-c-restorable"}
    assert "3 examples" in by_id["xenstore/strategies/valid-c-restorable"]["observed"]
