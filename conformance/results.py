"""The results of one conformance run: ``results.json`` and ``report.md``.

``results.json`` holds the run's header (implementation, kind, role, formats,
sources) and every case: id, format, rule, family, source, expected, the
verdict required under the role, the verdict observed (per delivery mode
when they differ), the outcome (``pass``, ``fail``, ``xfail``, ``xpass``,
``reported``), the kind of failure, and the duration.  ``report.md``
summarises it per format and per rule family, and lists the failures.
``xenstream report`` (:mod:`.report_cmd`) merges several runs.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

OUTCOMES = ("pass", "fail", "xfail", "xpass", "reported", "skipped", "harness-error")
RESULTS_JSON, REPORT_MD = "results.json", "report.md"


@dataclass
class CaseResult:
    id: str
    format: str
    rule: str | None
    family: str
    source: str
    expected: str
    required: str | None
    observed: str
    outcome: str          # see OUTCOMES
    kind: str = ""        # wrong-verdict, crash, inconsistent, flaky, bad-output, output-differs,
                          # wrong-state, harness-error
    duration: float = 0.0
    known: str | None = None   # the known-failures entry that covers the case
    saved: str | None = None   # where the failing stream was saved
    #: a daemon's restored state: [{path, what, expected, restored, note?}] (wrong-state)
    state_diff: list | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        if d["state_diff"] is None:
            del d["state_diff"]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CaseResult":
        """ValueError when ``d`` is not a case of a results.json."""
        if not isinstance(d, dict):
            raise ValueError(f"a case is not an object: {d!r:.60}")
        names = cls.__dataclass_fields__
        missing = [k for k in ("id", "format", "outcome") if not isinstance(d.get(k), str)]
        if missing:
            raise ValueError(f"a case has no {', '.join(missing)}: {d!r:.60}")
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as exc:
            raise ValueError(f"a case lacks fields: {exc}") from None


@dataclass
class Run:
    implementation: str
    kind: str = "verifier"
    role: str = "strict"
    formats: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    cases: list[CaseResult] = field(default_factory=list)

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "cases"}
        d["summary"] = dict(Counter(c.outcome for c in self.cases))
        d["cases"] = [c.to_json() for c in sorted(self.cases, key=lambda c: c.id)]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Run":
        """ValueError when ``d`` is not a results.json."""
        if not isinstance(d, dict) or not isinstance(d.get("cases"), list):
            raise ValueError("not the results of a conformance run (an object with 'cases')")
        run = cls(implementation=d.get("implementation", "?"), kind=d.get("kind", "verifier"),
                  role=d.get("role", "strict"), formats=d.get("formats", []),
                  sources=d.get("sources", []), notes=d.get("notes", []),
                  started=d.get("started", ""))
        run.cases = [CaseResult.from_json(c) for c in d.get("cases", [])]
        return run

    @classmethod
    def load(cls, folder: Path | str) -> "Run":
        path = Path(folder)
        if path.is_dir():
            path = path / RESULTS_JSON
        return cls.from_json(json.loads(path.read_text()))

    def write(self, folder: Path | str) -> None:
        from xenstream.reference.outfile import write_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / RESULTS_JSON, json.dumps(self.to_json(), indent=1) + "\n")
        write_atomic(folder / REPORT_MD, render_markdown(self))


def _counts_row(label: str, cases: Iterable[CaseResult]) -> str:
    c = Counter(r.outcome for r in cases)
    kinds = Counter(r.kind for r in cases if r.outcome in ("fail", "xfail") and r.kind)
    total = sum(c.values())
    kind_text = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or ""
    return (f"| {label} | {total} | {c['pass']} | {c['fail'] + c['xpass']} | {c['xfail']} | "
            f"{c['reported']} | {kind_text} |")


def render_markdown(run: Run) -> str:
    head = "| {} | cases | pass | fail | known | reported | failures by kind |"
    rule = "|---|---:|---:|---:|---:|---:|---|"
    out = [
        f"# Conformance report: {run.implementation}",
        "",
        f"- kind: {run.kind}, role: {run.role}",
        f"- formats: {', '.join(run.formats) or '(all)'}; sources: {', '.join(run.sources)}",
        f"- started: {run.started}",
    ]
    out += [f"- note: {n}" for n in run.notes]
    harness = sum(c.outcome == "harness-error" for c in run.cases)
    if harness:
        out.append(f"- **{harness} harness error(s)**: the runner failed on these cases, not the "
                   "implementation; they have no verdict and are in no other column")
    out += ["", "## By format", "", head.format("format"), rule]
    by_format: dict[str, list[CaseResult]] = defaultdict(list)
    by_family: dict[str, list[CaseResult]] = defaultdict(list)
    for c in run.cases:
        by_format[c.format].append(c)
        by_family[c.family].append(c)
    for fmt in sorted(by_format):
        out.append(_counts_row(fmt, by_format[fmt]))
    out.append(_counts_row("**all**", run.cases))
    out += ["", "## By rule family", "", head.format("family"), rule]
    for fam in sorted(by_family):
        out.append(_counts_row(f"`{fam}`", by_family[fam]))
    failing = [c for c in sorted(run.cases, key=lambda c: c.id)
               if c.outcome in ("fail", "xfail", "xpass", "harness-error")]
    if failing:
        out += ["", "## Failures", "", "| case | outcome | kind | required | observed |",
                "|---|---|---|---|---|"]
        for c in failing:
            observed = c.observed.replace("|", "\\|")
            out.append(f"| `{c.id}` | {c.outcome} | {c.kind} | {c.required or 'any'} | {observed} |")
    diffs = [c for c in failing if c.state_diff]
    if diffs:
        out += ["", "## Restored state (`wrong-state`: path: what: expected, restored)", ""]
        for c in diffs:
            out.append(f"- `{c.id}`")
            for d in c.state_diff[:20]:
                note = f" ({d['note']})" if d.get("note") else ""
                out.append(f"  - `{d['path']}`: {d['what']}: expected {d['expected']}, "
                           f"restored {d['restored']}{note}")
            if len(c.state_diff) > 20:
                out.append(f"  - ... and {len(c.state_diff) - 20} more")
    reported = [c for c in run.cases if c.outcome == "reported"]
    if reported:
        out += ["", "## Reported (`either` rules: the spec is silent)", "",
                "| case | observed |", "|---|---|"]
        for c in sorted(reported, key=lambda c: c.id):
            out.append(f"| `{c.id}` | {c.observed} |")
    out.append("")
    return "\n".join(out)
