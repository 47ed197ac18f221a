"""Before any case runs: can the implementation be started, and which formats does it refuse?

Two checks, so that a first run explains itself instead of failing every case
the same way:

1. :func:`program_problem`: the program named by ``--impl`` (or the first
   word of ``--impl-cmd``) exists and is executable.  Otherwise the run is a
   usage error and nothing runs.
2. :func:`probe`: for each selected format, the smallest valid hand-written
   example is given to the implementation.  A program that refuses it with a
   usage-style error (an exit status other than 0 and 1, no signal) and gives
   the same exit status and the same stderr for a second, different valid
   stream has refused the *format*, not the stream: ``verify-stream-v2 -f
   xenstore`` says ``option -f: invalid choice: 'xenstore'`` whatever the
   stream.  The plugin skips such a format with one line that says so.  A
   program that crashes differently on the two streams, or crashes only on
   one, is not refusing the format and every case runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Iterable

from .cases import ACCEPT, Case
from .execute import CRASH, Observed, executable_problem

#: Where scripts/fetch-xen-tools puts Debian's tools.
XEN_TOOLS = ".cache/xen-tools"


def program_problem(word: str) -> str | None:
    """Why the program ``word`` (a path, or a name looked up on PATH) cannot be run."""
    if os.sep in word:
        problem = executable_problem(word)
        if problem and XEN_TOOLS in word:
            problem += " (scripts/fetch-xen-tools fetches Debian's Xen tools there)"
        return problem
    if shutil.which(word) is None:
        return f"{word}: not found on PATH"
    return None


@dataclass(frozen=True)
class Refusal:
    """A format the implementation refused before reading any stream."""

    format: str
    exit_code: int | None   # None: a batch testee answered "unsupported"
    words: str          # what it said (its last line of stderr)

    @property
    def how(self) -> str:
        return "unsupported" if self.exit_code is None else f"exit {self.exit_code}"

    def line(self, impl: str, kept: Iterable[str]) -> str:
        kept = list(kept)
        hint = f"--formats={','.join(kept)}" if kept else "--formats"
        return (f"format {self.format} skipped: {impl} refuses it whatever the stream "
                f"({self.how}: {self.words!r}); pass {hint} to test only what it reads")

    def to_json(self) -> dict:
        return {"format": self.format, "exit_code": self.exit_code, "words": self.words}

    @classmethod
    def from_json(cls, d: dict) -> "Refusal":
        code = d["exit_code"]
        return cls(d["format"], None if code is None else int(code), d["words"])


def usage_style(o: Observed) -> bool:
    """An exit status other than 0 (accept) and 1 (reject), on its own (no
    signal), or a batch testee's ``unsupported`` answer."""
    if o.verdict == CRASH and o.exit_code is None and o.detail.startswith("unsupported:"):
        return True
    return o.verdict == CRASH and o.exit_code is not None and o.exit_code > 1


def _normalised(o: Observed, where: Iterable[str]) -> str:
    text = o.stderr.strip()
    for w in where:
        if w:
            text = text.replace(w, "{path}")
    return text


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "(nothing on stderr)"


def probe_cases(cases: Iterable[Case], fmt: str, n: int = 2) -> list[Case]:
    """The ``n`` smallest valid streams of ``fmt``, all different."""
    valid = sorted((c for c in cases if c.format == fmt and c.expected == ACCEPT
                    and c.source != "prefixes"), key=lambda c: (len(c.data), c.id))
    out: list[Case] = []
    for c in valid:
        if all(c.data != o.data for o in out):
            out.append(c)
        if len(out) == n:
            break
    return out


def probe(run_once, cases: list[Case], formats: Iterable[str]) -> dict[str, Refusal]:
    """The formats the implementation refuses outright.

    ``run_once(case) -> (Observed, [words that name the stream])`` runs one
    valid case once (the runner's :meth:`probe`).
    """
    refused: dict[str, Refusal] = {}
    for fmt in formats:
        picks = probe_cases(cases, fmt)
        if len(picks) < 2:
            continue  # nothing to compare with: every case runs
        first, where1 = run_once(picks[0])
        if not usage_style(first):
            continue
        second, where2 = run_once(picks[1])
        if not usage_style(second) or second.exit_code != first.exit_code:
            continue
        if _normalised(first, where1) != _normalised(second, where2):
            continue
        refused[fmt] = Refusal(fmt, first.exit_code, _last_line(first.stderr))
    return refused
