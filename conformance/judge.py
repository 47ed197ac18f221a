"""Judging what an implementation did with a case.

The verdict a case asks for depends on its expectation and the role the
implementation plays (``--impl-role``):

==========  ===========  ============
expected    strict       restore
==========  ===========  ============
accept      accept       accept
reject      reject       reject
writer      reject       accept
either      (reported)   (reported)
==========  ===========  ============

A case fails in one of these ways, each reported as its own kind:

``wrong-verdict``
    accepted what it must refuse, or refused what it must accept;
``crash``
    any run ended in a crash, a signal, a timeout, a memory error, an output
    flood or could not start (whatever the case expected: no stream excuses it);
``inconsistent``
    the verdict changed with the delivery mode (file, stdin, pipe, fd, socket)
    and stayed the same when the case was run again;
``flaky``
    the verdict changed between two identical runs (a failing case is always
    run a second time, except when it only timed out);
``bad-output`` / ``output-differs``
    (converters) the converted stream fails the reference verifier, or differs
    from the reference converter's;
``wrong-state``
    (daemons, ``--impl-kind xenstored``) it accepted the stream but the state
    it restored differs from what the stream says.

``either`` cases never fail on their verdict: they are ``reported``.

``harness-error`` is not a failure of the implementation: the runner itself
failed on the case (it could not write the stream, start the program, ...).
It is counted on its own, fails the run, and is never a known failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .delivery import describe as describe_mode
from .execute import ACCEPT, HARNESS, REJECT, Observed

PASS, FAIL, REPORTED = "pass", "fail", "reported"
WRONG, CRASHED, INCONSISTENT, BAD_OUTPUT, DIFFERS, FLAKY, HARNESS_ERROR, WRONG_STATE = (
    "wrong-verdict", "crash", "inconsistent", "bad-output", "output-differs", "flaky",
    "harness-error", "wrong-state")


def required_verdict(expected: str, role: str) -> str | None:
    """``accept``, ``reject`` or None (any verdict will do)."""
    if expected == "accept":
        return ACCEPT
    if expected == "reject":
        return REJECT
    if expected == "writer":
        return REJECT if role == "strict" else ACCEPT
    if expected == "either":
        return None
    raise ValueError(f"unknown expectation {expected!r}")


@dataclass(frozen=True)
class Judgement:
    status: str            # pass, fail, reported
    kind: str              # "" when passed, else one of the kinds above
    required: str | None   # accept, reject or None
    observed: str          # what happened, all modes in one line
    reason: str = ""       # one line saying what is wrong

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def observed_summary(observations: Sequence[Observed]) -> str:
    labels = [o.label for o in observations]
    if len(set(labels)) <= 1:
        return labels[0] if labels else "(not run)"
    return ", ".join(f"{_run_name(o)}: {o.label}" for o in observations)


def _run_name(o: Observed) -> str:
    return o.mode if o.attempt == 1 else f"{o.mode} (run {o.attempt})"


def judge(expected: str, role: str, observations: Sequence[Observed]) -> Judgement:
    need = required_verdict(expected, role)
    seen = observed_summary(observations)
    harness = [o for o in observations if o.verdict == HARNESS]
    if harness:
        return Judgement(FAIL, HARNESS_ERROR, need, seen,
                         f"the runner failed ({harness[0].mode}): {harness[0].detail}")
    broken = [o for o in observations if not o.judged]
    if broken:
        o = broken[0]
        return Judgement(FAIL, CRASHED, need, seen,
                         f"{o.label} when given the stream by {o.mode}")
    verdicts = {o.verdict for o in observations}
    if len(verdicts) > 1:
        odd = [o for o in observations if o.verdict != observations[0].verdict]
        return Judgement(FAIL, INCONSISTENT, need, seen,
                         "the verdict depends on how the stream is delivered "
                         f"({odd[0].mode}: {describe_mode(odd[0].mode)})")
    verdict = observations[0].verdict
    if need is None:
        return Judgement(REPORTED, "", need, seen)
    if verdict != need:
        what = "accepted a stream it must refuse" if verdict == ACCEPT else \
            "refused a stream it must accept"
        return Judgement(FAIL, WRONG, need, seen, what)
    return Judgement(PASS, "", need, seen)


def describe_expectation(expected: str, role: str) -> str:
    need = required_verdict(expected, role)
    if need is None:
        return f"{expected} (either verdict; reported, never failed)"
    if expected in ("accept", "reject"):
        return need
    return f"{need} ({expected} rule, role {role})"


def failure_message(*, case_id: str, citation: str, description: str, expected: str, role: str,
                    judgement: Judgement, observations: Sequence[Observed],
                    saved: str | None, replay: str | None, extra: str = "") -> str:
    """The text pytest shows for a failed case."""
    lines = [
        f"{case_id}: {judgement.kind}: {judgement.reason}",
        f"  rule:      {citation}",
    ]
    if description:
        lines.append(f"  case:      {description}")
    lines += [
        f"  expected:  {describe_expectation(expected, role)}",
        f"  observed:  {judgement.observed}",
    ]
    if saved:
        lines.append(f"  stream:    {saved}")
    if replay:
        lines.append(f"  replay:    {replay}")
    if extra:
        lines.append(extra)
    shown = set()
    for o in observations:
        text = o.stderr.strip()
        if not text or text in shown:
            continue
        shown.add(text)
        lines.append(f"  stderr ({_run_name(o)}, {o.label}):")
        lines += ["    " + line for line in text.splitlines()[-40:]]
    return "\n".join(lines)
