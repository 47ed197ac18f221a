"""Collects the findings of one validation run.

Validators report through a :class:`Checker`: :meth:`Checker.report` for a
broken rule after which reading can go on (a reserved field set, a record in
the wrong place), :meth:`Checker.fail` for one after which it cannot
(truncation, a length that does not fit).  The checker knows where the reader
is (:meth:`Checker.at`) so that findings carry the record without every
check passing it along.

A decoder runs the same validators with ``fail_fast=True``: the first finding
that its role refuses is raised as :class:`~.errors.StreamError`.
"""

from __future__ import annotations

from typing import NoReturn

from .errors import Finding, Location, StreamError
from .rules import Role, Severity, get_rule

#: Findings kept in memory per run; later ones are only counted.
MAX_KEPT = 1000


class Checker:
    __slots__ = ("role", "fail_fast", "findings", "total", "refused", "_layer", "_index",
                 "_name", "verbose", "notes", "max_kept", "reader", "reader_rules")

    def __init__(self, role: Role = Role.STRICT, *, fail_fast: bool = False,
                 verbose: bool = False, max_kept: int = MAX_KEPT, reader=None):
        self.role = role
        #: a :class:`~.readers.ReaderProfile`: its rules are checked, and refused, too
        self.reader = reader
        self.reader_rules: frozenset[str] = reader.rules if reader is not None else frozenset()
        self.fail_fast = fail_fast
        self.findings: list[Finding] = []
        self.total = 0       # findings of any severity, kept or not
        self.refused = 0     # findings the role refuses
        self.verbose = verbose
        self.notes: list[str] = []
        self.max_kept = max_kept
        self._layer = "stream"
        self._index: int | None = None
        self._name: str | None = None

    # where we are ------------------------------------------------------
    def at(self, layer: str, index: int | None = None, name: str | None = None) -> None:
        self._layer = layer
        self._index = index
        self._name = name

    @property
    def location(self) -> Location:
        return Location(self._layer, self._index, self._name)

    def save(self) -> tuple:
        return (self._layer, self._index, self._name)

    def restore(self, saved: tuple) -> None:
        self._layer, self._index, self._name = saved

    # reporting -----------------------------------------------------------
    def refuses(self, finding: Finding) -> bool:
        """Whether this run refuses ``finding``: its role does, or its reader profile has the rule."""
        return self.role.refuses(finding.rule.severity) or finding.rule.id in self.reader_rules

    def _record(self, rule_id: str, offset: int, message: str) -> Finding:
        finding = Finding(get_rule(rule_id), offset, message, self.location)
        self.total += 1
        refused = self.refuses(finding)
        if refused:
            self.refused += 1
        if len(self.findings) < self.max_kept:
            self.findings.append(finding)
        return finding

    def report(self, rule_id: str, offset: int, message: str) -> None:
        """A broken rule after which reading goes on."""
        finding = self._record(rule_id, offset, message)
        if self.fail_fast and self.refuses(finding):
            raise StreamError(finding)

    def fail(self, rule_id: str, offset: int, message: str) -> NoReturn:
        """A broken rule after which the stream cannot be read further."""
        raise StreamError(self._record(rule_id, offset, message))

    def note(self, text: str) -> None:
        """A line of the ``--verbose`` summary."""
        if self.verbose:
            self.notes.append(text)

    # results -------------------------------------------------------------
    @property
    def accepted(self) -> bool:
        return self.refused == 0

    def rule_ids(self) -> list[str]:
        return [f.rule.id for f in self.findings]

    def first_refused(self) -> Finding | None:
        for f in self.findings:
            if self.refuses(f):
                return f
        return None

    def by_severity(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.rule.severity is severity]
