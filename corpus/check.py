"""``xenstream corpus check``: every file is where the manifest says, with its hash and its verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import manifest as mf
from .verdict import options_of, problems, reader_of


@dataclass
class CheckResult:
    entries: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check(folder: Path, *, verdicts: bool = True, coverage: bool = True) -> CheckResult:
    folder = Path(folder)
    result = CheckResult()
    path = folder / mf.MANIFEST
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        result.failures.append(f"{path}: {exc}")
        return result
    result.failures += mf.schema_problems(raw)
    if result.failures:
        return result
    entries = [mf.Entry.from_json(obj) for obj in raw]
    result.entries = len(entries)
    if [e.id for e in entries] != sorted(e.id for e in entries):
        result.failures.append("manifest entries are not sorted by id")
    listed = set()
    for e in entries:
        file = folder / e.path
        listed.add(file.resolve())
        try:
            data = file.read_bytes()
        except OSError as exc:
            result.failures.append(f"{e.id}: cannot read {e.path}: {exc.strerror or exc}")
            continue
        if mf.sha256(data) != e.sha256:
            result.failures.append(f"{e.id}: sha256 of {e.path} does not match the manifest")
            continue
        if verdicts:
            for p in problems(e.format, data, e.expected, e.rule, options_of(e.format, e.meta),
                              reader_of(e.meta)):
                result.failures.append(f"{e.id}: expected {e.expected}"
                                       f"{'' if e.rule is None else ' (' + e.rule + ')'}: {p}")
    for fmt in mf.FORMATS:
        for file in sorted((folder / fmt).glob("*")) if (folder / fmt).is_dir() else []:
            if file.resolve() not in listed:
                result.failures.append(f"{file.relative_to(folder)}: not in the manifest")
    if coverage:
        result.notes += coverage_notes(entries)
    return result


def uncovered_rules(entries) -> list[str]:
    """Rules without a malformed file, apart from those whose examples are too large to ship
    (``meta["corpus"]`` False: an 8 MiB record; the conformance suite still sends them)."""
    from xenstream.reference.examples import all_examples
    from xenstream.reference.rules import catalogue

    covered = {e.rule for e in entries if e.rule and e.expected != "accept"}
    too_large = {e.rule for e in all_examples() if e.meta.get("corpus") is False}
    return sorted(set(catalogue()) - covered - too_large)


def coverage_notes(entries) -> list[str]:
    missing = uncovered_rules(entries)
    if missing:
        return [f"{len(missing)} rule(s) without an n_/w_/i_ file: {', '.join(missing)}"]
    return []
