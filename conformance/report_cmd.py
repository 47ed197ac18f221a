"""``xenstream report DIR...``: compare conformance runs side by side.

Each DIR is a ``--report`` folder of ``pytest conformance`` (or its
``results.json``).  The table has one column per run and one row per rule
family (``--by family``, the default: the cases that break a rule, valid
streams and Hypothesis properties left out), format (``--by format``),
source (``--by source``) or case (``--by case``, like JSONTestSuite's full
results), so that several
implementations, or one implementation before and after a fix, can be read
at a glance.  Cells of families and formats say ``passed/judged`` and count
crashes; cells of cases give the outcome and the observed verdict.  With
``--html``, one self-contained page: the matrix of rules and runs
(:mod:`.html_report`).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from .results import CaseResult, Run, family_of

#: Marks used in ``--by case`` cells.
MARKS = {"pass": "ok", "fail": "FAIL", "xfail": "known", "xpass": "XPASS",
         "reported": "·", "skipped": "skip"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR",
                        help="report folders (pytest conformance --report DIR) or results.json files")
    parser.add_argument("--by", choices=("family", "format", "source", "case"), default="family",
                        help="rows of the table (default: family)")
    parser.add_argument("--only-differences", action="store_true",
                        help="leave out rows where every run has the same outcome")
    parser.add_argument("--html", action="store_true",
                        help="write one self-contained HTML page instead: the matrix of rules "
                             "(by format and spec section) and runs, coloured by verdict, each "
                             "cell listing its cases")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the table here, not stdout")



def _cell(cases: list[CaseResult]) -> str:
    if not cases:
        return ""
    judged = [c for c in cases if c.outcome not in ("reported", "skipped", "harness-error")]
    passed = sum(c.outcome == "pass" for c in judged)
    crashes = sum(c.kind == "crash" for c in cases)
    harness = sum(c.outcome == "harness-error" for c in cases)
    text = f"{passed}/{len(judged)}"
    if crashes:
        text += f", {crashes} crash"
    if harness:
        text += f", {harness} harness-error"
    reported = len(cases) - len(judged)
    if reported:
        text += f", {reported} rep"
    return text


def table(runs: list[tuple[str, Run]], by: str = "family", only_differences: bool = False) -> str:
    used: set[str] = set()
    labels = [run.label(used, Path(folder).name) for folder, run in runs]
    rows: dict[str, list[list[CaseResult]]] = defaultdict(lambda: [[] for _ in runs])
    for i, (_, run) in enumerate(runs):
        for c in run.cases:
            if by == "family":
                key = family_of(c)
                if not key:
                    continue  # breaks no rule: see --by format or --by source
            else:
                key = {"format": c.format, "source": c.source, "case": c.id}[by]
            rows[key][i].append(c)
    out = [f"| {by} | " + " | ".join(labels) + " |",
           "|---|" + "---|" * len(labels)]
    for key in sorted(rows):
        cells = rows[key]
        if by == "case":
            texts = [(f"{MARKS.get(c[0].outcome, c[0].outcome)} {c[0].observed}" if c else "")
                     for c in cells]
            outcomes = {c[0].outcome if c else None for c in cells}
        else:
            texts = [_cell(c) for c in cells]
            outcomes = set(texts)
        if only_differences and len(outcomes) <= 1:
            continue
        out.append(f"| `{key}` | " + " | ".join(t.replace("|", "\\|") for t in texts) + " |")
    totals = [_cell(run.cases) for _, run in runs]
    out.append("| **all** | " + " | ".join(totals) + " |")
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    from xenstream.reference.errors import UsageError
    from xenstream.reference.outfile import refuse_same_file, write_atomic

    inputs = [Path(folder) / "results.json" if Path(folder).is_dir() else Path(folder)
              for folder in args.dirs]
    if args.output:   # before anything is read or written
        refuse_same_file(args.output, inputs)
        if Path(args.output).is_dir():
            raise UsageError(f"-o {args.output}: is a folder; give a file name")
    runs = []
    for folder in args.dirs:
        try:
            runs.append((folder, Run.load(folder)))
        except OSError as exc:
            raise UsageError(f"{folder}: cannot read it ({exc.strerror or exc})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{folder}: not a conformance report ({exc})") from None
    if args.html:
        from .html_report import render_html

        text = render_html(runs)
    else:
        text = "# Conformance comparison\n\n" + table(runs, args.by, args.only_differences)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
