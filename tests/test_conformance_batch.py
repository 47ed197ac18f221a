"""The batch protocol (conformance/batch.py): a testee that lives for many cases.

A scripted testee (``SCRIPT``) does what the stream tells it, so that each
way a testee can misbehave mid-batch is one request; then the two testees
under examples/batch/ against the real suite, on a few formats.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xenstream.conformance import containment
from xenstream.conformance.batch import (BATCH, BatchProgram, BatchRunner, ProtocolError,
                                         make_testee, parse_answer, request_line)
from xenstream.conformance.execute import Limits
from xenstream.conformance.judge import FLAKY, INCONSISTENT

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "batch"

#: A testee that obeys its stream: the stream's first word says what to do.
SCRIPT = r'''
import json, os, signal, subprocess, sys, time
served = 0
if sys.argv[1:] != ["--batch"]:
    # one stream per process: verify-stream-v2's convention
    args = sys.argv[1:]
    where = args[args.index("-i") + 1]
    data = (os.fdopen(int(where), "rb") if where.isdigit() else open(where, "rb")).read()
    sys.exit(0 if data.split()[0] in (b"accept", b"stateful", b"batch-only") else 1)
for line in sys.stdin:
    req = json.loads(line)
    word = open(req["path"], "rb").read().split()[0].decode()
    served += 1
    answer = {"id": req["id"], "verdict": "accept"}
    if word == "reject":
        answer = {"id": req["id"], "verdict": "reject", "message": "no"}
    elif word == "batch-only":
        answer["verdict"] = "reject"
    elif word == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif word == "hang":
        time.sleep(60)
    elif word == "garbage":
        print("hello, world", flush=True)
        continue
    elif word == "wrongid":
        answer["id"] = "another"
    elif word == "exit0":
        sys.exit(0)
    elif word == "flood":
        while True:
            sys.stderr.write("x" * 65536)
    elif word == "talk":
        print("thinking about " + req["id"], file=sys.stderr, flush=True)
    elif word == "spawn":   # a daemon of its own, in a session of its own
        child = subprocess.Popen(["sleep", "300"], start_new_session=True)
        answer["message"] = str(child.pid)
    elif word == "unsupported":
        answer = {"id": req["id"], "verdict": "unsupported", "message": "not this one"}
    elif word == "error":
        answer = {"id": req["id"], "verdict": "error", "message": "MemoryError"}
    elif word == "stateful" and served > 1:
        answer["verdict"] = "reject"
    elif word == "pid":
        answer["message"] = str(os.getpid())
    print(json.dumps(answer), flush=True)
'''


@pytest.fixture
def testee(tmp_path):
    script = tmp_path / "testee.py"
    script.write_text(SCRIPT)
    impl = BatchProgram([sys.executable, str(script)], Limits(timeout=3, memory_mb=0))
    yield impl
    impl.stop()


def ask(impl, tmp_path, word: str, case_id: str = "fmt/rule/case-1"):
    path = tmp_path / f"stream-{word}.bin"
    path.write_bytes(word.encode() + b"\n")
    impl.case_id = case_id
    return impl.verify("fmt", path.read_bytes(), path, BATCH)


def test_request_and_answer_lines():
    line = request_line("libxc/valid/x-1", "legacy", "/tmp/a b", 7, {"width": 64})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"id": "libxc/valid/x-1", "format": "legacy", "path": "/tmp/a b",
                                "size": 7, "options": {"width": 64}}
    assert parse_answer(b'{"id": "a", "verdict": "reject", "message": "m"}', "a") == ("reject", "m")
    for bad, why in ((b"hello", "not a JSON object"), (b"[1]", "not a JSON object"),
                     (b'{"id": "b", "verdict": "accept"}', "an answer for 'b'"),
                     (b'{"id": "a", "verdict": "maybe"}', "verdict 'maybe' is none of")):
        with pytest.raises(ProtocolError, match=why):
            parse_answer(bad, "a")


def test_one_process_serves_many_cases(testee, tmp_path):
    seen = [ask(testee, tmp_path, w) for w in ("accept", "reject", "pid", "pid")]
    assert [o.verdict for o in seen] == ["accept", "reject", "accept", "accept"]
    assert seen[1].stderr == "no" and seen[0].mode == BATCH
    assert seen[2].stderr == seen[3].stderr and testee.starts == 1
    assert testee.served == 4


@pytest.mark.parametrize("word, verdict, detail", [
    ("segv", "signal", "SIGSEGV"),
    ("hang", "timeout", "after 3 s"),
    ("garbage", "crash", "protocol error: not a JSON object: 'hello, world'"),
    ("wrongid", "crash", "protocol error: an answer for 'another'"),
    ("exit0", "crash", "exit 0 without answering the request"),
    ("flood", "output-flood", "more than"),
])
def test_a_testee_that_fails_mid_batch_is_restarted(testee, tmp_path, word, verdict, detail):
    if word == "hang":
        testee.limits = Limits(timeout=1, memory_mb=0)
        detail = "after 1 s"
    first = ask(testee, tmp_path, "pid")
    seen = ask(testee, tmp_path, word)
    assert seen.verdict == verdict and detail in seen.detail, seen
    assert testee._proc is None   # killed: it cannot serve the next case
    after = ask(testee, tmp_path, "pid")
    assert after.verdict == "accept" and after.stderr != first.stderr   # a new process
    assert testee.starts == 2


def test_stderr_belongs_to_its_case_and_answers_that_are_no_verdict(testee, tmp_path):
    talk = ask(testee, tmp_path, "talk", "fmt/rule/talkative-1")
    assert talk.verdict == "accept" and talk.stderr == "thinking about fmt/rule/talkative-1"
    assert ask(testee, tmp_path, "accept").stderr == ""
    unsupported = ask(testee, tmp_path, "unsupported")
    assert (unsupported.verdict, unsupported.detail) == ("crash", "unsupported: not this one")
    error = ask(testee, tmp_path, "error")
    assert error.verdict == "memory" and error.stderr == "MemoryError"
    assert testee.starts == 1   # an answer, even "error", keeps the process


def test_what_a_testee_starts_ends_with_it(testee, tmp_path):
    pid = int(ask(testee, tmp_path, "spawn").stderr)
    assert Path(f"/proc/{pid}").exists()
    testee_pid = testee._proc.pid
    testee.stop(graceful=True)
    assert not Path(f"/proc/{pid}").exists() and not Path(f"/proc/{testee_pid}").exists()
    assert testee._home is None


def test_a_missing_testee_is_not_executable(tmp_path):
    impl = BatchProgram([str(tmp_path / "nothing-here")], Limits(timeout=3))
    path = tmp_path / "s.bin"
    path.write_bytes(b"accept")
    seen = impl.verify("fmt", b"accept", path, BATCH)
    assert seen.verdict == "not-executable"


def test_usage_errors_name_what_to_give():
    with pytest.raises(ValueError, match="needs a testee"):
        make_testee("builtin", None, Limits())
    with pytest.raises(ValueError, match="without placeholders"):
        make_testee("builtin", "prog -f {format} -i {path}", Limits())
    impl = make_testee("x", "python3 t.py --role restore", Limits())
    assert impl.words == ["python3", "t.py", "--role", "restore"]
    assert impl.single.argv("legacy", "/s", {"width": 64}) == [
        "python3", "t.py", "--role", "restore", "-f", "legacy", "--width", "64", "-i", "/s"]


def runner(testee, tmp_path, delivery="file"):
    return BatchRunner(testee, "strict", delivery, tmp_path / "failures")


def test_state_kept_between_requests_is_flaky(testee, tmp_path):
    r = runner(testee, tmp_path)
    assert not r.run_stream("fmt/valid/a-1", "fmt", b"accept", expected="accept", rule=None).failed
    run = r.run_stream("fmt/valid/b-1", "fmt", b"stateful", expected="accept", rule=None)
    assert run.judgement.kind == FLAKY, run.judgement
    assert "second went to a new one" in run.judgement.reason
    assert "batch: reject, then accept" in run.judgement.observed
    r.close()
    assert testee._proc is None


def test_batch_and_per_process_verdicts_are_compared(testee, tmp_path):
    r = runner(testee, tmp_path, delivery=("pipe",))
    assert r.modes_for("fmt/valid/x-1") == (BATCH, "pipe")
    run = r.run_stream("fmt/valid/x-1", "fmt", b"batch-only", expected="accept", rule=None)
    assert run.judgement.kind == INCONSISTENT, run.judgement
    assert "batch: reject, pipe: accept" in run.judgement.observed
    run = r.run_stream("fmt/valid/y-1", "fmt", b"accept", expected="accept", rule=None)
    assert not run.failed
    r.explain(run, "fmt", b"accept", expected="accept", rule=None)
    assert run.replay.startswith("printf '%s\\n' '{\"id\": \"fmt/valid/y-1\"")
    assert run.replay.endswith(f"testee.py --batch")
    r.close()


def test_the_sample_goes_through_every_mode_per_process(testee, tmp_path):
    r = runner(testee, tmp_path, delivery="sample")
    picks = [r.modes_for(f"fmt/valid/case-{i}", "examples") for i in range(800)]
    extra = [m[1] for m in picks if len(m) > 1]
    assert all(m[0] == BATCH for m in picks)
    assert 60 < len(extra) < 140                      # about one in SAMPLE_EVERY
    assert set(extra) == {"file", "stdin", "pipe", "fd", "socket"}
    assert r.modes_for("fmt/valid/big", "large") == (BATCH, "file", "stdin", "pipe", "fd", "socket")
    file_only = runner(testee, tmp_path, "file")
    assert file_only.modes_for("fmt/valid/case-1") == (BATCH,)
    file_only.close()
    # Hypothesis examples (no source): batch requests only; the listed cases test the transport
    assert {r.modes_for(f"fmt/valid/hyp-{i}") for i in range(100)} == {(BATCH,)}
    r.close()


# the example testees, against the real suite ------------------------------

def pytest_run(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pytest", "conformance", "-p", "no:randomly",
                           "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_python_example_testee_passes(tmp_path):
    testee = f"{sys.executable} {EXAMPLES / 'xenstream_testee.py'}"
    r = pytest_run("-q", "-n", "2", "--impl-protocol=batch", f"--impl-cmd={testee}",
                   "--formats=legacy", "--sources=examples", "--delivery=sample",
                   f"--report={tmp_path}/rep", f"--failures-dir={tmp_path}/f",
                   f"--junitxml={tmp_path}/junit.xml")
    assert r.returncode == 0, r.stdout[-3000:]
    # one testee per xdist worker; the JUnit properties cross from the workers
    import xml.etree.ElementTree as ET

    props = [{p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
             if case.find("skipped") is None]
    assert props and all(p.get("xenstream.verdict") for p in props)
    assert sum("xenstream.rule" in p for p in props) > 20
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    observed = {c["observed"] for c in results["cases"]}
    # legacy images take options in a request and on a per-process command line
    assert any(c["format"] == "legacy" for c in results["cases"])
    assert any("," not in o for o in observed)
    assert len(results["cases"]) > 30


@pytest.fixture(scope="module")
def header_only(tmp_path_factory):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build examples/batch/header_only.c")
    out = tmp_path_factory.mktemp("cc") / "header_only"
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-o", str(out), str(EXAMPLES / "header_only.c")],
                   check=True)
    return out


def test_c_example_testee_shows_an_incomplete_implementation(header_only, tmp_path):
    r = pytest_run("-q", "--impl-protocol=batch", f"--impl={header_only}", "--sources=examples",
                   f"--report={tmp_path}/rep", f"--failures-dir={tmp_path}/f", "--delivery=sample")
    assert r.returncode == 1, r.stdout[-3000:]
    out = r.stdout
    # every format but libxc is refused whatever the stream: skipped, once each
    assert "format libxl skipped: header_only refuses it whatever the stream (unsupported: " \
           "'only the libxc image header is checked')" in out
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    cases = results["cases"]
    assert {c["format"] for c in cases} == {"libxc"}
    header = [c for c in cases if (c["rule"] or "").startswith("libxc.image_header.")
              and c["outcome"] != "reported"]
    assert header and all(c["outcome"] == "pass" for c in header)
    beyond = [c for c in cases if c["outcome"] == "fail"]
    assert len(beyond) > 20 and {c["kind"] for c in beyond} == {"wrong-verdict"}
    assert all(c["observed"].startswith("accept") or "batch: accept" in c["observed"]
               for c in beyond)
    assert all(c["replay"] for c in beyond)


def test_c_example_testee_single_runs_read_short_reads(header_only, tmp_path):
    from xenstream.conformance.delivery import PIPE, SOCKET

    impl = make_testee(str(header_only), None, Limits(timeout=5))
    from xenstream.reference import build, libxc
    from xenstream.reference.libxc import DomainType

    data = libxc.encode(build.libxc_stream(DomainType.X86_PV, pages=2))
    path = tmp_path / "s.bin"
    path.write_bytes(data)
    for mode in (BATCH, "file", "stdin", PIPE, "fd", SOCKET):
        assert impl.verify("libxc", data, path, mode).verdict == "accept", mode
    path.write_bytes(data[:20])
    for mode in (BATCH, "file", PIPE):
        assert impl.verify("libxc", data[:20], path, mode).verdict == "reject", mode
    impl.stop()


def test_python_example_testee_takes_options_in_every_mode(tmp_path):
    from xenstream.conformance.cases import collect

    case = next(c for c in collect(["examples"], formats=["legacy"]).cases
                if c.expected == "accept" and c.options.get("width") == 32)
    impl = make_testee("", f"{sys.executable} {EXAMPLES / 'xenstream_testee.py'}", Limits(timeout=30))
    r = BatchRunner(impl, "strict", "all", tmp_path / "failures")
    run = r.run_case(case)
    r.close()
    assert [o.mode for o in run.observations] == [BATCH, "file", "stdin", "pipe", "fd", "socket"]
    assert not run.failed, run.judgement
    assert "--width" in run.observations[1].argv and "32" in run.observations[1].argv
