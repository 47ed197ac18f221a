"""The single error hierarchy of the reference codecs, and the Finding type.

Every way a stream can be wrong is a :class:`Finding` naming a rule from the
catalogue, the byte offset of what is wrong and the record it is in.  A
finding that stops a decoder (or a validation that cannot go on) is raised as
:class:`StreamError`, which carries the finding.  Malformed input never leaves
the reference as ``struct.error``, ``IndexError``, ``UnicodeDecodeError`` or
any other exception type.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rules import Rule, Severity, get_rule


class XenstreamError(Exception):
    """Base class of every error this project raises on purpose."""


class UsageError(XenstreamError):
    """The caller asked for something that cannot be done (bad option, unknown format)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a (possibly nested) stream something is.

    ``layer`` is the format whose record is meant (``libxc`` inside a libxl
    stream is ``libxc``), ``index`` the 0-based index of the record within
    that layer (``None`` for headers) and ``name`` the record's spec name
    (``PAGE_DATA``) or the header's name (``image header``).
    """

    layer: str
    index: int | None = None
    name: str | None = None

    def describe(self) -> str:
        if self.index is None:
            return f"{self.layer} {self.name or 'stream'}"
        return f"{self.layer} record #{self.index} ({self.name})"


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken rule at one place in a stream."""

    rule: Rule
    offset: int
    message: str
    location: Location

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    def describe(self) -> str:
        return (
            f"{self.rule.id} [{self.rule.severity.value}] at offset {self.offset} "
            f"(0x{self.offset:x}), {self.location.describe()}: {self.message} "
            f"({self.rule.citation})"
        )

    def to_json(self) -> dict:
        return {
            "rule": self.rule.id,
            "severity": self.rule.severity.value,
            "spec": self.rule.spec,
            "section": self.rule.section,
            "offset": self.offset,
            "layer": self.location.layer,
            "record_index": self.location.index,
            "record": self.location.name,
            "message": self.message,
        }


class StreamError(XenstreamError):
    """A stream breaks a rule and the reader stops there."""

    def __init__(self, finding: Finding):
        super().__init__(finding.describe())
        self.finding = finding

    @property
    def rule(self) -> Rule:
        return self.finding.rule

    @property
    def offset(self) -> int:
        return self.finding.offset

    @property
    def location(self) -> Location:
        return self.finding.location

    @classmethod
    def make(cls, rule_id: str, offset: int, message: str, location: Location) -> "StreamError":
        return cls(Finding(get_rule(rule_id), offset, message, location))
