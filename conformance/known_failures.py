"""Known-failures files: the cases an implementation is known to get wrong.

One entry a line, ``CASE-ID  REASON``; ``#`` starts a comment; blank lines are
ignored.  An id may be a glob pattern (``libxc/libxc.record.optional/*``),
which then covers every case it matches, including Hypothesis cases.

A listed case that fails is expected (``xfail``); a listed case that passes
fails the run, so that the list shrinks as the implementation is fixed.
``--update-known-failures`` rewrites the file from a run: every failing case,
keeping the reasons already written, and nothing that passed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

HEADER = """\
# Known failures of {impl} against xenstream-conformance.
# One case id a line, then why; docs/findings.md explains each one.
# Regenerate with: pytest conformance {args}--update-known-failures
"""


@dataclass
class KnownFailures:
    entries: dict[str, str] = field(default_factory=dict)   # id or pattern -> reason
    path: Path | None = None

    @classmethod
    def parse(cls, text: str, path: Path | None = None) -> "KnownFailures":
        entries: dict[str, str] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            entries[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
        return cls(entries, path)

    @classmethod
    def load(cls, path: Path | str | None) -> "KnownFailures":
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            return cls(path=path)
        return cls.parse(path.read_text(), path)

    def _patterns(self):
        return [k for k in self.entries if any(c in k for c in "*?[")]

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

    def updated(self, failures: dict[str, str], ran: set[str]) -> "KnownFailures":
        """The list after a run: ``failures`` maps each failing case id to a
        reason to use when it is new.  Entries about cases the run did not
        cover (another format, another source) are kept as they are."""
        out: dict[str, str] = {}
        for key, reason in self.entries.items():
            is_pattern = any(c in key for c in "*?[")
            if is_pattern:
                matched = [c for c in ran if fnmatch.fnmatchcase(c, key)]
                if not matched or any(c in failures for c in matched):
                    out[key] = reason
            elif key not in ran or key in failures:
                out[key] = reason
        for case_id, reason in failures.items():
            key = self.match(case_id)
            if key is not None and key in out:
                continue
            out[case_id] = reason
        return KnownFailures(dict(sorted(out.items())), self.path)

    def render(self, impl: str = "an implementation", args: str = "") -> str:
        lines = [HEADER.format(impl=impl, args=args)]
        width = max((len(k) for k in self.entries), default=0)
        for key, reason in self.entries.items():
            lines.append(f"{key.ljust(width)}  {reason}".rstrip())
        return "\n".join(lines) + "\n"

    def write(self, path: Path | str | None = None, **kw) -> None:
        from xenstream.reference.outfile import write_atomic

        path = Path(path or self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.render(**kw))
