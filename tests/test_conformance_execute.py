"""The conformance runner's process handling, verdicts, judging and runner (no pytest plugin)."""

import sys
import time
from pathlib import Path

import pytest

import conformance_toy as toy  # tests/ is on pytest's pythonpath (pyproject.toml)
from xenstream.conformance import execute as ex
from xenstream.conformance.delivery import Feed
from xenstream.conformance.execute import Builtin, Limits, Observed, Program, classify, run_process
from xenstream.conformance.judge import judge, required_verdict
from xenstream.conformance.known_failures import KnownFailures
from xenstream.conformance.runner import Runner, parse_delivery


FAST = Limits(timeout=2.0, memory_mb=512, output_limit=200_000)


@pytest.fixture(autouse=True)
def toy_format(monkeypatch):
    toy.register(monkeypatch)


@pytest.fixture
def fake(tmp_path):
    return toy.write_fake_verifier(tmp_path)


# -- classify -----------------------------------------------------------------

@pytest.mark.parametrize("rc, err, verdict", [
    (0, b"", "accept"),
    (1, b"Stream Error", "reject"),
    (2, b"Script Error", "crash"),
    (-11, b"", "signal"),
    (1, b"==7==ERROR: AddressSanitizer: heap-buffer-overflow on address", "memory"),
    (0, b"==7==ERROR: LeakSanitizer: detected memory leaks", "memory"),
    (2, b"Traceback\nMemoryError\n", "memory"),
    (1, b"Traceback (most recent call last):\nMemoryError", "memory"),
    (1, b"refusing: would run out of memory", "reject"),
    (134, b"terminate called after throwing an instance of 'std::bad_alloc'", "memory"),
])
def test_classify(rc, err, verdict):
    assert classify(rc, err)[0] == verdict


def test_classify_names_the_signal():
    assert classify(-6, b"") == ("signal", "SIGABRT")


# -- run_process ----------------------------------------------------------------

def test_exit_codes_and_signals():
    assert run_process(["true"], FAST).verdict == "accept"
    assert run_process(["false"], FAST).verdict == "reject"
    assert run_process(["sh", "-c", "exit 3"], FAST).label == "crash (exit 3)"
    assert run_process(["sh", "-c", "kill -SEGV $$"], FAST).label == "signal (SIGSEGV)"


def test_timeout_kills_the_process_group():
    start = time.monotonic()
    o = run_process(["sh", "-c", "sleep 30 & sleep 30"], Limits(timeout=0.3))
    assert o.verdict == "timeout"
    assert time.monotonic() - start < 3


def test_child_holding_output_open_does_not_stall():
    start = time.monotonic()
    o = run_process(["sh", "-c", "sleep 30 & exit 0"], Limits(timeout=5))
    assert o.verdict == "accept"
    assert time.monotonic() - start < 2


def test_output_flood_is_its_own_verdict():
    o = run_process(["yes"], Limits(timeout=5, output_limit=100_000))
    assert o.verdict == "output-flood"


def test_memory_limit_turns_a_blowup_into_a_memory_verdict():
    o = run_process([sys.executable, "-c", "b = bytearray(1 << 32)"], Limits(memory_mb=256))
    assert o.verdict == "memory"


@pytest.mark.parametrize("path", ["/nonexistent/verifier", "/etc/hostname"])
def test_not_executable(path):
    assert run_process([path], FAST).verdict == "not-executable"


def test_stderr_is_trimmed_but_keeps_head_and_tail():
    o = run_process(["sh", "-c", "echo FIRST >&2; yes middle | head -c 100000 >&2; echo LAST >&2; exit 1"],
                    FAST)
    assert o.verdict == "reject"
    assert "FIRST" in o.stderr and "LAST" in o.stderr and "left out" in o.stderr
    assert len(o.stderr) < 20_000


def test_pipe_delivers_everything_in_pieces():
    data = bytes(range(256)) * 300
    o = run_process(["sh", "-c", "wc -c >&2"], FAST, feed=Feed("pipe", data=data), mode="pipe")
    assert o.stderr.strip() == str(len(data))
    assert b"".join(ex.pipe_pieces(data)) == data
    assert len(ex.pipe_pieces(data)) > 5
    assert ex.pipe_pieces(b"") == []


def test_reader_that_stops_early_on_a_pipe():
    o = run_process(["head", "-c", "1"], FAST, feed=Feed("pipe", data=b"x" * 1_000_000), mode="pipe")
    assert o.verdict == "accept"


# -- implementations --------------------------------------------------------------

def test_program_argv_and_replay(tmp_path):
    p = Program(path="/x/verify-stream-v2")
    assert p.argv("libxl", "/s.bin") == ["/x/verify-stream-v2", "-f", "libxl", "-i", "/s.bin"]
    assert p.replay("libxc", tmp_path / "a b.bin", "file").endswith(f"-i '{tmp_path}/a b.bin'")
    assert p.replay("libxc", tmp_path / "a.bin", "stdin").endswith(f"-i 0 < {tmp_path}/a.bin")
    t = Program(template="myverify --fmt={format} {path}")
    assert t.argv("xl", "/s") == ["myverify", "--fmt=xl", "/s"]
    assert t.replay("xl", tmp_path / "s", "pipe") == (
        f"python3 -m xenstream.conformance.deliver pipe -f xl {tmp_path}/s -- myverify --fmt=xl /dev/stdin")
    assert t.modes == ("file", "stdin", "pipe")
    assert p.replay("libxc", tmp_path / "a.bin", "socket").endswith(f"{tmp_path}/a.bin -- /x/verify-stream-v2 -f libxc -i 5")
    f = Program(template="myverify --fd {fd} -t {format}")
    assert f.modes == ("stdin", "pipe", "fd", "socket")
    assert f.argv("xl", "5") == ["myverify", "--fd", "5", "-t", "xl"]
    assert f.argv("xl", "0") == ["myverify", "--fd", "0", "-t", "xl"]
    s = Program(template="myverify -f {format}")
    assert not s.takes_path
    assert s.replay("xl", tmp_path / "s", "file") == f"myverify -f xl < {tmp_path}/s"


@pytest.mark.parametrize("mode", ex.MODES)
def test_fake_verifier_in_every_mode(fake, tmp_path, mode):
    p = Program(path=fake, limits=FAST)
    f = tmp_path / "s.bin"
    for data, verdict in ((toy.VALID, "accept"), (b"TOX", "reject"), (toy.stream((3, b"")), "crash"),
                          (toy.stream((10, b"")), "signal")):
        f.write_bytes(data)
        assert p.verify("toy", data, f, mode).verdict == verdict, (data, mode)


def test_template_without_path_reads_stdin(fake, tmp_path):
    p = Program(template=f"{fake} -f {{format}} -i 0", limits=FAST)
    f = tmp_path / "s.bin"
    f.write_bytes(b"TOX")
    assert p.verify("toy", b"TOX", f, "file").verdict == "reject"


@pytest.mark.parametrize("mode", ex.MODES)
def test_builtin_matches_the_reference(tmp_path, mode):
    strict, restore = Builtin("strict"), Builtin("restore")
    f = tmp_path / "s.bin"
    for name, data, rule, expected in toy.CASES:
        f.write_bytes(data)
        s = strict.verify("toy", data, f, mode).verdict
        r = restore.verify("toy", data, f, mode).verdict
        want_s = required_verdict(expected, "strict") or s
        want_r = required_verdict(expected, "restore") or r
        assert (s, r) == (want_s, want_r), name


def test_builtin_reports_a_reference_bug_as_a_crash(monkeypatch):
    from xenstream.reference import formats
    monkeypatch.setattr(formats, "validate", lambda *a: (_ for _ in ()).throw(IndexError("bug")))
    o = Builtin().verify("toy", toy.VALID, None, "file")
    assert o.verdict == "crash" and "IndexError" in o.detail


# -- judging ------------------------------------------------------------------------

def _obs(verdict, mode="file"):
    return Observed(verdict, mode=mode)


@pytest.mark.parametrize("expected, role, seen, status, kind", [
    ("accept", "strict", ["accept"], "pass", ""),
    ("accept", "strict", ["reject"], "fail", "wrong-verdict"),
    ("reject", "restore", ["accept"], "fail", "wrong-verdict"),
    ("writer", "strict", ["accept"], "fail", "wrong-verdict"),
    ("writer", "restore", ["accept"], "pass", ""),
    ("writer", "restore", ["reject"], "fail", "wrong-verdict"),
    ("either", "strict", ["reject"], "reported", ""),
    ("either", "strict", ["accept"], "reported", ""),
    ("either", "strict", ["crash"], "fail", "crash"),
    ("reject", "strict", ["reject", "accept"], "fail", "inconsistent"),
    ("reject", "strict", ["reject", "timeout"], "fail", "crash"),
])
def test_judge(expected, role, seen, status, kind):
    j = judge(expected, role, [_obs(v, m) for v, m in zip(seen, ex.MODES)])
    assert (j.status, j.kind) == (status, kind)


# -- the runner -----------------------------------------------------------------------

def test_runner_saves_a_failing_stream_and_prints_a_replay(fake, tmp_path):
    from xenstream.conformance.cases import Case
    r = Runner(Program(path=fake, limits=FAST), "strict", "file", tmp_path / "failures")
    data = toy.stream((2, b"\1"))
    case = Case("toy/toy.reserved.zero/set-abc", "toy", data, "toy.reserved.zero", "writer",
                "reserved set", "examples")
    run = r.run_case(case)
    assert run.failed and run.outcome == "fail"
    assert run.saved.read_bytes() == data
    assert run.saved == tmp_path / "failures" / "toy" / "toy.reserved.zero" / "set-abc.bin"
    assert "toy rule toy.reserved.zero" in run.message and "toy section" in run.message
    assert "expected:  reject (writer rule, role strict)" in run.message
    assert f"replay:    {fake} -f toy -i {run.saved}" in run.message
    r.close()


def test_runner_delivery_modes_and_inconsistency(fake, tmp_path):
    from xenstream.conformance.cases import Case
    r = Runner(Program(path=fake, limits=FAST), "strict", "all", tmp_path / "f")
    data = toy.VALID + b"\0"
    run = r.run_case(Case("toy/toy.stream.trailing/t-1", "toy", data, "toy.stream.trailing",
                          "reject", "", "corpus"))
    assert run.judgement.kind == "inconsistent"
    assert "pipe: accept" in run.judgement.observed
    assert "xenstream.conformance.deliver pipe -f toy" in run.message  # replays the mode that disagreed
    r.close()


def test_runner_known_failures(fake, tmp_path):
    from xenstream.conformance.cases import Case
    known = KnownFailures({"toy/odd/*": "crashes on ODD", "toy/valid/x-1": "rejects?"})
    r = Runner(Program(path=fake, limits=FAST), "strict", "file", tmp_path / "f", known=known)
    odd = r.run_case(Case("toy/odd/o-1", "toy", toy.stream((3, b"")), "toy.odd.present", "either",
                          "", "examples"))
    assert odd.outcome == "xfail" and odd.known_reason == "crashes on ODD"
    ok = r.run_case(Case("toy/valid/x-1", "toy", toy.VALID, None, "accept", "", "examples"))
    assert ok.outcome == "xpass"
    r.close()


def test_sample_delivery_is_stable_and_covers_some_cases():
    r = Runner(Builtin(), delivery="sample")
    modes = [r.modes_for(f"toy/valid/c{i}-0") for i in range(200)]
    assert modes == [r.modes_for(f"toy/valid/c{i}-0") for i in range(200)]
    assert 5 < sum(len(m) == len(ex.MODES) for m in modes) < 60
    assert parse_delivery("stdin,pipe") == ("stdin", "pipe")
    with pytest.raises(ValueError):
        parse_delivery("carrier-pigeon")
    r.close()


def test_runner_overhead_is_small():
    """Issue 8: the runner's own cost per case, with the in-process reference."""
    from xenstream.conformance.cases import Case
    r = Runner(Builtin(), delivery="file")
    case = Case("toy/valid/p-1", "toy", toy.VALID, None, "accept", "", "examples")
    n = 500
    start = time.perf_counter()
    spent = 0.0
    for _ in range(n):
        spent += r.run_case(case).duration
    overhead = (time.perf_counter() - start - spent) / n
    assert overhead < 0.005
    r.close()


def test_converter_failure_replays_the_conversion_and_the_verify_step(tmp_path):
    """A bad-output failure: the replay line is absolute, and running it
    reproduces the verifier's refusal of the output."""
    import os
    import pathlib
    import subprocess

    from xenstream.conformance.cases import collect
    from xenstream.conformance.converter import ConverterProgram, ConverterRunner, options_from_meta

    root = pathlib.Path(__file__).resolve().parent.parent
    fake = tmp_path / "bad-convert"
    fake.write_text(f"#!/bin/sh\nPYTHONPATH={root} {sys.executable} -m xenstream convert-legacy "
                    '"$@" --append-qemu || exit $?\nprintf junk >> "$4"\n')
    fake.chmod(0o755)
    case = next(c for c in collect(["examples"]).cases
                if c.format == "legacy" and c.expected == "accept" and options_from_meta(c.meta)
                and not options_from_meta(c.meta).xl)
    runner = ConverterRunner(ConverterProgram(path=str(fake), limits=FAST), "strict", "file",
                             tmp_path / "failures")
    run = runner.run_case(case)
    runner.close()
    assert run.judgement.kind == "bad-output"
    out = run.saved.with_name(f"{run.saved.stem}.replay.out.bin")
    assert run.replay.startswith(f"{fake} -i {run.saved} -o {out} ")
    assert run.replay.endswith(f" && python3 -m xenstream verify --role strict -f "
                               f"{options_from_meta(case.meta).output_format} -i {out}")
    assert f"replay:    {run.replay}" in run.message
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run(["sh", "-c", run.replay], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "trailing" in r.stderr


def test_relative_program_paths_survive_the_private_working_directory(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "./" + Path(fake).name
    stream = tmp_path / "run" / "s.bin"
    stream.parent.mkdir()
    stream.write_bytes(toy.VALID)
    for impl in (Program(path=name, limits=FAST), Program(template=f"{name} -f {{format}} -i {{path}}",
                                                          limits=FAST)):
        assert impl.verify("toy", toy.VALID, stream, "file").verdict == "accept"
