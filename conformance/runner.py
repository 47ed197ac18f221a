"""One case, start to end: deliver the stream, judge, save it when it fails.

:class:`Runner` is what the pytest plugin drives, and what a script can drive
without pytest::

    runner = Runner(Program("./verify-stream-v2"), role="strict")
    for case in collect().cases:
        result = runner.run_case(case)
        if result.failed:
            print(result.message)

Delivery modes per case (``--delivery``): ``file`` (every case by path),
``all`` (every case in every mode), ``sample`` (the default: every mode for
about one case in :data:`SAMPLE_EVERY`, chosen by the case's hash so the
choice is stable; by path for the rest), or a comma-separated list of modes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import containment
from .cases import Case, citation, failure_path
from .execute import FILE, HARNESS, MODES, STDIN, TIMEOUT, Implementation, Observed
from .judge import FAIL, FLAKY, HARNESS_ERROR, PASS, Judgement, failure_message, judge
from .known_failures import KnownFailures

SAMPLE_EVERY = 8
#: Sources whose cases are delivered in every mode whatever ``--delivery``
#: says (the large streams exist to be delivered every way).
EVERY_MODE_SOURCES = frozenset({"large"})
#: Cases in a row that time out in every mode they are given before the
#: runner shortens the timeout (an implementation that hangs on everything).
HANG_STREAK = 8


def shortened(seen: Observed, short: float | None) -> Observed:
    """``seen`` of a run given the ``short`` timeout after a streak of hangs: a timeout says so."""
    if short is None or seen.verdict != TIMEOUT:
        return seen
    return dataclasses.replace(seen, detail=(
        f"after {short:g} s, shortened: every run of the {HANG_STREAK} cases before timed out"))
#: The shortened timeout: a tenth of ``--impl-timeout``, at least this.
HANG_TIMEOUT = 0.5
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Exit)\b")
DELIVERY_CHOICES = ("sample", "file", "all")


def parse_delivery(text: str) -> str | tuple[str, ...]:
    text = text.strip()
    if text in DELIVERY_CHOICES:
        return text
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"--delivery: {text!r}: give one of {', '.join(DELIVERY_CHOICES)} "
                         f"or modes from {', '.join(MODES)}")
    return modes


@dataclass
class CaseRun:
    case_id: str
    judgement: Judgement
    observations: list[Observed]
    duration: float                  # the implementation's time, all modes
    saved: Path | None = None
    message: str = ""
    known: str | None = None         # the known-failures entry covering the case
    known_reason: str | None = None
    replay: str = ""                 # one shell command that reproduces the failure
    diff: list | None = None         # a daemon's restored state: differences (wrong-state)

    @property
    def failed(self) -> bool:
        return self.judgement.failed

    @property
    def harness_error(self) -> bool:
        return self.judgement.kind == HARNESS_ERROR

    @property
    def outcome(self) -> str:
        """pass, fail, xfail (failed as listed), xpass (listed but passed),
        reported, harness-error (the runner failed: no verdict at all)."""
        if self.harness_error:
            return HARNESS_ERROR
        if self.known is not None:
            return "xfail" if self.failed else ("xpass" if self.judgement.status == PASS else
                                               self.judgement.status)
        return self.judgement.status


@dataclass
class Runner:
    """Runs cases against ``impl``.

    Each run (each delivery mode, each attempt) gets a private working
    directory under ``workdir`` holding its own copy of the stream, removed
    when the run ends: whatever the implementation writes there, deletes or
    breaks stays with that run.  A case that fails is run again (``rerun``):
    a verdict that changes between the two identical runs is ``flaky``.  An
    exception of the runner's own is a ``harness-error`` result, never a
    traceback.
    """

    impl: Implementation
    role: str = "strict"
    delivery: str | tuple[str, ...] = "sample"
    failures_dir: Path = Path("failures")
    workdir: Path | None = None
    known: KnownFailures = field(default_factory=KnownFailures)
    sample_every: int = SAMPLE_EVERY
    rerun: bool = True

    def __post_init__(self) -> None:
        self.failures_dir = Path(self.failures_dir)
        self._own_workdir = self.workdir is None
        self._new_workdir(self.workdir)
        self._runs = 0
        self.timeout_streak = 0

    def _new_workdir(self, wanted: Path | None) -> None:
        if wanted is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="xenstream-conformance-"))
        else:
            self.workdir = Path(wanted)
            self.workdir.mkdir(parents=True, exist_ok=True)
        st = os.lstat(self.workdir)
        self._identity = (st.st_dev, st.st_ino)

    def _workdir_intact(self) -> bool:
        try:
            st = os.lstat(self.workdir)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def close(self) -> None:
        self.impl.close()
        if self._own_workdir and self._workdir_intact():
            containment.remove_tree(self.workdir)

    def private_dir(self) -> Path:
        """A fresh, empty folder for one run (the implementation's working directory)."""
        if not self._workdir_intact():
            # a testee removed or replaced the runner's folder: start another
            # (never follow what it put in its place)
            self._new_workdir(None if self._own_workdir else self.workdir)
        self._runs += 1
        folder = self.workdir / f"run-{self._runs}"
        if os.path.lexists(folder):
            containment.remove_tree(folder)
        folder.mkdir(mode=0o700)
        return folder

    # ------------------------------------------------------------------
    def modes_for(self, case_id: str, source: str | None = None) -> tuple[str, ...]:
        d = self.delivery
        if source in EVERY_MODE_SOURCES:
            wanted: Sequence[str] = MODES
        elif d == "file":
            wanted = (FILE,)
        elif d == "all":
            wanted = MODES
        elif d == "sample":
            h = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "little")
            wanted = MODES if h % self.sample_every == 0 else (FILE,)
        else:
            wanted = d
        got = tuple(m for m in wanted if m in self.impl.modes)
        return got or (self.impl.modes[0],)

    @property
    def hanging(self) -> bool:
        """True while the implementation has timed out on every run of the
        last :data:`HANG_STREAK` cases: the timeout is then shortened."""
        return self.timeout_streak >= HANG_STREAK

    def _short_timeout(self, timeout: float) -> float:
        return min(timeout, max(HANG_TIMEOUT, timeout / 10))

    @contextlib.contextmanager
    def _limits_for_this_run(self):
        limits = self.impl.limits
        if not self.hanging or limits is None:
            yield None
            return
        short = self._short_timeout(limits.timeout)
        self.impl.limits = dataclasses.replace(limits, timeout=short)
        try:
            yield short
        finally:
            self.impl.limits = limits

    def _note_hangs(self, observations: Sequence[Observed]) -> None:
        if observations and all(o.verdict == TIMEOUT for o in observations):
            self.timeout_streak += 1
        elif any(o.verdict not in (TIMEOUT, HARNESS) for o in observations):
            self.timeout_streak = 0

    def observe_one(self, fmt: str, data: bytes, mode: str, options: dict | None = None,
                    attempt: int = 1) -> Observed:
        """One run in a private directory; the runner's own failures are a
        ``harness-error`` observation."""
        folder = None
        try:
            path = None
            if self.impl.needs_file or mode == STDIN:
                folder = self.private_dir()
                path = folder / "stream.bin"
                path.write_bytes(data)
            with self._limits_for_this_run() as short:
                if options:
                    seen = self.impl.verify(fmt, data, path, mode, options)
                else:
                    seen = self.impl.verify(fmt, data, path, mode)
            seen = shortened(seen, short)
        except Exception as exc:  # noqa: BLE001 - the runner's failure, not the implementation's
            seen = Observed(HARNESS, f"{type(exc).__name__}: {exc}", mode=mode)
        finally:
            if folder is not None:
                containment.remove_tree(folder)
        if attempt != 1:
            seen = dataclasses.replace(seen, attempt=attempt)
        return seen

    def observe(self, fmt: str, data: bytes, modes: Sequence[str],
                options: dict | None = None, attempt: int = 1) -> list[Observed]:
        out: list[Observed] = []
        for mode in modes:
            out.append(self.observe_one(fmt, data, mode, options, attempt))
            if self.hanging and out[-1].verdict == TIMEOUT:
                break   # it hangs on everything: one timeout says enough
        return out

    def check_again(self, observations: list[Observed], judgement: Judgement, again_fn
                    ) -> tuple[list[Observed], Judgement]:
        """Run a failing case again: a verdict that changes is ``flaky``.
        Not for harness errors, nor for failures that are all timeouts (a
        second run would cost the whole timeout again)."""
        if not self.rerun or judgement.status != FAIL or judgement.kind == HARNESS_ERROR:
            return observations, judgement
        broken = [o for o in observations if o.verdict != judgement.required]
        if broken and all(o.verdict == TIMEOUT for o in broken):
            return observations, judgement
        again = again_fn()
        changed = [(a.mode, a.verdict, b.verdict) for a, b in zip(observations, again)
                   if a.verdict != b.verdict]
        if not changed or any(b.verdict == HARNESS for b in again):
            return observations, judgement
        seen = "; ".join(f"{mode}: {first}, then {second}" for mode, first, second in changed)
        return observations + list(again), Judgement(
            FAIL, FLAKY, judgement.required, seen,
            "the verdict changed between two identical runs")

    def probe(self, case: Case) -> tuple[Observed, list[str]]:
        """Run ``case`` once in the implementation's first delivery mode, unjudged
        (the preflight, :mod:`.preflight`); also the words of its command line
        that name files (the stream's private path differs from run to run)."""
        observations = self.observe(case.format, case.data, self.impl.modes[:1], case.options)
        seen = observations[0]
        return seen, [w for w in seen.argv if os.sep in w]

    def save(self, case_id: str, data: bytes) -> Path:
        from xenstream.reference.outfile import write_atomic

        dest = failure_path(self.failures_dir, case_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, data)
        return dest

    def run_case(self, case: Case, modes: Sequence[str] | None = None) -> CaseRun:
        modes = tuple(modes) if modes else self.modes_for(case.id, case.source)
        return self.run_stream(case.id, case.format, case.data, expected=case.expected,
                               rule=case.rule, description=case.description, modes=modes,
                               options=case.options)

    def run_stream(self, case_id: str, fmt: str, data: bytes, *, expected: str,
                   rule: str | None, description: str = "",
                   modes: Sequence[str] | None = None, save: bool = True,
                   options: dict | None = None) -> CaseRun:
        """Run and judge one stream; a failure is saved and explained unless
        ``save`` is false (Hypothesis saves only the shrunk stream: :meth:`explain`)."""
        modes = tuple(modes) if modes else self.modes_for(case_id)
        observations = self.observe(fmt, data, modes, options)
        verdict = self.verdict_of(expected, observations)
        observations, verdict = self.check_again(
            observations, verdict,
            lambda: self.observe(fmt, data, [o.mode for o in observations], options, attempt=2))
        self._note_hangs(observations)
        run = CaseRun(case_id, verdict, observations, sum(o.duration for o in observations))
        run.known = self.known.match(case_id)
        if run.known is not None:
            run.known_reason = self.known.entries[run.known]
        if verdict.status == FAIL and save:
            self.explain(run, fmt, data, expected=expected, rule=rule, description=description,
                         options=options)
        return run

    def verdict_of(self, expected: str, observations: Sequence[Observed]) -> Judgement:
        """What the runs of a case that asks ``expected`` come to."""
        return judge(expected, self.role, observations)

    def explain(self, run: CaseRun, fmt: str, data: bytes, *, expected: str, rule: str | None,
                description: str = "", options: dict | None = None) -> None:
        """Save a failing stream and write the failure message into ``run``."""
        extra = ""
        try:
            run.saved = self.save(run.case_id, data)
        except OSError as exc:
            run.saved = None
            extra = f"  (the stream could not be saved: {exc.strerror or exc})"
        verdict = run.judgement
        observations = run.observations
        failing_mode = next((o.mode for o in observations if not o.judged), None) or \
            next((o.mode for o in observations if o.verdict != verdict.required),
                 observations[0].mode)
        replay = None
        if run.saved is not None and not run.harness_error:
            replay = self.impl.replay(fmt, run.saved, failing_mode, options)
        run.replay = replay or ""
        run.message = failure_message(
            case_id=run.case_id, citation=citation(rule), description=description,
            expected=expected, role=self.role, judgement=verdict, observations=observations,
            saved=str(run.saved) if run.saved else None, replay=replay, extra=extra)


def default_reason(run: CaseRun) -> str:
    """The reason written for a failing case new to a known-failures file."""
    j = run.judgement
    first = ""
    for o in run.observations:
        lines = [ln.strip() for ln in o.stderr.splitlines() if ln.strip()]
        if lines:
            # the exception line of a traceback says more than a closing remark
            errors = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
            first = (errors or lines)[-1][:120]
            break
    text = f"{j.kind}: required {j.required or 'any'}, observed {j.observed}"
    return f"{text}; {first}" if first else text
