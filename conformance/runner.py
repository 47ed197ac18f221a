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

import hashlib
import re
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .cases import Case, citation, failure_path
from .execute import FILE, MODES, STDIN, Implementation, Observed
from .judge import FAIL, PASS, Judgement, failure_message, judge
from .known_failures import KnownFailures

SAMPLE_EVERY = 8
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
    def outcome(self) -> str:
        """pass, fail, xfail (failed as listed), xpass (listed but passed), reported."""
        if self.known is not None:
            return "xfail" if self.failed else ("xpass" if self.judgement.status == PASS else
                                               self.judgement.status)
        return self.judgement.status


@dataclass
class Runner:
    impl: Implementation
    role: str = "strict"
    delivery: str | tuple[str, ...] = "sample"
    failures_dir: Path = Path("failures")
    workdir: Path | None = None
    known: KnownFailures = field(default_factory=KnownFailures)
    sample_every: int = SAMPLE_EVERY

    def __post_init__(self) -> None:
        self.failures_dir = Path(self.failures_dir)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="xenstream-conformance-"))
            self._own_workdir = True
        else:
            self.workdir = Path(self.workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._own_workdir = False

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------
    def modes_for(self, case_id: str) -> tuple[str, ...]:
        d = self.delivery
        if d == "file":
            wanted: Sequence[str] = (FILE,)
        elif d == "all":
            wanted = MODES
        elif d == "sample":
            h = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "little")
            wanted = MODES if h % self.sample_every == 0 else (FILE,)
        else:
            wanted = d
        got = tuple(m for m in wanted if m in self.impl.modes)
        return got or (self.impl.modes[0],)

    def _stream_file(self, data: bytes) -> Path:
        path = self.workdir / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path

    def observe(self, fmt: str, data: bytes, modes: Sequence[str],
                options: dict | None = None) -> tuple[list[Observed], Path | None]:
        path = None
        if self.impl.needs_file or STDIN in modes:
            path = self._stream_file(data)
        if options:
            return [self.impl.verify(fmt, data, path, m, options) for m in modes], path
        return [self.impl.verify(fmt, data, path, m) for m in modes], path

    def probe(self, case: Case) -> tuple[Observed, list[str]]:
        """Run ``case`` once in the implementation's first delivery mode, unjudged
        (the preflight, :mod:`.preflight`); also the words that name the stream."""
        observations, path = self.observe(case.format, case.data, self.impl.modes[:1],
                                          case.options)
        return observations[0], [str(path)] if path else []

    def save(self, case_id: str, data: bytes) -> Path:
        dest = failure_path(self.failures_dir, case_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest

    def run_case(self, case: Case, modes: Sequence[str] | None = None) -> CaseRun:
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
        observations, _ = self.observe(fmt, data, modes, options)
        verdict = judge(expected, self.role, observations)
        run = CaseRun(case_id, verdict, observations, sum(o.duration for o in observations))
        run.known = self.known.match(case_id)
        if run.known is not None:
            run.known_reason = self.known.entries[run.known]
        if verdict.status == FAIL and save:
            self.explain(run, fmt, data, expected=expected, rule=rule, description=description,
                         options=options)
        return run

    def explain(self, run: CaseRun, fmt: str, data: bytes, *, expected: str, rule: str | None,
                description: str = "", options: dict | None = None) -> None:
        """Save a failing stream and write the failure message into ``run``."""
        run.saved = self.save(run.case_id, data)
        verdict = run.judgement
        observations = run.observations
        failing_mode = next((o.mode for o in observations if not o.judged), None) or \
            next((o.mode for o in observations if o.verdict != verdict.required),
                 observations[0].mode)
        run.replay = self.impl.replay(fmt, run.saved, failing_mode, options)
        run.message = failure_message(
            case_id=run.case_id, citation=citation(rule), description=description,
            expected=expected, role=self.role, judgement=verdict, observations=observations,
            saved=str(run.saved), replay=run.replay)


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
