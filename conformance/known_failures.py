"""Known-failures files: the cases an implementation is known to get wrong.

One entry a line, ``CASE-ID  REASON``; ``#`` starts a comment; blank lines are
ignored.  An id may be a glob pattern (``libxc/libxc.record.optional/*``),
which then covers every case it matches, including Hypothesis cases.  A
Hypothesis property is listed by its target id (``xl/strategies/valid``).

The header records the run the file describes: the selection of cases
(``# Cases: ...``: kind, role, sources, formats, prefix sample, Hypothesis
examples and seed) and the command that regenerates it.  A file describes one
run: an entry whose case passes (stale), an entry that names no case of the
run (unknown) and a run whose selection differs from the file's are each a
failure of the run (:meth:`KnownFailures.problems`).

A listed case that fails is expected (``xfail``); a listed case that passes
fails the run, so that the list shrinks as the implementation is fixed.
``--update-known-failures`` rewrites the file from a run: every failing case,
keeping the reasons already written, nothing that passed and nothing that
names no case of the run.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

HEADER = """\
# Known failures of {impl} against xenstream-conformance.
# One case id a line, then why; docs/findings.md explains each one.
# Cases: {selection}
# Regenerate with: pytest conformance {args}--update-known-failures
"""
SELECTION_PREFIX = "# Cases: "


def _is_pattern(key: str) -> bool:
    return any(c in key for c in "*?[")


@dataclass
class KnownFailures:
    entries: dict[str, str] = field(default_factory=dict)   # id or pattern -> reason
    path: Path | None = None
    selection: str | None = None   # the "# Cases:" line of the file, when it has one

    @classmethod
    def parse(cls, text: str, path: Path | None = None) -> "KnownFailures":
        entries: dict[str, str] = {}
        selection = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(SELECTION_PREFIX):
                selection = line[len(SELECTION_PREFIX):].strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            entries[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
        return cls(entries, path, selection)

    @classmethod
    def load(cls, path: Path | str | None) -> "KnownFailures":
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            return cls(path=path)
        return cls.parse(path.read_text(), path)

    def _patterns(self):
        return [k for k in self.entries if _is_pattern(k)]

    def match(self, case_id: str) -> str | None:
        """The entry (id or pattern) that covers ``case_id``, or None."""
        if case_id in self.entries:
            return case_id
        for pattern in self._patterns():
            if fnmatch.fnmatchcase(case_id, pattern):
                return pattern
        return None

    def reason(self, case_id: str) -> str | None:
        key = self.match(case_id)
        return None if key is None else self.entries[key]

    def stale(self, results: dict[str, bool]) -> list[str]:
        """Entries that matched at least one case of a run, none of which failed.

        ``results`` maps every case id of the run to whether it failed.
        """
        hit: dict[str, bool] = {}
        for case_id, failed in results.items():
            key = self.match(case_id)
            if key is not None:
                hit[key] = hit.get(key, False) or failed
        return sorted(k for k, failed in hit.items() if not failed)

    def updated(self, failures: dict[str, str], ran: set[str],
                cases: set[str] | None = None) -> "KnownFailures":
        """The list after a run: ``failures`` maps each failing case id to a
        reason to use when it is new; ``ran`` holds every case id that ran and
        ``cases`` every case id of the run's selection (deselected ones too).
        Entries about cases of the selection that did not run are kept as they
        are; entries that name no case of the selection are dropped."""
        known = ran | (cases or set())
        out: dict[str, str] = {}
        for key, reason in self.entries.items():
            if _is_pattern(key):
                matched = [c for c in known if fnmatch.fnmatchcase(c, key)]
                if any(c in failures or c not in ran for c in matched):
                    out[key] = reason
            elif key in failures or (key in known and key not in ran):
                out[key] = reason
        for case_id, reason in failures.items():
            key = self.match(case_id)
            if key is not None and key in out:
                continue
            out[case_id] = reason
        return KnownFailures(dict(sorted(out.items())), self.path, self.selection)

    def problems(self, results: dict[str, bool], cases: set[str],
                 selection: str | None = None) -> list[str]:
        """Why this file does not describe a run, one line each: ``results``
        maps every case id that ran to whether it failed, ``cases`` holds every
        case id of the run's selection.  Listed cases that pass are reported
        by their own test; patterns that match only passing cases are stale."""
        out = []
        if self.entries and selection is not None and self.selection is not None \
                and selection != self.selection:
            out.append(f"the file was written for another selection of cases (file: "
                       f"{self.selection}; this run: {selection}); rerun with the options in "
                       "its header, or regenerate it")
        known = cases | set(results)
        for key in self.entries:
            if _is_pattern(key):
                if not any(fnmatch.fnmatchcase(c, key) for c in known):
                    out.append(f"unknown: {key} matches no case of this run")
            elif key not in known:
                out.append(f"unknown: {key} is no case of this run")
        out += [f"stale: {key} matches only cases that pass" for key in self.stale(results)
                if _is_pattern(key)]
        return out

    def render(self, impl: str = "an implementation", args: str = "",
               selection: str | None = None) -> str:
        selection = selection or self.selection or "(not recorded)"
        lines = [HEADER.format(impl=impl, args=args, selection=selection)]
        width = max((len(k) for k in self.entries), default=0)
        for key, reason in self.entries.items():
            lines.append(f"{key.ljust(width)}  {reason}".rstrip())
        return "\n".join(lines) + "\n"

    def write(self, path: Path | str | None = None, **kw) -> None:
        from xenstream.reference.outfile import write_atomic

        path = Path(path or self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.render(**kw))
