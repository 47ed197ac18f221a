"""The batch protocol: one testee process per worker, one request per case.

Starting a process per case costs a reader written in Python 50-100 ms and one
in C or Rust a millisecond or two, on every case, delivery mode and prefix.
With ``--impl-protocol=batch`` the runner starts the implementation once (per
pytest-xdist worker) as ``PROG --batch`` and writes one request per case on its
standard input, a JSON object on one line::

    {"id": "libxc/libxc.image_header.marker/bad-marker-1f2e3d4c", "format": "libxc",
     "path": "/tmp/xenstream-conformance-x1y2/run-7/stream.bin", "size": 160, "options": {}}

and reads one answer per case from its standard output, one line too::

    {"id": "libxc/libxc.image_header.marker/bad-marker-1f2e3d4c", "verdict": "reject",
     "message": "image header: marker is not 0xFFFFFFFFFFFFFFFF"}

``verdict`` is ``accept``, ``reject``, ``unsupported`` (the testee does not
read this format, or these options: a format refused on every stream is
skipped by the preflight, as a usage error is in the per-process protocol)
or ``error`` (it could not judge the stream: a crash of its own).  The
testee ends when its standard input ends.  docs/batch-protocol.md is the
specification, with a worked example; examples/batch/ holds two testees.

What the runner does with the process (:class:`BatchProgram`):

* a request the testee does not answer within ``--impl-timeout`` is a
  ``timeout``; a testee that dies while a request is open gets the verdict its
  end says (``signal (SIGSEGV)``, ``crash (exit 3)``, ``memory``; an exit 0 or 1
  without an answer is a ``crash``), and a line that is not an answer to the
  open request (not JSON, another id, no verdict) is a ``crash (protocol
  error: ...)``.  In each case the process (its group, and whatever it left
  behind: :mod:`.containment`) is killed and the next case starts a new one:
  the run goes on;
* what the testee writes on stderr while a request is open belongs to that
  case (its failure message shows it); more than ``--impl-output-limit`` on
  either stream is an ``output-flood``;
* a failing case is run again in a *new* testee process (:class:`BatchRunner`):
  a verdict that changes is ``flaky``, and the message says that the first run
  came after other cases in the same process (state kept between requests).

Transport is still tested per process (:meth:`BatchRunner.modes_for`): the
large streams go through every delivery mode, and one listed case in
:data:`~.runner.SAMPLE_EVERY` (stable, by its id) is also run per process in
one of the modes (``file``, ``stdin``, ``pipe``, ``fd``, ``socket``, chosen
by the id), as ``PROG -f FORMAT -i FILE|FD`` (verify-stream-v2's convention);
the Hypothesis properties' examples are batch requests only:
a verdict that differs between the batch request and a per-process delivery
is ``inconsistent``, as between two modes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import selectors
import shlex
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from . import containment
from .delivery import MODES
from .execute import (ACCEPT, CRASH, FLOOD, HARNESS, REJECT, TIMEOUT, Implementation, Limits,
                      Observed, Program, _ErrorLog, _spawn_problem,
                      absolute_words, classify, option_words)
from .judge import FLAKY, Judgement
from .runner import EVERY_MODE_SOURCES, Runner, shortened

#: The delivery mode of a batch request (the stream's path in a request).
BATCH = "batch"
#: The argument a testee is started with to speak the protocol.
BATCH_ARG = "--batch"
#: Answers a testee may give; ``unsupported`` and ``error`` are no verdict.
VERDICTS = ("accept", "reject", "unsupported", "error")
#: Detail of an Observed for an ``unsupported`` answer (the preflight reads it).
UNSUPPORTED = "unsupported"
#: How long a testee whose standard input was closed may take to end.
CLOSE_GRACE = 1.0
#: How long stderr is read after the testee ended (a child may hold it open).
EXIT_GRACE = 0.2
PROTOCOLS = ("process", "batch")


class ProtocolError(Exception):
    """The testee wrote something that is not an answer to the open request."""


def request_line(case_id: str, fmt: str, path: Path | str, size: int, options: dict | None) -> bytes:
    """One request, as the runner writes it (ASCII, one line, ``\\n``-terminated)."""
    return (json.dumps({"id": case_id, "format": fmt, "path": str(path), "size": size,
                        "options": dict(options or {})}, ensure_ascii=True) + "\n").encode()


def parse_answer(line: bytes, case_id: str) -> tuple[str, str]:
    """(verdict, message) of an answer line to the request ``case_id``."""
    text = line.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(text)
    except ValueError:
        raise ProtocolError(f"not a JSON object: {text[:80]!r}") from None
    if not isinstance(answer, dict):
        raise ProtocolError(f"not a JSON object: {text[:80]!r}")
    if answer.get("id") != case_id:
        raise ProtocolError(f"an answer for {str(answer.get('id'))[:80]!r}, not for the open "
                            f"request {case_id!r}")
    verdict = answer.get("verdict")
    if verdict not in VERDICTS:
        raise ProtocolError(f"verdict {str(verdict)[:40]!r} is none of {', '.join(VERDICTS)}")
    message = answer.get("message", "")
    return verdict, message if isinstance(message, str) else json.dumps(message)


class _SingleRun(Program):
    """The same testee, one process per run: ``CMD -f FORMAT [OPTIONS] -i FILE|FD``."""

    def __init__(self, words: list[str], limits: Limits, env: dict | None, name: str):
        super().__init__(path=words[0], limits=limits, env=env, name=name)
        self.words = list(words)

    def argv(self, fmt: str, where: str, options: dict | None = None) -> list[str]:
        return [*self.words, "-f", fmt, *option_words(options), "-i", where]


def _name_of(words: list[str]) -> str:
    """What to call a testee: its program, or the script an interpreter runs
    (``python3 testee.py`` is ``testee.py``)."""
    for w in words[1:]:
        if not w.startswith("-") and os.path.isfile(w):
            return os.path.basename(w)
    return os.path.basename(words[0])


class BatchProgram(Implementation):
    """A testee that speaks the batch protocol (see the module docstring).

    ``words`` is the command (``[PROG]``, or the words of ``--impl-cmd``): it is
    started as ``WORDS --batch`` and, for the per-process sample, run as
    ``WORDS -f FORMAT -i FILE|FD``.  One process at a time, started on the
    first request and after each one it had to be killed for.
    """

    needs_file = True
    modes = (BATCH, *MODES)

    def __init__(self, words: list[str], limits: Limits = Limits(), env: dict | None = None,
                 name: str | None = None):
        self.words = absolute_words(list(words))
        self.limits = limits
        self.env = env
        self.name = name or _name_of(self.words)
        self.single = _SingleRun(self.words, limits, env, self.name)
        self.case_id = ""            # the case the runner is on (set by BatchRunner)
        self._requests = 0
        self._proc: subprocess.Popen | None = None
        self._case: containment.CaseProcess | None = None
        self._home: Path | None = None
        self.starts = 0              # processes started (for the summary and the tests)
        self.served = 0              # requests answered by the current process

    # the process --------------------------------------------------------
    def _start(self, fmt: str) -> Observed | None:
        """Start the testee; an Observed when it cannot be started."""
        self._home = Path(tempfile.mkdtemp(prefix="xenstream-batch-"))
        argv = [*self.words, BATCH_ARG]
        try:
            self._case = containment.spawn(
                argv, memory_mb=self.limits.memory_mb, file_limit=self.limits.file_limit,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self._home, env=self.env, bufsize=0)
        except (OSError, subprocess.SubprocessError) as exc:
            containment.remove_tree(self._home)
            self._home = None
            verdict, detail = _spawn_problem(exc, argv, None)
            return Observed(verdict, detail, None, "", 0.0, BATCH, tuple(argv))
        proc = self._case.proc
        for f in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(f.fileno(), False)
        self._proc = proc
        self._out = b""
        self.starts += 1
        self.served = 0
        return None

    def stop(self, graceful: bool = False) -> None:
        """End the testee: its group, what it left behind, its folder.  With
        ``graceful``, its standard input is closed first and it gets
        :data:`CLOSE_GRACE` to end on its own (the end of a run)."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        with containment.signals_held():
            try:
                proc.stdin.close()
            except OSError:
                pass
            if graceful:
                try:
                    proc.wait(CLOSE_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            self._case.end()
            self._case = None
            if self._home is not None:
                containment.remove_tree(self._home)
                self._home = None

    close = stop

    # one request ---------------------------------------------------------
    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        if mode != BATCH:
            self.single.limits = self.limits  # the runner may have shortened the timeout
            return self.single.verify(fmt, data, path, mode, options)
        start = time.monotonic()
        if self._proc is None:
            problem = self._start(fmt)
            if problem is not None:
                return dataclasses.replace(problem, duration=time.monotonic() - start)
        self._requests += 1
        case_id = self.case_id or f"request-{self._requests}"
        line = request_line(case_id, fmt, path, len(data), options)
        argv = (*self.words, BATCH_ARG)
        try:
            verdict, detail, stderr, code, keep = self._exchange(line, case_id, start)
        except BaseException:
            self.stop()   # interrupted (SIGTERM, SIGINT): its state is unknown
            raise
        if not keep:
            self.stop()
        else:
            self.served += 1
            # what it started and left behind ends with the case; it lives on
            self._case.end_orphans()
        return Observed(verdict, detail, code, stderr, time.monotonic() - start, BATCH, argv)

    def _exchange(self, line: bytes, case_id: str, start: float):
        """Write the request, wait for the answer: (verdict, detail, stderr,
        exit code, whether the process can serve the next case)."""
        proc = self._proc
        deadline = start + self.limits.timeout
        err = _ErrorLog()
        total = 0
        pending = line
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        writing = False
        try:
            while True:
                if pending:
                    try:
                        n = os.write(proc.stdin.fileno(), pending)
                        pending = pending[n:]
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        pending = b""   # it is gone: its end says why, below
                if bool(pending) != writing:
                    if pending:
                        sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
                    else:
                        sel.unregister(proc.stdin)
                    writing = bool(pending)
                nl = self._out.find(b"\n")
                if nl >= 0:
                    answer, self._out = self._out[:nl], self._out[nl + 1:]
                    self._drain_err(proc, err)
                    try:
                        verdict, message = parse_answer(answer, case_id)
                    except ProtocolError as exc:
                        return CRASH, f"protocol error: {exc}", err.text(), None, False
                    if self._out.strip():
                        return (CRASH, "protocol error: more than one line answered one request",
                                err.text(), None, False)
                    text = err.text()
                    if message:
                        text = f"{text}\n{message}".strip() if text else message
                    if verdict == "accept":
                        return ACCEPT, "", text, None, True
                    if verdict == "reject":
                        return REJECT, "", text, None, True
                    what = message.strip().splitlines()[0][:160] if message.strip() else verdict
                    if verdict == "unsupported":
                        return CRASH, f"{UNSUPPORTED}: {what}", text, None, True
                    mem, mem_detail = classify(2, message.encode())
                    if mem == "memory":
                        return mem, mem_detail, text, None, True
                    return CRASH, f"error: {what}", text, None, True
                if proc.poll() is not None:
                    return self._ended(proc, err, sel, deadline)
                now = time.monotonic()
                if now >= deadline:
                    return TIMEOUT, f"after {self.limits.timeout:g} s", err.text(), None, False
                for key, _ in sel.select(min(deadline - now, 0.5)):
                    if key.data == "in":
                        continue   # written at the top of the loop
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fileobj)
                        if key.data == "out":   # no answer can come any more
                            return self._ended(proc, err, sel, deadline)
                        continue
                    total += len(chunk)
                    if key.data == "err":
                        err.add(chunk)
                    else:
                        self._out += chunk
                    if total > self.limits.output_limit or len(self._out) > self.limits.output_limit:
                        return (FLOOD, f"more than {self.limits.output_limit} octets of output",
                                err.text(), None, False)
        finally:
            sel.close()

    def _drain_err(self, proc, err: _ErrorLog) -> None:
        """What the testee wrote on stderr before its answer (already in the pipe)."""
        while True:
            try:
                chunk = os.read(proc.stderr.fileno(), 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            err.add(chunk)

    def _ended(self, proc, err: _ErrorLog, sel, deadline: float):
        """The testee ended (or closed its output) with a request open."""
        give_up = min(deadline, time.monotonic() + EXIT_GRACE)
        for key in list(sel.get_map().values()):
            if key.data == "in":
                sel.unregister(key.fileobj)
        watched = {k.fileobj for k in sel.get_map().values() if k.data in ("out", "err")}
        while watched and time.monotonic() < give_up:
            for key, _ in sel.select(max(0.0, give_up - time.monotonic())) or [(None, 0)]:
                if key is None:
                    watched.clear()   # nothing more within the grace
                    break
                if key.data == "in":
                    continue
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(key.fileobj)
                    watched.discard(key.fileobj)
                elif key.data == "err":
                    err.add(chunk)
        try:
            code = proc.wait(max(0.0, min(deadline - time.monotonic(), EXIT_GRACE)))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                return TIMEOUT, f"after {self.limits.timeout:g} s", err.text(), None, False
            return (CRASH, "closed its standard output with a request open", err.text(), None,
                    False)
        verdict, detail = classify(code, err.scanned())
        if verdict in (ACCEPT, REJECT):
            verdict, detail = CRASH, f"exit {code} without answering the request"
        return verdict, detail, err.text(), code, False

    # replay --------------------------------------------------------------
    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        if mode != BATCH:
            return self.single.replay(fmt, path, mode, options)
        line = request_line(self.case_id or "replay", fmt, path, path.stat().st_size
                            if path.exists() else 0, options).decode().rstrip("\n")
        return f"printf '%s\\n' {shlex.quote(line)} | {shlex.join([*self.words, BATCH_ARG])}"

    def describe(self) -> str:
        return f"{shlex.join(self.words)} {BATCH_ARG} (batch protocol)"


class BatchRunner(Runner):
    """A :class:`~.runner.Runner` for a :class:`BatchProgram`: every case by
    request; the transport sample and the large streams also per process; a
    failing case run again in a new process."""

    def modes_for(self, case_id: str, source: str | None = None) -> tuple[str, ...]:
        d = self.delivery
        if source in EVERY_MODE_SOURCES or d == "all":
            return (BATCH, *MODES)
        if d == "file":
            return (BATCH,)
        if d == "sample":
            if source is None:   # a Hypothesis example: the listed cases test the transport
                return (BATCH,)
            h = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "little")
            if h % self.sample_every:
                return (BATCH,)
            return (BATCH, MODES[(h // self.sample_every) % len(MODES)])
        return (BATCH, *(m for m in d if m != BATCH))

    def observe_one(self, fmt: str, data: bytes, mode: str, options: dict | None = None,
                    attempt: int = 1) -> Observed:
        """A batch request: the stream goes to one file of this runner's, replaced
        (not rewritten) for each request, so that a request costs no folder of
        its own (the testee's working directory is its own folder, for its
        whole life).  Per-process runs get a private folder each, as always."""
        if mode != BATCH:
            return super().observe_one(fmt, data, mode, options, attempt)
        try:
            path = self._stream_file(data)
            with self._limits_for_this_run() as short:
                seen = self.impl.verify(fmt, data, path, mode, options)
            seen = shortened(seen, short)
        except Exception as exc:  # noqa: BLE001 - the runner's failure, not the implementation's
            seen = Observed(HARNESS, f"{type(exc).__name__}: {exc}", mode=mode)
        return seen if attempt == 1 else dataclasses.replace(seen, attempt=attempt)

    def _stream_file(self, data: bytes) -> Path:
        """The request's stream file, rewritten in place: on ext4 a rewrite costs
        ~20 us where a new file renamed over the old one costs ~200 us and a
        folder per request ~1.7 ms.  A testee that replaced it (a link, a
        FIFO, a hard link to elsewhere) gets a new file."""
        if not self._workdir_intact():
            self._new_workdir(None if self._own_workdir else self.workdir)
        folder = self.workdir / "batch"
        if not folder.is_dir() or folder.is_symlink():
            if os.path.lexists(folder):
                containment.remove_tree(folder)
            folder.mkdir(mode=0o700)
        path = folder / "stream.bin"
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError:   # a link or something else it cannot open: start again
            fd = None
        if fd is not None:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                os.close(fd)
                fd = None
        if fd is None:
            if os.path.lexists(path):
                if os.path.isdir(path) and not os.path.islink(path):
                    containment.remove_tree(path)
                else:
                    os.unlink(path)
            fd = os.open(path, flags | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        return path

    def run_stream(self, case_id: str, fmt: str, data: bytes, **kw):
        self.impl.case_id = case_id
        try:
            return super().run_stream(case_id, fmt, data, **kw)
        finally:
            self.impl.case_id = ""

    def explain(self, run, fmt: str, data: bytes, **kw) -> None:
        self.impl.case_id = run.case_id   # the replay's request names the case
        try:
            super().explain(run, fmt, data, **kw)
        finally:
            self.impl.case_id = ""

    def probe(self, case):
        self.impl.case_id = case.id
        try:
            return super().probe(case)
        finally:
            self.impl.case_id = ""

    def check_again(self, observations: list[Observed], judgement: Judgement, again_fn):
        def fresh():
            self.impl.stop()
            return again_fn()
        observations, judgement = super().check_again(observations, judgement, fresh)
        if judgement.kind == FLAKY and any(o.mode == BATCH for o in observations):
            judgement = dataclasses.replace(judgement, reason=(
                "the verdict changed between two identical runs; the first batch request came "
                "after other cases in the same testee process, the second went to a new one "
                "(does it keep state between requests?)"))
        return observations, judgement

    def close(self) -> None:
        self.impl.stop(graceful=True)
        super().close()


def make_testee(impl: str, template: str | None, limits: Limits) -> BatchProgram:
    """The batch testee ``--impl=PROG`` or ``--impl-cmd='CMD ARGS'`` names
    (ValueError for a command it cannot use)."""
    if template is not None:
        words = shlex.split(template)
        if not words:
            raise ValueError("--impl-cmd: empty command")
        placeholders = [w for w in words if "{" in w and "}" in w]
        if placeholders:
            raise ValueError(f"--impl-cmd with --impl-protocol=batch is the testee's command "
                             f"without placeholders (it is started as CMD {BATCH_ARG}, and run "
                             f"as CMD -f FORMAT -i FILE|FD for the per-process sample); "
                             f"found {' '.join(placeholders)}")
        return BatchProgram(words, limits)
    if impl in ("builtin", "builtin-subprocess"):
        raise ValueError("--impl-protocol=batch needs a testee: --impl=PROG (started as PROG "
                         f"{BATCH_ARG}) or --impl-cmd='CMD ARGS'; examples/batch/ has two")
    return BatchProgram([str(Path(impl).absolute()) if os.sep in impl else impl], limits)

