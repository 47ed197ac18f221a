"""Running an implementation on one stream and turning what it did into a verdict.

An implementation under test is either an external program (the
``verify-stream-v2`` convention: ``PROG -f FORMAT -i FILE|FD``, or a command
template with ``{format}`` and ``{path}`` or ``{fd}`` placeholders) or the
built-in reference verifier run in-process.  Whatever it does, one run ends
as an :class:`Observed` verdict:

``accept`` / ``reject``
    exit status 0 / 1: the implementation judged the stream;
``crash``
    any other exit status (``verify-stream-v2``'s "Script Error" is 2);
``signal``
    killed by a signal it did not get from us (SIGSEGV, SIGABRT, ...);
``timeout``
    still running after the per-case timeout (killed, with everything it
    started: see :mod:`.containment`);
``memory``
    a memory error (see :func:`classify`);
``output-flood``
    wrote more than the output limit to stdout and stderr (killed), or a
    file larger than the file limit (``RLIMIT_FSIZE``: SIGXFSZ);
``not-executable``
    the program could not be started at all (no such file, not executable,
    a ``#!`` interpreter that does not exist, not a program);
``harness-error``
    the runner itself failed (it could not write the stream, start a process
    for a reason that is not the program's, ...): not the implementation's
    fault, and never counted as its failure.

Only ``accept`` and ``reject`` are verdicts on the stream; everything else is a
failure of the implementation whatever the case expected (but
``harness-error``, which is the runner's).

How the stream reaches the program (file, stdin, pipe, fd, socket) is
:mod:`.delivery`'s; each run gets a private working directory from the
runner (the stream's folder), which is the program's current directory.
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import containment
from .delivery import (FD, FD_OFFSET, FILE, MODES, PIPE, SOCKET, STDIN, STREAM_FD, Feed, Feeder,
                       feed_blocking, pipe_pieces)

ACCEPT, REJECT = "accept", "reject"
CRASH, SIGNAL, TIMEOUT, MEMORY, FLOOD, NOEXEC, HARNESS = (
    "crash", "signal", "timeout", "memory", "output-flood", "not-executable", "harness-error")
JUDGED = frozenset({ACCEPT, REJECT})

#: Octets of stderr kept for the failure message (head and tail).
STDERR_KEEP = 4096
#: How long output may stay open after the program exited (a child holds it).
EXIT_GRACE = 0.2
POLL_INTERVAL = 0.05

_SANITIZER_RE = re.compile(
    rb"(?:ERROR|WARNING): (?:Address|Leak|Memory|Thread|HWAddress)Sanitizer:?[^\n]*")
#: Allocation failures and heap-corruption reports: a memory error whatever the
#: non-zero exit status, refusals (exit 1) included.  Python's MemoryError,
#: C++'s std::bad_alloc, strerror(ENOMEM) from perror() and friends, a C
#: allocator call named with its failure, the usual wordings of xmalloc-style
#: wrappers, and glibc's own heap diagnostics ("free(): invalid pointer").
_MEMORY_RE = re.compile(
    rb"^(?:MemoryError\b[^\n]*"
    rb"|[^\n]*std::bad_alloc[^\n]*"
    rb"|[^\n]*Cannot allocate memory[^\n]*"
    rb"|[^\n]*\b(?:[cm]alloc|realloc|reallocarray|xmalloc|strdup|posix_memalign|aligned_alloc"
    rb"|operator new)\b[^\n]*\b(?:[Ff]ail(?:ed|ure|s)?|NULL)\b[^\n]*"
    rb"|[^\n]*\b(?:[Ff]ailed to allocate|[Aa]llocation failed|[Uu]nable to allocate|"
    rb"[Cc]ould not allocate|[Mm]emory allocation failed|memory exhausted)\b[^\n]*"
    rb"|[a-z_]+\(\): (?:[^\n]*\b(?:corrupted|invalid|unaligned|misaligned|double free)\b)[^\n]*"
    rb"|double free or corruption[^\n]*|corrupted size vs\. prev_size[^\n]*)$",
    re.MULTILINE)
#: strerror(EFBIG): a write past the file limit (RLIMIT_FSIZE) by a program that
#: ignores SIGXFSZ (Python does), with any non-zero status.
_FILE_LIMIT_RE = re.compile(rb"^[^\n]*File too large[^\n]*$", re.MULTILINE)
#: Allocation failures that a program may also print when it refuses (exit 1) on purpose.
_MEMORY_WEAK_RE = re.compile(
    rb"^[^\n]*(?:[Oo]ut of memory|\bENOMEM\b|[Ii]nsufficient memory)[^\n]*$", re.MULTILINE)


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0            # seconds per run
    memory_mb: int = 1024           # address-space limit (RLIMIT_AS); 0: none
    output_limit: int = 1 << 20     # octets of stdout + stderr before the run is killed
    file_limit: int = 256 << 20     # largest file a run may write (RLIMIT_FSIZE); 0: none


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
    attempt: int = 1                # 2 for the run that checks a failure again

    @property
    def judged(self) -> bool:
        return self.verdict in JUDGED

    @property
    def label(self) -> str:
        return f"{self.verdict} ({self.detail})" if self.detail else self.verdict


def classify(returncode: int, stderr: bytes) -> tuple[str, str]:
    """Verdict and detail of a program that ended on its own.

    ``memory`` is recognised from what the program says, since an exit status
    does not tell: a sanitizer report (whatever the status); an allocation
    failure or a heap-corruption report (see ``_MEMORY_RE``) with any non-zero
    status, a refusal (1) included, because a reader that fails to allocate
    has tried to allocate what the stream claims; weaker wordings ("out of
    memory", "ENOMEM") only with a status that is not a refusal (2 or more, or
    a signal).  A C program that dereferences the NULL its malloc returned,
    without a word, dies of SIGSEGV like any other bad pointer and stays a
    ``signal``: nothing outside the process tells the two apart.
    """
    m = _SANITIZER_RE.search(stderr)
    if m:
        return MEMORY, m.group(0).decode("utf-8", "replace").strip()[:200]
    if returncode == 0:
        return ACCEPT, ""
    m = _MEMORY_RE.search(stderr)
    if m:
        return MEMORY, m.group(0).decode("utf-8", "replace").strip()[:200]
    if returncode == -signal.SIGXFSZ or _FILE_LIMIT_RE.search(stderr):
        return FLOOD, "a file larger than the file limit (SIGXFSZ or EFBIG)"
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
            for regex in (_MEMORY_RE, _MEMORY_WEAK_RE, _FILE_LIMIT_RE):
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


class ChildIO:
    """The I/O of one running child, until it ends or is killed.

    Feeds its stream (``pipe`` and ``socket`` modes, through a
    :class:`~.delivery.Feeder`), reads its stdout and stderr (stderr kept in an
    :class:`_ErrorLog`; both counted against the output limit), and enforces
    the deadline.  :meth:`run` returns why the child must be killed
    (``(verdict, detail)``), or None when it ended on its own.
    """

    def __init__(self, proc: subprocess.Popen, limits: Limits, start: float,
                 feeder: Feeder | None = None):
        self.proc = proc
        self.limits = limits
        self.deadline = start + limits.timeout
        self.feeder = feeder
        self.err = _ErrorLog()
        self.out_total = 0
        self._sel = selectors.DefaultSelector()
        self._readers = 0
        for f, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
            if f is not None:
                self._sel.register(f, selectors.EVENT_READ, tag)
                self._readers += 1
        self._writing = False
        self._exited_at: float | None = None

    def run(self) -> tuple[str, str] | None:
        try:
            killed = self._loop()
            if killed is None:
                killed = self._wait_exit()
            return killed
        finally:
            if self.feeder is not None:
                self._set_writing(False)
                self.feeder.finish()
            self._sel.close()

    # ------------------------------------------------------------------
    def _feeding(self) -> bool:
        return self.feeder is not None and not self.feeder.done

    def _set_writing(self, on: bool) -> None:
        if on != self._writing:
            if on:
                self._sel.register(self.feeder.fd, selectors.EVENT_WRITE, "in")
            else:
                self._sel.unregister(self.feeder.fd)
            self._writing = on

    def _loop(self) -> tuple[str, str] | None:
        feeder = self.feeder
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                return TIMEOUT, f"after {self.limits.timeout:g} s"
            if self._feeding():
                feeder.tick(now)
                self._set_writing(feeder.wants_write())
            if self.proc.poll() is not None:
                if self._feeding():          # it exited without reading it all
                    self._set_writing(False)
                    feeder.finish()
                if self._readers == 0:
                    return None
                if self._exited_at is None:
                    self._exited_at = now
                elif now - self._exited_at > EXIT_GRACE:
                    return None              # a child of it holds its output open
            elif self._readers == 0 and not self._feeding():
                return None
            wait = min(self.deadline - now, POLL_INTERVAL)
            if self._feeding() and not feeder.wants_write():
                wake = feeder.wake_at()
                if wake is not None:
                    wait = min(wait, max(0.0, wake - now))
            for key, _ in self._sel.select(wait):
                if key.data == "in":
                    feeder.write()
                    if not feeder.wants_write():
                        self._set_writing(False)
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    self._sel.unregister(key.fileobj)
                    self._readers -= 1
                    continue
                self.out_total += len(chunk)
                if key.data == "err":
                    self.err.add(chunk)
                if self.out_total > self.limits.output_limit:
                    return FLOOD, f"more than {self.limits.output_limit} octets of output"

    def _wait_exit(self) -> tuple[str, str] | None:
        remaining = max(0.0, self.deadline - time.monotonic())
        try:
            self.proc.wait(remaining)
        except subprocess.TimeoutExpired:
            return TIMEOUT, f"after {self.limits.timeout:g} s (output closed)"
        return None


def _spawn_problem(exc: BaseException, argv: list[str], cwd) -> tuple[str, str]:
    """Whether a failed start is the program's (not-executable) or ours."""
    if isinstance(exc, OSError) and exc.filename is not None and cwd is not None \
            and str(exc.filename) == str(cwd):
        return HARNESS, f"cannot enter the run's working directory {cwd}: {exc.strerror}"
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) == argv[0]:
        return NOEXEC, _why_not_executable(exc, argv[0], cwd)
    if isinstance(exc, OSError):
        return HARNESS, f"cannot start {argv[0]}: {exc.strerror or exc}"
    return HARNESS, f"cannot start {argv[0]}: {type(exc).__name__}: {exc}"


def _why_not_executable(exc: OSError, program: str, cwd) -> str:
    import errno as _errno

    path = program
    if os.sep not in program:
        import shutil

        path = shutil.which(program) or program
    elif cwd is not None and not os.path.isabs(program):
        path = os.path.join(cwd, program)
    if exc.errno == _errno.ENOENT and os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                first = f.readline(256)
        except OSError:
            first = b""
        if first.startswith(b"#!"):
            interp = first[2:].strip().split(b" ")[0].decode("utf-8", "replace")
            return f"{program}: its interpreter {interp} cannot be run (No such file or directory)"
        return f"{program}: a library or loader it needs is missing (No such file or directory)"
    if exc.errno == _errno.ENOEXEC:
        return f"{program}: not a program this system can run (no #! line?)"
    return f"{exc.strerror or exc}: {program}"


def run_process(argv: list[str], limits: Limits, *, mode: str = FILE, env: dict | None = None,
                cwd: str | os.PathLike | None = None, feed: Feed | None = None,
                capture: bool = True, attempt: int = 1) -> Observed:
    """Run ``argv`` under ``limits`` and say what it came to.

    The stream arrives as ``feed`` says (:class:`~.delivery.Feed`); without
    one, stdin is /dev/null.  ``cwd`` is the program's working directory.
    With ``capture`` false its stdout and stderr are ours (replaying a case)
    and are not judged.

    Whatever the program starts ends with the run (:mod:`.containment`).
    """
    start = time.monotonic()

    def harness(detail: str) -> Observed:
        return Observed(HARNESS, detail, None, "", time.monotonic() - start, mode, tuple(argv), attempt)

    stdin: object = subprocess.DEVNULL
    place: dict[int, int] = {}
    ours: list = []            # our ends and copies, closed once the child has its own
    feeder_fd = None
    try:
        if feed is not None:
            if feed.mode == STDIN:
                f = open(feed.path, "rb")
                ours.append(f)
                stdin = f
            elif feed.mode in (PIPE, SOCKET):
                if feed.mode == PIPE:
                    r, feeder_fd = os.pipe()
                else:
                    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                    feeder_fd, r = a.detach(), b.detach()
                ours.append(r)
                if feed.fd == 0:
                    stdin = r
                else:
                    place[feed.fd] = r
            elif feed.mode == FD:
                tmp = tempfile.TemporaryFile(dir=cwd)
                ours.append(tmp)
                tmp.write(bytes(FD_OFFSET))
                tmp.write(feed.data or b"")
                tmp.flush()
                tmp.seek(FD_OFFSET)
                place[feed.fd] = tmp.fileno()
    except OSError as exc:
        _close_all(ours, feeder_fd)
        what = feed.path if feed.mode == STDIN else "its stream"
        return harness(f"cannot prepare {what} for the {feed.mode} delivery: {exc.strerror or exc}")

    pipe = subprocess.PIPE if capture else None
    try:
        child = containment.spawn(argv, memory_mb=limits.memory_mb, file_limit=limits.file_limit,
                                  place=place, stdin=stdin, stdout=pipe, stderr=pipe, cwd=cwd,
                                  env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        _close_all(ours, feeder_fd)
        verdict, detail = _spawn_problem(exc, argv, cwd)
        return Observed(verdict, detail, None, "", time.monotonic() - start, mode, tuple(argv), attempt)
    proc = child.proc
    _close_all(ours, None)
    io = None
    killed: tuple[str, str] | None = None
    try:
        feeder = None
        if feeder_fd is not None:
            feeder = Feeder(feeder_fd, feed.pieces(), feed.mode)
            feeder_fd = None
        io = ChildIO(proc, limits, start, feeder)
        killed = io.run()
    finally:
        if feeder_fd is not None:
            os.close(feeder_fd)
        # its group: the program when it must be killed, what it left anywhere anyway
        child.end()
    duration = time.monotonic() - start
    stderr = io.err.text() if capture else ""
    if killed is not None:
        verdict, detail = killed
    elif capture:
        verdict, detail = classify(proc.returncode, io.err.scanned())
    else:
        verdict, detail = classify(proc.returncode, b"")
    return Observed(verdict, detail, proc.returncode, stderr, duration, mode, tuple(argv), attempt)


def _close_all(items, fd) -> None:
    for item in items:
        try:
            item.close() if hasattr(item, "close") else os.close(item)
        except OSError:
            pass
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


# --------------------------------------------------------------------------
# implementations


class Implementation:
    """Something that verifies a stream and says accept or reject."""

    name: str = "?"
    #: True when :meth:`verify` needs the stream in a file.
    needs_file: bool = True
    #: Delivery modes this implementation can be given streams in.
    modes: tuple[str, ...] = MODES
    #: The limits of each run (None: it runs in this process, unlimited).
    limits: Limits | None = None

    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        """``options``: format options (a legacy image's width, guest, ...)."""
        raise NotImplementedError

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        """One shell command that gives the saved stream to the implementation again."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def unavailable(self) -> str | None:
        """Why it cannot run on this machine at all (one line), or None."""
        return None

    def close(self) -> None:
        """Release what it holds for the whole run."""


class Program(Implementation):
    """An external program: the verify-stream-v2 convention or a command template.

    The convention (``PROG -f FORMAT -i FILE|FD``) takes every delivery mode:
    ``-i PATH`` (file), ``-i 0`` (stdin, pipe), ``-i 5`` (fd, socket).  In a
    template, ``{format}`` is the format, ``{path}`` the stream's path
    (``/dev/stdin`` in the stdin and pipe modes) and ``{fd}`` a descriptor
    number (0 in the stdin and pipe modes); the fd and socket modes need
    ``{fd}``.  A template with neither is given the stream on stdin (its
    ``file`` mode is ``stdin``).  The program runs in the folder of the
    stream's file, the run's private working directory.
    """

    def __init__(self, path: str | None = None, template: str | None = None,
                 limits: Limits = Limits(), env: dict | None = None, name: str | None = None):
        if (path is None) == (template is None):
            raise ValueError("give a program path or a command template")
        self.path = absolute_path(path) if path is not None else None
        self.template = template
        self.limits = limits
        self.env = env
        if template is not None:
            self.words = absolute_words(shlex.split(template))
            self.name = name or os.path.basename(self.words[0]) if self.words else "?"
            self.takes_path = any("{path}" in w for w in self.words)
            self.takes_fd = any("{fd}" in w for w in self.words)
            if self.takes_fd:
                self.modes = ((FILE,) if self.takes_path else ()) + (STDIN, PIPE, FD, SOCKET)
            elif self.takes_path:
                self.modes = (FILE, STDIN, PIPE)
            else:
                self.modes = (FILE, PIPE)
        else:
            self.name = name or os.path.basename(path)
            self.takes_path = True
            self.takes_fd = True
            self.modes = MODES

    def argv(self, fmt: str, where: str, options: dict | None = None) -> list[str]:
        if self.template is None:
            return [self.path, "-f", fmt, "-i", where]
        fd = where if where.isdigit() else (where[len("/dev/fd/"):] if where.startswith("/dev/fd/")
                                            else "0")
        path = where if not where.isdigit() else ("/dev/stdin" if where == "0" else f"/dev/fd/{where}")
        out: list[str] = []
        for w in self.words:
            if w == "{options}":
                out += option_words(options)
            else:
                out.append(w.replace("{format}", fmt).replace("{path}", path).replace("{fd}", fd))
        return out

    def _stdin_word(self) -> str:
        return "0" if self.template is None or self.takes_fd else "/dev/stdin"

    def _where(self, mode: str, path: Path | None) -> str:
        if mode == FILE and self.takes_path:
            return str(path)
        if mode in (FD, SOCKET):
            return str(STREAM_FD)
        return self._stdin_word()

    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        argv = self.argv(fmt, self._where(mode, path), options)
        cwd = path.parent if path is not None else None
        if mode == FILE and not self.takes_path:
            mode_feed = Feed(STDIN, path=path)   # a template that reads stdin only
        else:
            mode_feed = Feed.for_mode(mode, data, path, stream_marks(fmt, data, options)
                                      if mode in (PIPE, SOCKET) else ())
        return run_process(argv, self.limits, mode=mode, env=self.env, cwd=cwd, feed=mode_feed)

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        cmd = shlex.join(self.argv(fmt, self._where(mode, path), options))
        if mode == FILE and self.takes_path:
            return cmd
        if mode in (STDIN, FILE):
            return f"{cmd} < {shlex.quote(str(path))}"
        return deliver_command(mode, fmt, path, cmd)

    def describe(self) -> str:
        return self.template if self.template is not None else self.path


def absolute_path(word: str) -> str:
    """A program's path made absolute when it names a file relative to the
    current directory (the program runs in a private directory, not here)."""
    if os.sep in word and not os.path.isabs(word) and "{" not in word and os.path.exists(word):
        return os.path.abspath(word)
    return word


def absolute_words(words: list[str]) -> list[str]:
    """The words of a command template with relative paths to existing files
    made absolute (see :func:`absolute_path`)."""
    return [absolute_path(w) for w in words]


def deliver_command(mode: str, fmt: str, path: Path, cmd: str) -> str:
    """A shell command that gives ``cmd`` the saved stream in ``mode`` the way
    the runner did (``python3 -m xenstream.conformance.deliver``)."""
    return (f"python3 -m xenstream.conformance.deliver {mode} -f {shlex.quote(fmt)} "
            f"{shlex.quote(str(path))} -- {cmd}")


_MARKS: dict[tuple, tuple[int, ...]] = {}


def stream_marks(fmt: str, data: bytes, options: dict | None = None) -> tuple[int, ...]:
    """Offsets where the reference reader starts or ends a structure of
    ``data`` (cached: a stream is often delivered several times)."""
    import hashlib

    key = (fmt, hashlib.sha256(data).digest(), tuple(sorted((options or {}).items())))
    marks = _MARKS.get(key)
    if marks is None:
        from .cases import boundaries

        marks = tuple(boundaries(fmt, data, options))
        if len(_MARKS) > 256:
            _MARKS.clear()
        _MARKS[key] = marks
    return marks


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
            if mode in (PIPE, SOCKET):
                obs = self._piecewise(fmt, data, options, mode)
            elif mode == STDIN and path is not None:
                with open(path, "rb", buffering=0) as raw:
                    obs = self._check(fmt, Source(raw), options)
            elif mode == FD:
                with tempfile.TemporaryFile() as tmp:
                    tmp.write(bytes(FD_OFFSET) + data)
                    tmp.flush()
                    with open(os.dup(tmp.fileno()), "rb", buffering=0) as raw:
                        raw.seek(FD_OFFSET)
                        obs = self._check(fmt, Source(raw), options)
            else:
                obs = self._check(fmt, Source.from_bytes(data), options)
        except MemoryError:
            obs = Observed(MEMORY, "MemoryError", 2)
        except Exception as exc:  # a bug in the reference: a crash like any other
            obs = Observed(CRASH, f"internal error: {type(exc).__name__}: {exc}", 2)
        return Observed(obs.verdict, obs.detail, obs.exit_code, obs.stderr,
                        time.perf_counter() - start, mode)

    def _piecewise(self, fmt: str, data: bytes, options: dict, mode: str) -> Observed:
        """The stream through a pipe or a socket, written piece by piece by a
        thread the way :class:`~.delivery.Feeder` does for a program."""
        from xenstream.reference.source import Source

        if mode == PIPE:
            rfd, wfd = os.pipe()
        else:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            wfd, rfd = a.detach(), b.detach()
        stop = threading.Event()
        pieces = pipe_pieces(data, marks=stream_marks(fmt, data, options))
        # the reader is this process's own thread, already waiting when a
        # piece is drained: no pause needed for it to ask again
        writer = threading.Thread(target=feed_blocking, args=(wfd, pieces, mode),
                                  kwargs={"should_stop": stop.is_set, "pause": 0.0}, daemon=True)
        writer.start()
        raw = open(rfd, "rb", buffering=0)
        try:
            return self._check(fmt, Source(raw), options)
        finally:
            stop.set()
            raw.close()
            writer.join()

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        cmd = ["python3", "-m", "xenstream", "verify", "--role", self.role_name, "-f", fmt,
               *option_words(options)]
        if mode == FILE:
            return shlex.join([*cmd, "-i", str(path)])
        if mode == STDIN:
            return f"{shlex.join([*cmd, '-i', '0'])} < {shlex.quote(str(path))}"
        where = "0" if mode == PIPE else str(STREAM_FD)
        return deliver_command(mode, fmt, path, shlex.join([*cmd, "-i", where]))


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


