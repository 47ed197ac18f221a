"""libxenguest's xc_domain_restore as an implementation under test.

``pytest conformance --impl-kind libxenguest --impl=.cache/xen-tools/4.17``:
``--impl`` is a release directory made by ``scripts/fetch-xen-tools`` (or
its ``env`` file, or a release name looked up in ``$XEN_TOOLS_DIR``); the
shim and the driver are built for it with ``cc`` (:mod:`.build`).  Each libxc
case is restored into a fake domain of the stream's guest type (from its
domain header; HVM when that is unreadable), with Remus semantics when the
stream has a CHECKPOINT record, as a toolstack restoring a checkpointed
stream would.  What happened becomes one of

``accept``                the library said "Restore successful" and the
                          restored domain matches the stream (:mod:`.state`);
``wrong-state``           it accepted, but the domain differs (with a diff);
``reject``                it refused: the detail is its first error message,
                          or ``fake hypervisor: CHECK`` when the refusal came
                          from our fake hypervisor's checks, not Xen's code;
``abort``                 a failed assertion (Debian builds with them on),
                          with the assertion and function;
``signal``                killed by a signal, with the first frame of the
                          library's backtrace;
``timeout`` (and the other verdicts of :mod:`..execute`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import struct
import sys
import tempfile
from pathlib import Path

from ..delivery import FD, FILE, MODES, PIPE, SOCKET, STREAM_FD, Feed
from ..execute import ACCEPT, REJECT, SIGNAL, Implementation, Limits, Observed, run_process, \
    stream_marks
from ..judge import FAIL, PASS, WRONG_STATE, Judgement, judge
from ..runner import Runner
from ..native import DEFAULT_RELEASE, Unavailable
from .build import Built, build

ABORT = "abort"
FAKE_PREFIX = "fake hypervisor: "

_REFUSED = re.compile(r"^fakexen: refused: (\S+): (.*)$", re.MULTILINE)
_UNHANDLED = re.compile(r"^fakexen: unhandled: (.*)$", re.MULTILINE)
_XC_ERROR = re.compile(r"^xc: error: (.*?)(?:: Internal error)?$", re.MULTILINE)
_ASSERT = re.compile(r"^[^\n]*?: ([^\n:]+): Assertion `(.*)' failed\.$", re.MULTILINE)
_FRAME = re.compile(r"^(\S+?)\((\S*?)\)\[0x[0-9a-f]+\]$", re.MULTILINE)

NOT_SUPPORTED = ("libxenguest restores the libxc stream; the libxl and xl layers around it are "
                 "read by libxl, which is not run here")


def not_supported(fmt: str) -> str:
    """Why cases of ``fmt`` are skipped (one line)."""
    if fmt in ("libxl", "xl"):
        return NOT_SUPPORTED
    return "not a libxc stream: libxenguest's xc_domain_restore reads libxc streams only"


def guest_of(data: bytes) -> str:
    """``pv`` or ``hvm`` from the domain header (little-endian, as x86 writes)."""
    if len(data) >= 28:
        t = struct.unpack_from("<I", data, 24)[0]
        if t == 1:
            return "pv"
    return "hvm"


def has_checkpoint(data: bytes) -> bool:
    """Whether a CHECKPOINT record appears before END (framing only)."""
    at = 40
    while len(data) - at >= 8:
        rtype, length = struct.unpack_from("<II", data, at)
        if rtype == 0x0E:
            return True
        if rtype == 0:
            return False
        at += 8 + length + (-length % 8)
    return False


def describe_failure(verdict: str, stderr: str, returncode: int | None) -> tuple[str, str]:
    """Verdict and detail from the driver's stderr."""
    if verdict == REJECT or (verdict == "crash" and returncode == 1):
        m = _REFUSED.search(stderr)
        if m:
            return REJECT, f"{FAKE_PREFIX}{m.group(1)}"
        m = _UNHANDLED.search(stderr)
        if m:
            return "crash", f"fake hypervisor does not emulate: {m.group(1)}"
        m = _XC_ERROR.search(stderr)
        return REJECT, (m.group(1).strip()[:160] if m else "")
    if verdict == SIGNAL:
        m = _ASSERT.search(stderr)
        if m:
            return ABORT, f"assertion `{m.group(2)}' failed in {m.group(1).strip()}"
        frame = first_frame(stderr)
        return SIGNAL, f"{returncode_name(returncode)}{' in ' + frame if frame else ''}"
    return verdict, ""


def returncode_name(rc: int | None) -> str:
    import signal as sig
    try:
        return sig.Signals(-rc).name if rc is not None and rc < 0 else str(rc)
    except ValueError:
        return f"signal {-rc}"


def first_frame(stderr: str) -> str:
    """The first backtrace frame outside the shim and the C library."""
    for m in _FRAME.finditer(stderr):
        obj, where = m.group(1), m.group(2)
        name = os.path.basename(obj)
        if name.startswith(("fake_hypercalls", "libc.so", "ld-linux")) or "xenstream-restore" in name:
            continue
        return f"{name}({where})"
    return ""


def stream_words(mode: str, path: Path | None) -> list[str]:
    """How the driver is told where its stream is in ``mode``: the file, ``-``
    (standard input: ``stdin``, ``pipe``) or ``--fd 5`` (an inherited
    descriptor: ``fd``, a file at an offset; ``socket``), as libxl gives its
    save helper the save file or the migration socket."""
    if mode == FILE:
        return [str(path)]
    if mode in (FD, SOCKET):
        return ["--fd", str(STREAM_FD)]
    return ["-"]


def feed(mode: str, data: bytes, path: Path | None) -> Feed | None:
    """The stream as the runner delivers it in ``mode`` (pieces cut at its records)."""
    return Feed.for_mode(mode, data, path,
                         stream_marks("libxc", data) if mode in (PIPE, SOCKET) else ())


class Libxenguest(Implementation):
    """The driver under the shim, for one release; every delivery mode."""

    needs_file = True
    modes = MODES

    def __init__(self, where: str | None, limits: Limits = Limits(), *, check_state: bool = True):
        self.where = where
        # the fake guest's memory is a sparse memfd as large as its physical
        # address space: RLIMIT_FSIZE would end a restore at the first high page
        self.limits = dataclasses.replace(limits, file_limit=0)
        self.check_state = check_state
        self.built: Built | None = None
        self.problem: str | None = None
        try:
            self.built = build(where)
            self.name = f"libxenguest {self.built.release.name}"
        except Unavailable as exc:
            self.problem = str(exc)
            self.name = f"libxenguest ({where or DEFAULT_RELEASE})"
        self.state_dir = Path(tempfile.mkdtemp(prefix="xenstream-libxenguest-"))
        self.diffs: dict[str, list[str]] = {}

    def unavailable(self) -> str | None:
        return self.problem

    def describe(self) -> str:
        if self.built is None:
            return f"{self.name}: {self.problem}"
        return f"{self.built.driver} under {self.built.shim}"

    def env(self, guest: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "XENSTREAM_FAKEXEN_"))}
        env.update(LD_PRELOAD=str(self.built.shim), XENSTREAM_FAKEXEN_GUEST=guest)
        return env

    def argv(self, where: list[str], data: bytes, state: Path | None = None,
             verbose: bool = False) -> list[str]:
        out = [str(self.built.driver)]
        if verbose:
            out.append("-v")
        if has_checkpoint(data):
            out.append("--remus")
        if state is not None:
            out += ["--state", str(state)]
        return out + where

    def verify(self, fmt: str, data: bytes, path: Path | None, mode: str,
               options: dict | None = None) -> Observed:
        if self.built is None:
            return Observed("not-executable", self.problem or "not built", None, "", 0.0, mode)
        guest = guest_of(data)
        state = self.state_dir / f"state-{os.getpid()}-{mode}"
        state.unlink(missing_ok=True)
        argv = self.argv(stream_words(mode, path), data, state if self.check_state else None)
        obs = run_process(argv, self.limits, mode=mode, env=self.env(guest),
                          cwd=path.parent if path is not None else None,
                          feed=feed(mode, data, path))
        if obs.verdict == ACCEPT and self.check_state:
            diff = self.state_diff(data, state)
            state.unlink(missing_ok=True)
            if diff:
                return Observed(WRONG_STATE, diff[0][:160], obs.exit_code,
                                obs.stderr + "\nrestored state differs from the stream:\n  " +
                                "\n  ".join(diff), obs.duration, mode, obs.argv)
            return obs
        state.unlink(missing_ok=True)
        if obs.verdict in (ACCEPT, "timeout", "memory", "output-flood", "not-executable"):
            return obs
        verdict, detail = describe_failure(obs.verdict, obs.stderr, obs.exit_code)
        return Observed(verdict, detail or obs.detail, obs.exit_code, obs.stderr, obs.duration,
                        mode, obs.argv)

    def state_diff(self, data: bytes, state: Path) -> list[str]:
        from xenstream.reference import libxc
        from xenstream.reference.errors import StreamError

        from .state import StateError, compare, parse

        try:
            stream = libxc.decode(data)
        except StreamError:
            return []     # accepted what the reference cannot decode: a verdict matter, not a state one
        try:
            restored = parse(state.read_bytes())
        except (OSError, StateError) as exc:
            return [f"no readable state from the shim: {exc}"]
        return compare(stream, restored)

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        rel = self.built.release.directory if self.built else (self.where or DEFAULT_RELEASE)
        return shlex.join([sys.executable, "-m", "xenstream.conformance.libxenguest",
                           "--release", str(rel), *(["--delivery", mode] if mode != FILE else []),
                           "-v", str(path)])

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.state_dir, ignore_errors=True)


def judge_restore(expected: str, role: str, observations) -> Judgement:
    """:func:`..judge.judge`, with ``wrong-state`` an accept whose domain is wrong."""
    as_accept = [Observed(ACCEPT, o.detail, o.exit_code, o.stderr, o.duration, o.mode, o.argv)
                 if o.verdict == WRONG_STATE else o for o in observations]
    verdict = judge(expected, role, as_accept)
    wrong = [o for o in observations if o.verdict == WRONG_STATE]
    if wrong and verdict.status == PASS or (wrong and verdict.status == "reported"):
        from ..judge import observed_summary

        return Judgement(FAIL, WRONG_STATE, verdict.required, observed_summary(observations),
                         f"restored, but the domain differs from the stream: {wrong[0].detail}")
    if verdict.failed:
        from ..judge import observed_summary

        return Judgement(verdict.status, verdict.kind, verdict.required,
                         observed_summary(observations), verdict.reason)
    return verdict


class LibxenguestRunner(Runner):
    """Runs libxc cases through :class:`Libxenguest`; ``wrong-state`` judged as such."""

    def verdict_of(self, expected, observations) -> Judgement:
        return judge_restore(expected, self.role, observations)
