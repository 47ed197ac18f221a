"""Running an implementation on one stream and turning what it did into a verdict.

An implementation under test is either an external program (the
``verify-stream-v2`` convention: ``PROG -f FORMAT -i FILE|0``, or a command
template with ``{format}`` and ``{path}`` placeholders) or the built-in
reference verifier run in-process.  Whatever it does, one run ends as an
:class:`Observed` verdict:

``accept`` / ``reject``
    exit status 0 / 1: the implementation judged the stream;
``crash``
    any other exit status (``verify-stream-v2``'s "Script Error" is 2);
``signal``
    killed by a signal it did not get from us (SIGSEGV, SIGABRT, ...);
``timeout``
    still running after the per-case timeout (killed, with its process group);
``memory``
    a memory error: an AddressSanitizer (or other sanitizer) report on
    stderr, whatever the exit status, or an allocation failure
    (``MemoryError``, ``std::bad_alloc``) under the address-space limit;
``output-flood``
    wrote more than the output limit to stdout and stderr (killed);
``not-executable``
    the program could not be started at all.

Only ``accept`` and ``reject`` are verdicts on the stream; everything else is a
failure of the implementation whatever the case expected.

A stream is given in one of three delivery modes: ``file`` (its path),
``stdin`` (standard input redirected from the file) and ``pipe`` (standard
input is a pipe the runner writes in small pieces with short pauses, so that
the reader sees short reads at awkward places).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import resource
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

FILE, STDIN, PIPE = "file", "stdin", "pipe"
MODES: tuple[str, ...] = (FILE, STDIN, PIPE)

ACCEPT, REJECT = "accept", "reject"
CRASH, SIGNAL, TIMEOUT, MEMORY, FLOOD, NOEXEC = (
    "crash", "signal", "timeout", "memory", "output-flood", "not-executable")
JUDGED = frozenset({ACCEPT, REJECT})

#: Octets of stderr kept for the failure message (head and tail).
STDERR_KEEP = 4096
#: Pieces a stream is cut into in ``pipe`` mode, with a pause after each.
PIPE_PIECES = 12
PIPE_PAUSE = 0.001
#: How long output may stay open after the program exited (a child holds it).
EXIT_GRACE = 0.2
POLL_INTERVAL = 0.05

_SANITIZER_RE = re.compile(
    rb"(?:ERROR|WARNING): (?:Address|Leak|Memory|Thread|HWAddress)Sanitizer:?[^\n]*")
#: Allocation failures that are never a deliberate refusal (any non-zero exit).
_MEMORY_RE = re.compile(rb"^(?:MemoryError\b[^\n]*|[^\n]*std::bad_alloc[^\n]*)$", re.MULTILINE)
#: Allocation failures that a program may also print when it refuses (exit 1) on purpose.
_MEMORY_WEAK_RE = re.compile(
    rb"^[^\n]*(?:Cannot allocate memory|[Oo]ut of memory)[^\n]*$", re.MULTILINE)


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0            # seconds per run
    memory_mb: int = 1024           # address-space limit (RLIMIT_AS); 0: none
    output_limit: int = 1 << 20     # octets of stdout + stderr before the run is killed


@dataclass(frozen=True)
class Observed:
    """What one run of an implementation on one stream came to."""

    verdict: str
    detail: str = ""
    exit_code: int | None = None
    stderr: str = ""
    duration: float = 0.0
    mode: str = FILE
    argv: tuple[str, ...] = ()

    @property
    def judged(self) -> bool:
        return self.verdict in JUDGED

    @property
    def label(self) -> str:
        return f"{self.verdict} ({self.detail})" if self.detail else self.verdict


def classify(returncode: int, stderr: bytes) -> tuple[str, str]:
    """Verdict and detail of a program that ended on its own."""
    m = _SANITIZER_RE.search(stderr)
    if m:
        return MEMORY, m.group(0).decode("utf-8", "replace").strip()[:200]
    if returncode == 0:
        return ACCEPT, ""
    m = _MEMORY_RE.search(stderr)
    if m:
        return MEMORY, m.group(0).decode("utf-8", "replace").strip()[:200]
    if returncode == 1:
        return REJECT, ""
    m = _MEMORY_WEAK_RE.search(stderr)
    if m:
        return MEMORY, m.group(0).decode("utf-8", "replace").strip()[:200]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return SIGNAL, name
    return CRASH, f"exit {returncode}"


def trim(text: bytes | str, keep: int = STDERR_KEEP) -> str:
    """Head and tail of a long output, as text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    if len(text) <= keep:
        return text
    half = keep // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters left out ...]\n{text[-half:]}"


def pipe_pieces(data: bytes, pieces: int = PIPE_PIECES) -> list[bytes]:
    """Cut ``data`` into pieces of uneven, deterministic sizes (some of one octet)."""
    n = len(data)
    if n == 0:
        return []
    cuts = set()
    # small cuts near the start (inside the headers), then spread over the body
    for c in (1, 3, 8, 13, 24, 31):
        if c < n:
            cuts.add(c)
    step = max(1, n // max(1, pieces - len(cuts)))
    for c in range(step, n, step):
        cuts.add(c)
        if c + 1 < n:
            cuts.add(c + 1)
        if len(cuts) >= 2 * pieces:
            break
    edges = [0, *sorted(cuts), n]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


class _ErrorLog:
    """Keeps the head and the tail of stderr, and every line that looks like a
    sanitizer or allocation-failure report wherever it is."""

    __slots__ = ("head", "tail", "dropped", "hits", "_carry")

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = b""
        self.dropped = 0
        self.hits: list[bytes] = []
        self._carry = b""

    def add(self, chunk: bytes) -> None:
        scan = self._carry + chunk
        if len(self.hits) < 8:
            for m in _SANITIZER_RE.finditer(scan):
                self.hits.append(m.group(0))
            for regex in (_MEMORY_RE, _MEMORY_WEAK_RE):
                for m in regex.finditer(scan):
                    self.hits.append(m.group(0))
        cut = scan.rfind(b"\n")
        self._carry = scan[cut + 1:][-256:] if cut >= 0 else scan[-256:]
        room = STDERR_KEEP - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.dropped += len(chunk)
            self.tail = (self.tail + chunk)[-STDERR_KEEP:]

    def scanned(self) -> bytes:
        """What :func:`classify` should look at."""
        return bytes(self.head) + b"\n" + b"\n".join(self.hits) + b"\n" + self.tail

    def text(self) -> str:
        if self.dropped > len(self.tail):
            gap = f"\n[... {self.dropped - len(self.tail)} octets left out ...]\n".encode()
            return trim(bytes(self.head) + gap + self.tail, 3 * STDERR_KEEP)
        return trim(bytes(self.head) + self.tail, 3 * STDERR_KEEP)


def _child_setup(memory_mb: int) -> Callable[[], None]:
    limit = memory_mb << 20

    def setup() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return setup


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def run_process(argv: list[str], limits: Limits, *, stdin_path: str | os.PathLike | None = None,
                pipe_data: bytes | None = None, mode: str = FILE, env: dict | None = None) -> Observed:
    """Run ``argv`` under ``limits``; its stdin is ``stdin_path``, a pipe fed with
    ``pipe_data`` in small pieces, or /dev/null."""
    start = time.monotonic()
    deadline = start + limits.timeout
    stdin_file = None
    try:
        if stdin_path is not None:
            stdin_file = open(stdin_path, "rb")
            stdin = stdin_file
        elif pipe_data is not None:
            stdin = subprocess.PIPE
        else:
            stdin = subprocess.DEVNULL
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_child_setup(limits.memory_mb), start_new_session=True,
            close_fds=True, env=env)
    except OSError as exc:
        return Observed(NOEXEC, f"{exc.strerror or exc}: {argv[0]}", None, "",
                        time.monotonic() - start, mode, tuple(argv))
    finally:
        if stdin_file is not None:
            stdin_file.close()

    killed: tuple[str, str] | None = None
    err = _ErrorLog()
    out_total = 0
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    pieces: list[bytes] = []
    pending = b""
    resume_at = 0.0
    writing = pipe_data is not None
    if writing:
        pieces = pipe_pieces(pipe_data)
        pieces.reverse()
        os.set_blocking(proc.stdin.fileno(), False)

    def stop_writing() -> None:
        nonlocal writing
        writing = False
        try:
            sel.unregister(proc.stdin)
        except (KeyError, ValueError):
            pass
        try:
            proc.stdin.close()
        except OSError:
            pass

    stdin_registered = False
    exited_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                killed = (TIMEOUT, f"after {limits.timeout:g} s")
                break
            if writing:
                if not pending and pieces and now >= resume_at:
                    pending = pieces.pop()
                if pending and not stdin_registered:
                    sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
                    stdin_registered = True
                if not pending and not pieces:
                    stop_writing()
            readers = len(sel.get_map()) - (1 if stdin_registered else 0)
            if readers == 0 and not writing:
                break
            if proc.poll() is not None:
                # exited, but something (a child) still holds its output open
                if exited_at is None:
                    exited_at = now
                elif now - exited_at > EXIT_GRACE:
                    break
            wait = min(deadline - now, POLL_INTERVAL)
            if writing and not pending:
                wait = min(wait, max(0.0, resume_at - now))
            for key, _ in sel.select(wait):
                if key.data == "in":
                    try:
                        n = os.write(key.fd, pending)
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, OSError):
                        pending = b""
                        pieces = []
                        stdin_registered = False
                        stop_writing()
                        continue
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(proc.stdin)
                        stdin_registered = False
                        resume_at = time.monotonic() + PIPE_PAUSE
                        if not pieces:
                            stop_writing()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                out_total += len(chunk)
                if key.data == "err":
                    err.add(chunk)
                if out_total > limits.output_limit:
                    killed = (FLOOD, f"more than {limits.output_limit} octets of output")
                    break
            if killed:
                break
        if killed is None:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                killed = (TIMEOUT, f"after {limits.timeout:g} s (output closed)")
    finally:
        if killed is not None or proc.poll() is None or exited_at is not None:
            _kill_group(proc)
        proc.wait()
        sel.close()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
    duration = time.monotonic() - start
    if killed is not None:
        verdict, detail = killed
    else:
        verdict, detail = classify(proc.returncode, err.scanned())
    return Observed(verdict, detail, proc.returncode, err.text(), duration, mode, tuple(argv))


# --------------------------------------------------------------------------
# implementations


class Implementation:
    """Something that verifies a stream and says accept or reject."""

    name: str = "?"
    #: True when :meth:`verify` needs the stream in a file.
    needs_file: bool = True
    #: Delivery modes this implementation can be given streams in.
    modes: tuple[str, ...] = MODES

    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        """``options``: format options (a legacy image's width, guest, ...)."""
        raise NotImplementedError

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        """One shell command that gives the saved stream to the implementation again."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class Program(Implementation):
    """An external program: the verify-stream-v2 convention or a command template.

    With a template, ``{format}`` is the format and ``{path}`` the stream's
    path; ``stdin`` and ``pipe`` modes put ``/dev/stdin`` in ``{path}``.  A
    template without ``{path}`` is always given the stream on stdin (its
    ``file`` mode is ``stdin``).
    """

    def __init__(self, path: str | None = None, template: str | None = None,
                 limits: Limits = Limits(), env: dict | None = None, name: str | None = None):
        if (path is None) == (template is None):
            raise ValueError("give a program path or a command template")
        self.path = path
        self.template = template
        self.limits = limits
        self.env = env
        if template is not None:
            self.words = shlex.split(template)
            self.name = name or os.path.basename(self.words[0]) if self.words else "?"
            self.takes_path = any("{path}" in w for w in self.words)
        else:
            self.name = name or os.path.basename(path)
            self.takes_path = True

    def argv(self, fmt: str, where: str, options: dict | None = None) -> list[str]:
        if self.template is None:
            return [self.path, "-f", fmt, "-i", where]
        out: list[str] = []
        for w in self.words:
            if w == "{options}":
                out += option_words(options)
            else:
                out.append(w.replace("{format}", fmt).replace("{path}", where))
        return out

    def _stdin_word(self) -> str:
        return "0" if self.template is None else "/dev/stdin"

    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        if mode == FILE and self.takes_path:
            return run_process(self.argv(fmt, str(path), options), self.limits, mode=mode,
                               env=self.env)
        argv = self.argv(fmt, self._stdin_word(), options)
        if mode == PIPE:
            return run_process(argv, self.limits, pipe_data=data, mode=mode, env=self.env)
        return run_process(argv, self.limits, stdin_path=path, mode=mode, env=self.env)

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        if mode == FILE and self.takes_path:
            return shlex.join(self.argv(fmt, str(path), options))
        cmd = shlex.join(self.argv(fmt, self._stdin_word(), options))
        if mode == PIPE:
            return f"cat {shlex.quote(str(path))} | {cmd}"
        return f"{cmd} < {shlex.quote(str(path))}"

    def describe(self) -> str:
        return self.template if self.template is not None else self.path


def option_words(options: dict | None) -> list[str]:
    """Format options as ``xenstream verify`` takes them (``--width 64 --libxl --no-qemu``)."""
    out: list[str] = []
    for key, value in (options or {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append(f"--no-{key.replace('_', '-')}")
        elif value is not None:
            out += [flag, str(value)]
    return out


def reference_command(role: str) -> str:
    """The reference verifier as a subprocess (``--impl=builtin-subprocess``)."""
    return shlex.join([sys.executable, "-m", "xenstream", "verify", "--role", role,
                       "-f", "{format}", "-i", "{path}"]) + " {options}"


class Builtin(Implementation):
    """The reference verifier, in-process: what ``xenstream verify --role ROLE``
    would say, without starting an interpreter per case."""

    needs_file = False

    def __init__(self, role: str = "strict"):
        from xenstream.reference.rules import Role

        self.role_name = role
        self.role = Role(role)
        self.name = f"builtin ({role})"

    def _check(self, fmt: str, src, options: dict) -> Observed:
        from xenstream.reference.checker import Checker
        from xenstream.reference.formats import validate

        checker = Checker(self.role)
        validate(src, fmt, checker, **options)
        first = checker.first_refused()
        if first is None:
            return Observed(ACCEPT, exit_code=0)
        return Observed(REJECT, exit_code=1, stderr=first.describe())

    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        from xenstream.reference.source import Source

        options = options or {}
        start = time.perf_counter()
        try:
            if mode == PIPE:
                obs = self._via_pipe(fmt, data, options)
            elif mode == STDIN and path is not None:
                with open(path, "rb", buffering=0) as raw:
                    obs = self._check(fmt, Source(raw), options)
            else:
                obs = self._check(fmt, Source.from_bytes(data), options)
        except MemoryError:
            obs = Observed(MEMORY, "MemoryError", 2)
        except Exception as exc:  # a bug in the reference: a crash like any other
            obs = Observed(CRASH, f"internal error: {type(exc).__name__}: {exc}", 2)
        return Observed(obs.verdict, obs.detail, obs.exit_code, obs.stderr,
                        time.perf_counter() - start, mode)

    def _via_pipe(self, fmt: str, data: bytes, options: dict) -> Observed:
        from xenstream.reference.source import Source

        rfd, wfd = os.pipe()

        def feed() -> None:
            try:
                for piece in pipe_pieces(data):
                    os.write(wfd, piece)
                    time.sleep(PIPE_PAUSE)
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
            finally:
                os.close(wfd)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        raw = open(rfd, "rb", buffering=0)
        try:
            return self._check(fmt, Source(raw), options)
        finally:
            raw.close()
            writer.join()

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        cmd = ["python3", "-m", "xenstream", "verify", "--role", self.role_name, "-f", fmt,
               *option_words(options)]
        if mode == FILE:
            return shlex.join([*cmd, "-i", str(path)])
        return f"{shlex.join([*cmd, '-i', '0'])} < {shlex.quote(str(path))}"


def executable_problem(path: str) -> str | None:
    """Why ``path`` cannot be run, or None."""
    p = Path(path)
    if not p.exists():
        return f"{path}: no such file"
    if p.is_dir():
        return f"{path}: is a directory"
    if not os.access(p, os.X_OK):
        return f"{path}: not executable"
    return None


def modes_for(impl: Implementation, wanted: Iterable[str]) -> tuple[str, ...]:
    return tuple(m for m in wanted if m in impl.modes)


# --------------------------------------------------------------------------
# processes that live for a whole case (a daemon under test)
#
# run_process() above runs a program to its end.  A daemon (xenstored) is
# started, talked to, and ended by the case: start_case_process() starts it
# in its own session (so that killing its process group ends whatever it
# started), with the runner's limits, fds placed at the numbers it must
# find them at, and PR_SET_PDEATHSIG so that it dies with the process that
# started it even when that one is killed with no chance to clean up;
# end_case_process() ends the whole group and reaps it.

PR_SET_PDEATHSIG = 1


def _pdeathsig() -> Callable[[], None]:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) for the child (Linux), or a no-op."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start_case_process(argv: list[str], limits: Limits, *, env: dict | None = None,
                       place: dict[int, int] | None = None, output=None) -> subprocess.Popen:
    """Start ``argv`` for the length of a case.  ``place`` maps an fd number the
    child must have to an fd of ours; every other fd of ours is closed in the
    child.  stdin is /dev/null; stdout and stderr go to ``output`` (a file)."""
    place = dict(place or {})
    setup = _child_setup(limits.memory_mb)
    deathsig = _pdeathsig()
    parent = os.getpid()

    def child() -> None:
        deathsig()
        if os.getppid() != parent:  # the parent is already gone
            os._exit(127)
        setup()
        # first out of the way (a target may be a source's number), then in place
        moved = {target: fcntl.fcntl(src, fcntl.F_DUPFD, 256) for target, src in place.items()}
        for target, tmp in moved.items():
            os.dup2(tmp, target)
        keep = set(place)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in keep:
                try:
                    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
                except OSError:
                    pass

    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                            preexec_fn=child, start_new_session=True, close_fds=False, env=env)


def end_case_process(proc: subprocess.Popen) -> None:
    """Kill the process and everything in its process group, and reap it."""
    _kill_group(proc)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
        pass
