"""The results of one conformance run: ``results.json``, ``report.md`` and ``report.html``.

``results.json`` holds the run's header (implementation, kind, role, formats,
sources, where the failing streams are, the known-failures file and why it
does not describe the run, if it does not) and every case: id, format, rule,
rule family, source, expected, the verdict required under the role, the
verdict observed (per delivery mode when they differ), the outcome (``pass``,
``fail``, ``xfail``, ``xpass``, ``reported``), the kind of failure, the
duration and, for a failure, the spec section, the saved stream and the
command that replays it.  ``report.md`` summarises it per format, per source
and per rule family, and lists the failures; ``report.html`` is the matrix
of rules and verdicts (:mod:`.html_report`).  ``xenstream report``
(:mod:`.report_cmd`) merges several runs.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

OUTCOMES = ("pass", "fail", "xfail", "xpass", "reported", "skipped", "harness-error")
RESULTS_JSON, REPORT_MD, REPORT_HTML = "results.json", "report.md", "report.html"


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
    section: str = ""          # the spec document and section of the rule
    replay: str = ""           # one shell command that reproduces a failure
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


#: The properties each case carries in ``--junitxml`` output (CI systems show
#: them per test): name -> CaseResult field.  ``xenstream`` itself holds the
#: whole result as JSON.
JUNIT_PROPERTIES = (("xenstream.case", "id"), ("xenstream.rule", "rule"),
                    ("xenstream.section", "section"), ("xenstream.expected", "expected"),
                    ("xenstream.required", "required"), ("xenstream.verdict", "observed"),
                    ("xenstream.outcome", "outcome"), ("xenstream.kind", "kind"),
                    ("xenstream.replay", "replay"))


def junit_properties(result: CaseResult) -> list[tuple[str, str]]:
    """(name, value) of a case for the JUnit XML report: its rule id, spec
    section, expected and observed verdict, outcome and failure kind; a
    field with no value (a valid stream has no rule) is left out."""
    out = []
    for name, attr in JUNIT_PROPERTIES:
        value = getattr(result, attr)
        if name == "xenstream.required" and value is None and result.expected:
            value = "any"   # an either rule: any verdict will do
        if value not in (None, ""):
            out.append((name, str(value)))
    return out


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
    failures_dir: str | None = None            # where failing streams were saved
    known_failures: str | None = None          # the --known-failures file
    known_failures_problems: list[str] = field(default_factory=list)  # why it does not fit the run

    def label(self, used: set[str], hint: str) -> str:
        """The run's name in a table of runs: the implementation, its kind and role unless a
        strict verifier, then ``[hint]`` (its folder) where ``used`` already has that name."""
        label = self.implementation
        if self.kind != "verifier" or self.role != "strict":
            label += f" ({self.kind}, {self.role})"
        if label in used:
            label = f"{label} [{hint}]"
        used.add(label)
        return label

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
                  started=d.get("started", ""), failures_dir=d.get("failures_dir"),
                  known_failures=d.get("known_failures"),
                  known_failures_problems=d.get("known_failures_problems", []))
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
        from .html_report import render_html

        write_atomic(folder / REPORT_HTML, render_html([(str(folder), self)],
                                                       title="Conformance report"))


_NOT_FAMILIES = (".valid", ".prefix", ".strategies")


def family_of(c: CaseResult) -> str:
    """The rule family of a case, "" when it breaks no rule (valid streams,
    Hypothesis properties); results written by older versions named those
    ``FORMAT.valid``, ``.prefix`` and ``.strategies``."""
    if not c.family.endswith(_NOT_FAMILIES):
        return c.family
    if c.source == "prefixes" and c.rule:
        return c.rule.rsplit(".", 1)[0]
    return ""


def _counts_row(label: str, cases: Iterable[CaseResult]) -> str:
    c = Counter(r.outcome for r in cases)
    kinds = Counter(r.kind for r in cases if r.outcome in ("fail", "xfail") and r.kind)
    total = sum(c.values())
    kind_text = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or ""
    return (f"| {label} | {total} | {c['pass']} | {c['fail'] + c['xpass']} | {c['xfail']} | "
            f"{c['reported']} | {kind_text} |")


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


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
    if run.failures_dir:
        out.append(f"- failing streams: `{run.failures_dir}`")
    if run.known_failures:
        out.append(f"- known failures: `{run.known_failures}`")
    out += [f"- note: {n}" for n in run.notes]
    harness = sum(c.outcome == "harness-error" for c in run.cases)
    if harness:
        out.append(f"- **{harness} harness error(s)**: the runner failed on these cases, not the "
                   "implementation; they have no verdict and are in no other column")
    out += ["", "Outcomes: `pass`; `fail` (the case's verdict or a crash); `known` (failed, and "
            "listed in the known-failures file); `reported` (an `either` rule: any verdict "
            "conforms, so it is counted, never failed; a crash on it still fails); "
            "`harness-error` (the runner failed on the case, not the implementation)."]
    if run.known_failures_problems:
        out += ["", "## Known-failures file: does not describe this run", "",
                "Each line is a failure of the run; `--update-known-failures` rewrites the file.", ""]
        out += [f"- {p}" for p in run.known_failures_problems]
    by_format: dict[str, list[CaseResult]] = defaultdict(list)
    by_source: dict[str, list[CaseResult]] = defaultdict(list)
    by_family: dict[tuple[str, str], list[CaseResult]] = defaultdict(list)
    for c in run.cases:
        by_format[c.format].append(c)
        by_source[c.source].append(c)
        fam = family_of(c)
        if fam:
            by_family[(c.format, fam)].append(c)
    out += ["", "## By format", "", head.format("format"), rule]
    for fmt in sorted(by_format):
        out.append(_counts_row(fmt, by_format[fmt]))
    out.append(_counts_row("**all**", run.cases))
    out += ["", "## By source", "", head.format("source"), rule]
    for src in sorted(by_source):
        out.append(_counts_row(src, by_source[src]))
    out += ["", "## By rule family", "",
            "Cases that break a rule (truncations under the rule the reference refuses them "
            "by), by the format of the stream and the rule's family; `docs/rules.md` lists "
            "the rules.", "",
            "| format | rule family | cases | pass | fail | known | reported | failures by kind |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for fmt, fam in sorted(by_family):
        out.append(_counts_row(f"{fmt} | `{fam}`", by_family[(fmt, fam)]))
    failing = [c for c in sorted(run.cases, key=lambda c: c.id)
               if c.outcome in ("fail", "xfail", "xpass", "harness-error")]
    if failing:
        out += ["", "## Failures", "",
                "| case | outcome | kind | required | observed | spec section | replay |",
                "|---|---|---|---|---|---|---|"]
        for c in failing:
            replay = f"`{_cell(c.replay)}`" if c.replay else ""
            out.append(f"| `{c.id}` | {c.outcome} | {c.kind} | {c.required or 'any'} | "
                       f"{_cell(c.observed)} | {_cell(c.section)} | {replay} |")
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
                "| case | observed | spec section |", "|---|---|---|"]
        for c in sorted(reported, key=lambda c: c.id):
            out.append(f"| `{c.id}` | {_cell(c.observed)} | {_cell(c.section)} |")
    out.append("")
    return "\n".join(out)
