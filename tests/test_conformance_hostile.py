"""The runner against hostile testees: each case asserts the verdict and that
nothing is left behind (no process, no file in the temporary folder)."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import conformance_toy as toy  # tests/ is on pytest's pythonpath (pyproject.toml)
from xenstream.conformance import containment
from xenstream.conformance import execute as ex
from xenstream.conformance.cases import Case
from xenstream.conformance.delivery import FD_OFFSET, MODES, Feed, pipe_pieces
from xenstream.conformance.execute import Limits, Program, run_process, stream_marks
from xenstream.conformance.runner import Runner

FAST = Limits(timeout=1.0, memory_mb=256, output_limit=100_000)


@pytest.fixture(autouse=True)
def toy_format(monkeypatch):
    toy.register(monkeypatch)


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """The temporary folder the runner uses; empty again after every case."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def token():
    """A number no other process has in its command line: ``sleep TOKEN``."""
    return str(random.randrange(7_000_000, 8_000_000))


def leftovers(token: str) -> list[str]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if token.encode() in cmd:
            words = cmd.replace(bytes(1), b" ").decode(errors="replace")
            out.append(f"{name}: {words}")
    return out


@pytest.fixture
def clean(temp_root, token):
    """Checks, after the test, that nothing of it is left."""
    before = containment.children()
    yield
    assert leftovers(token) == []
    assert containment.children() - before == set()
    assert os.listdir(temp_root) == []


def script(folder: Path, name: str, body: str, interpreter: str = "/bin/sh") -> str:
    path = folder / name
    path.write_text(f"#!{interpreter}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def run_one(program: str, data: bytes = toy.VALID, *, expected: str = "accept", modes=("file",),
            failures: Path, limits: Limits = FAST, rerun: bool = True):
    runner = Runner(Program(path=program, limits=limits), "strict", tuple(modes), failures, rerun=rerun)
    try:
        return runner.run_case(Case("toy/valid/hostile-1", "toy", data, None, expected, "", "corpus"))
    finally:
        runner.close()


# -- processes that outlive their testee -------------------------------------

HOSTILE = {
    # name: (shell body, verdict observed)
    "hangs": ("exec sleep {t}", "timeout"),
    "child in its group, output closed": ("sleep {t} >/dev/null 2>&1 </dev/null &\nexit 0", "accept"),
    "setsid child holding its output": ("setsid sleep {t} &\nexit 0", "accept"),
    "setsid double fork, then hangs": (
        "setsid sh -c 'sleep {t} & sleep {t} & wait' >/dev/null 2>&1 </dev/null &\nsleep {t}", "timeout"),
    "nohup'd grandchild, exits 1": ("( ( sleep {t} >/dev/null 2>&1 & ) & )\nexit 1", "reject"),
    "ignores SIGTERM and hangs": ("trap '' TERM INT HUP\nsleep {t}", "timeout"),
    "floods stdout": ("exec yes", "output-flood"),
    "floods stderr": ("exec yes >&2", "output-flood"),
    "kills itself": ("kill -SEGV $$", "signal (SIGSEGV)"),
    "aborts": ("kill -ABRT $$", "signal (SIGABRT)"),
    "says it ran out of memory": ("echo 'xmalloc: Cannot allocate memory' >&2\nexit 3", "memory"),
    "fake AddressSanitizer report, exit 0": (
        "echo '==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x1' >&2\nexit 0", "memory"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_shell_testees(name, tmp_path, token, clean):
    body, seen = HOSTILE[name]
    prog = script(tmp_path, "testee", body.format(t=token))
    start = time.monotonic()
    run = run_one(prog, failures=tmp_path / "failures")
    assert run.judgement.observed.startswith(seen), run.judgement
    assert time.monotonic() - start < 4 * FAST.timeout + 2


@pytest.mark.parametrize("mode", ["pipe", "socket", "stdin", "fd"])
def test_never_reading_the_stream(mode, tmp_path, token, clean):
    big = b"x" * (3 << 20)
    quits = script(tmp_path, "quits", "exit 0")
    assert run_one(quits, big, modes=[mode], failures=tmp_path / "f").judgement.observed == "accept"
    hangs = script(tmp_path, "hangs", f"exec sleep {token}")
    assert run_one(hangs, big, modes=[mode], failures=tmp_path / "f", limits=Limits(timeout=0.5)) \
        .judgement.observed.startswith("timeout")


PY = sys.executable


def test_python_allocation_is_memory(tmp_path, clean):
    prog = script(tmp_path, "alloc", "b = bytearray(1 << 40)\n", PY)
    assert run_one(prog, failures=tmp_path / "f").judgement.observed.startswith("memory (MemoryError")


C_TESTEES = {  # a C program's allocation failures, through the C library itself
    "perror after malloc returned NULL": (
        "if not libc.malloc(ctypes.c_size_t(1 << 44)):\n"
        "    libc.perror(b'malloc')\n"
        "    sys.exit(2)\n", "memory (malloc: Cannot allocate memory)"),
    "refuses (exit 1) after malloc returned NULL": (
        "if not libc.malloc(ctypes.c_size_t(1 << 44)):\n"
        "    sys.stderr.write('verify: malloc of 17592186044416 octets failed\\n')\n"
        "    sys.exit(1)\n", "memory (verify: malloc of"),
    "glibc's heap check aborts": (
        "libc.malloc.restype = ctypes.c_void_p\n"
        "p = libc.malloc(40)\n"
        "ctypes.memset(p - 8, 0xff, 8)   # overwrite the chunk's size\n"
        "libc.free(ctypes.c_void_p(p))\n", "memory (munmap_chunk(): invalid pointer"),
    "a double free": (
        "libc.malloc.restype = ctypes.c_void_p\n"
        "p = libc.malloc(40)\n"
        "libc.free(ctypes.c_void_p(p))\n"
        "libc.free(ctypes.c_void_p(p))\n", "memory (free(): double free"),
}


@pytest.mark.parametrize("name", C_TESTEES)
def test_c_allocation_failures_are_memory(name, tmp_path, clean):
    body, seen = C_TESTEES[name]
    prog = script(tmp_path, "c", "import ctypes, sys\nsys.stderr.flush()\n"
                  "libc = ctypes.CDLL(None)\n" + body, PY)
    run = run_one(prog, failures=tmp_path / "f")
    assert run.judgement.observed.startswith(seen), run.judgement.observed


def test_random_verdict_is_flaky_not_inconsistent(tmp_path, clean):
    counter = tmp_path / "counter"
    prog = script(tmp_path, "coin", f"""\
        import os, sys
        n = len(open({str(counter)!r}, "a+").name) and os.path.getsize({str(counter)!r})
        open({str(counter)!r}, "a").write("x")
        sys.exit(n % 2)
        """, PY)
    run = run_one(prog, failures=tmp_path / "f", modes=("file", "stdin"))
    # file: 0 accept, stdin: 1 reject; again: file 2 accept... stdin 3 reject -> consistent?
    # the coin alternates per run, so each mode sees the same verdict twice: inconsistent
    assert run.judgement.kind == "inconsistent"
    counter.unlink()
    run = run_one(prog, failures=tmp_path / "f", modes=("file",), expected="reject")
    assert run.judgement.kind == "flaky", run.judgement
    assert "file: accept, then reject" in run.judgement.observed
    assert "changed between two identical runs" in run.message


def test_writes_into_and_breaks_its_working_directory(tmp_path, clean):
    prog = script(tmp_path, "vandal", """\
        mkdir -p junk/deeper && echo x > junk/deeper/file && chmod 000 junk/deeper junk
        echo y > ../next-to-the-run
        rm -f "$4"
        exit 0
        """)
    run = run_one(prog, failures=tmp_path / "f", modes=("file", "stdin", "pipe"))
    assert run.judgement.observed == "accept"


def _accepts_valid_cases(prog, tmp_path, name: str, n: int) -> None:
    """The runner runs ``n`` valid toy cases through ``prog`` and each is judged accepted."""
    runner = Runner(Program(path=prog, limits=FAST), "strict", "file", tmp_path / "f")
    try:
        for i in range(n):
            run = runner.run_case(Case(f"toy/valid/{name}-{i}", "toy", toy.VALID, None, "accept", "", "corpus"))
            assert run.judgement.observed == "accept", run.judgement
    finally:
        runner.close()


def test_deleting_the_runners_folder_breaks_nothing(tmp_path, temp_root, token, clean):
    prog = script(tmp_path, "wrecker", 'rm -rf "$(dirname "$(pwd)")"\nexit 0\n')
    _accepts_valid_cases(prog, tmp_path, "w", 3)


def test_replacing_the_runners_folder_with_a_link(tmp_path, temp_root, clean):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    prog = script(tmp_path, "linker", f'cd / && rm -rf "$(dirname "$(dirname "$4")")" && '
                                      f'ln -s {victim} "$(dirname "$(dirname "$4")")"\nexit 0\n')
    _accepts_valid_cases(prog, tmp_path, "l", 2)
    assert (victim / "precious").read_text() == "keep me"
    for link in temp_root.iterdir():   # what the testee left: links, not the runner's folders
        assert link.is_symlink()
        link.unlink()


def test_bad_interpreters(tmp_path, clean):
    missing = script(tmp_path, "missing", "exit 0\n", "/nonexistent/python3")
    run = run_one(missing, failures=tmp_path / "f")
    assert run.judgement.observed.startswith("not-executable")
    assert "interpreter /nonexistent/python3" in run.judgement.observed
    plain = tmp_path / "plain"
    plain.write_text("exit 0\n")
    plain.chmod(0o755)
    assert "no #! line" in run_one(str(plain), failures=tmp_path / "f").judgement.observed
    assert run_one(str(tmp_path / "nothing-here"), failures=tmp_path / "f").judgement.observed \
        .startswith("not-executable")


def test_a_vanished_stream_is_a_harness_error_not_the_program(tmp_path):
    o = run_process(["cat"], FAST, feed=Feed("stdin", path=tmp_path / "gone.bin"), mode="stdin")
    assert o.verdict == "harness-error" and "gone.bin" in o.detail
    o = run_process(["true"], FAST, cwd=tmp_path / "gone")
    assert o.verdict == "harness-error" and "working directory" in o.detail


def test_the_runners_own_exception_is_a_harness_error(tmp_path, monkeypatch, clean):
    prog = script(tmp_path, "ok", "exit 0\n")

    def no_space(self):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Runner, "private_dir", no_space)
    run = run_one(prog, failures=tmp_path / "f")
    assert run.outcome == "harness-error" and run.judgement.kind == "harness-error"
    assert "No space left on device" in run.judgement.reason


# -- deliveries ---------------------------------------------------------------

READ_SIZES = """\
import os, sys
fd = int(sys.argv[sys.argv.index("-i") + 1]) if sys.argv[sys.argv.index("-i") + 1].isdigit() else \\
    os.open(sys.argv[sys.argv.index("-i") + 1], os.O_RDONLY)
sizes, h = [], __import__("hashlib").sha256()
while True:
    b = os.read(fd, 1 << 20)
    if not b:
        break
    sizes.append(len(b))
    h.update(b)
print(len(sizes), max(sizes or [0]), sum(sizes), h.hexdigest(), file=sys.stderr)
"""


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_delivers_the_stream_exactly(mode, tmp_path, clean):
    data = random.Random(3).randbytes(300_000)
    prog = Program(path=script(tmp_path, "reader", READ_SIZES, PY), limits=Limits(timeout=20))
    stream = tmp_path / "s.bin"
    stream.write_bytes(data)
    o = prog.verify("toy", data, stream, mode)
    reads, biggest, total, digest = o.stderr.split()
    assert (int(total), digest) == (len(data), hashlib.sha256(data).hexdigest()), o
    if mode in ("pipe", "socket"):
        pieces = pipe_pieces(data)
        assert int(reads) >= len(pieces) and int(biggest) <= max(map(len, pieces))


def test_pipe_cuts_fall_inside_headers_and_bodies():
    data = toy.stream(*[(1, bytes(200)) for _ in range(30)])
    marks = stream_marks("toy", data)
    assert marks and 4 in marks
    cuts = set()
    at = 0
    for piece in pipe_pieces(data, marks=marks):
        at += len(piece)
        cuts.add(at)
    assert 4 + 3 in cuts or any(m + 3 in cuts for m in marks)   # inside a record header
    assert any(a < c < b for a, b in zip(marks, marks[1:]) for c in cuts if b - a > 16)
    assert max(len(p) for p in pipe_pieces(bytes(1 << 20))) <= 48 * 1024


NAIVE_READER = """\
import os, sys
# reads like verify-stream-v2: one read() per item, a short read is 'truncated'
f = open(0 if sys.argv[-1] == "0" else int(sys.argv[-1]) if sys.argv[-1].isdigit() else sys.argv[-1],
         "rb", buffering=0)
def exact(n):
    b = f.read(n)
    if len(b) != n:
        print("Stream truncated", file=sys.stderr); sys.exit(1)
    return b
exact(4)
while True:
    t, n = exact(2)
    exact(n)
    if t == 0:
        sys.exit(0)
"""


def test_a_reader_that_takes_a_short_read_for_the_end_is_found(tmp_path, clean):
    prog = script(tmp_path, "naive", NAIVE_READER, PY)
    run = run_one(prog, toy.stream(*[(1, bytes(200)) for _ in range(20)]), failures=tmp_path / "f",
                  modes=MODES)
    assert run.judgement.kind == "inconsistent", run.judgement
    assert "file: accept" in run.judgement.observed
    assert "pipe: reject" in run.judgement.observed and "socket: reject" in run.judgement.observed
    assert "xenstream.conformance.deliver" in run.message


def test_fd_mode_is_positioned_after_octets_that_are_not_the_stream(tmp_path, clean):
    seeker = script(tmp_path, "seeker", """\
        import os, sys
        where = sys.argv[-1]
        fd = int(where) if where.isdigit() else os.open(where, os.O_RDONLY)
        os.lseek(fd, 0, os.SEEK_SET)          # a reader that rewinds its input
        sys.exit(0 if os.read(fd, 3) == b"TOY" else 1)
        """, PY)
    run = run_one(seeker, failures=tmp_path / "f", modes=("file", "fd"))
    assert run.judgement.observed == "file: accept, fd: reject"
    assert f"offset {FD_OFFSET}" in run.judgement.reason


def test_large_streams_go_through_every_mode(tmp_path):
    from xenstream.conformance.cases import collect
    from xenstream.conformance.execute import Builtin

    cases = [c for c in collect(["large"]).cases if c.format in ("libxc", "legacy")]
    assert len(cases) == 4 and all(len(c.data) > 1 << 20 for c in cases)
    runner = Runner(Builtin(), "strict", "file", tmp_path / "f")
    for case in cases:
        assert runner.modes_for(case.id, case.source) == MODES
        run = runner.run_case(case)
        assert run.judgement.status == "pass", (case.id, run.judgement)
    runner.close()


# -- converters --------------------------------------------------------------

def test_a_converter_writing_a_huge_sparse_output(tmp_path, clean):
    from xenstream.conformance.converter import ConverterProgram, ConverterRunner
    from xenstream.reference import legacy as L

    data = L.encode(L.build_hvm_stream(width=64))
    sparse = script(tmp_path, "sparse", """\
        import sys
        out = sys.argv[sys.argv.index("-o") + 1]
        with open(out, "wb") as f:
            f.truncate(int(sys.argv[0].endswith("sparse")) and 200 << 20)
        """, PY)
    runner = ConverterRunner(ConverterProgram(path=sparse, limits=FAST), "strict", "file", tmp_path / "f")
    case = Case("legacy/valid/sparse-1", "legacy", data, None, "accept", "", "corpus",
                {"width": 64, "guest": "hvm"})
    try:
        run = runner.run_case(case)
        assert run.judgement.observed.startswith("output-flood (an output of 209715200 octets"), run.judgement
        bigger = script(tmp_path, "beyond", """\
            import ctypes, os, signal, sys
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)   # as in a C program
            fd = os.open(sys.argv[sys.argv.index("-o") + 1], os.O_WRONLY | os.O_CREAT)
            os.lseek(fd, 1 << 40, os.SEEK_SET)
            os.write(fd, b"x")
            """, PY)
        runner.impl = ConverterProgram(path=bigger, limits=FAST)
        run = runner.run_case(case)
        assert run.judgement.observed.startswith("output-flood (a file larger than the file limit"), \
            run.judgement
        python_like = script(tmp_path, "python-like", """\
            import sys
            with open(sys.argv[sys.argv.index("-o") + 1], "wb") as f:
                f.seek(1 << 40)
                f.write(b"x")     # EFBIG: Python ignores SIGXFSZ
            """, PY)
        runner.impl = ConverterProgram(path=python_like, limits=FAST)
        run = runner.run_case(case)
        assert run.judgement.observed.startswith("output-flood (a file larger than the file limit"), \
            run.judgement
    finally:
        runner.close()
    assert not list((tmp_path / "f").rglob("*.out.bin"))  # nothing of the flood was kept


# -- whole runs ------------------------------------------------------------------

def test_an_implementation_that_hangs_on_everything_gets_a_shorter_timeout(tmp_path, token, clean,
                                                                          monkeypatch):
    from xenstream.conformance import runner as runner_mod

    monkeypatch.setattr(runner_mod, "HANG_STREAK", 2)
    monkeypatch.setattr(runner_mod, "HANG_TIMEOUT", 0.1)
    prog = script(tmp_path, "hang", f"exec sleep {token}")
    runner = Runner(Program(path=prog, limits=Limits(timeout=0.6)), "strict", ("file", "stdin"),
                    tmp_path / "f")
    start = time.monotonic()
    try:
        runs = [runner.run_case(Case(f"toy/valid/h-{n}", "toy", toy.VALID, None, "accept", "", "corpus"))
                for n in range(6)]
    finally:
        runner.close()
    # two cases of two timeouts each at 0.6 s, then one timeout of 0.1 s a case
    assert time.monotonic() - start < 2 * 2 * 0.6 + 4 * 0.1 + 2
    assert all(r.judgement.observed.startswith("timeout") for r in runs)
    assert "shortened" in runs[-1].judgement.observed and len(runs[-1].observations) == 1


def test_deliver_replays_a_mode_and_passes_the_exit_status_on(tmp_path, capfd):
    from xenstream.conformance import deliver

    stream = tmp_path / "s.bin"
    stream.write_bytes(toy.stream(*[(1, bytes(100)) for _ in range(10)]))
    naive = script(tmp_path, "naive", NAIVE_READER, PY)
    assert deliver.main(["file", "-f", "toy", str(stream), "--", naive, str(stream)]) == 0
    assert deliver.main(["pipe", "-f", "toy", str(stream), "--", naive, "0"]) == 1
    assert "Stream truncated" in capfd.readouterr().err
    assert deliver.main(["socket", str(stream), "--", "sh", "-c", "exit 7"]) == 7
    assert deliver.main(["fd", str(stream), "--", "sh", "-c", "kill -SEGV $$"]) == 128 + 11
    assert deliver.main(["stdin", str(tmp_path / "missing"), "--", "true"]) == 2
