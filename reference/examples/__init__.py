"""Hand-written example streams: valid ones, and malformed ones that each break one rule.

Every rule of the catalogue has at least one malformed example here and every
record type at least one valid example.  The tests prove each example gets
its verdict from the reference validator, the conformance suite sends them to
implementations, and the corpus builder writes them out as files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import importlib

from ..formats import submodules
from ..rules import ACCEPT, Severity, get_rule

#: Modules contributing ``examples() -> list[Example]``: one per format, and the Xen writers' and
#: readers' (``xen``).
EXAMPLE_MODULES: tuple[str, ...] = (*submodules("xenstream.reference.examples"), "xenstream.reference.examples.xen")


@dataclass(frozen=True)
class Example:
    format: str          # the name given to `verify -f`
    name: str            # short, unique within (format, rule)
    data: bytes
    rule: str | None     # the rule broken; None for a valid stream
    description: str     # one line
    meta: dict = field(default_factory=dict, compare=False)  # version, byteorder, guest, ...
    offset: int | None = None  # where the reference reports the broken rule (None: not pinned)

    @property
    def expected(self) -> str:
        """``accept``, or the broken rule's severity (``reject``, ``writer``, ``either``)."""
        if self.rule is None:
            return ACCEPT
        return get_rule(self.rule).severity.value

    @property
    def severity(self) -> Severity | None:
        return None if self.rule is None else get_rule(self.rule).severity

    @property
    def reader(self):
        """The reader profile (``meta["reader"]``) this example is judged under, or None."""
        name = self.meta.get("reader")
        if not name:
            return None
        from ..readers import get

        return get(name)

    @property
    def options(self) -> dict:
        """Codec options this example needs (what the stream itself does not say)."""
        from ..formats import get_codec

        return get_codec(self.format).pick_options(self.meta)

    @property
    def case_id(self) -> str:
        """Stable id: format, rule (or ``valid``), name, short content hash."""
        digest = hashlib.sha256(self.data).hexdigest()[:8]
        return f"{self.format}/{self.rule or 'valid'}/{self.name}-{digest}"


class StreamExamples:
    """Collects the examples of one format built from typed stream values: ``encode`` turns a
    value into octets, ``offsets`` gives each record's (item's) offset, ``meta`` its meta."""

    def __init__(self, fmt: str, encode, offsets, meta):
        self.format, self.encode, self.offsets, self.meta = fmt, encode, offsets, meta
        self.out: list[Example] = []

    def valid(self, name: str, stream, description: str) -> None:
        self.out.append(Example(self.format, name, self.encode(stream), None, description, self.meta(stream)))

    def bad(self, name: str, rule: str, stream, description: str, *, at: int | None = None, plus: int = 0,
            offset: int | None = None, data: bytes | None = None) -> None:
        """A malformed example: ``data`` (default: ``stream`` encoded), the finding at record (item)
        ``at`` plus ``plus`` octets, or at ``offset``."""
        if offset is None and at is not None:
            offset = self.offsets(stream)[at] + plus
        raw = self.encode(stream) if data is None else data
        self.out.append(Example(self.format, name, raw, rule, description, self.meta(stream), offset))


def all_examples() -> list[Example]:
    out: list[Example] = []
    for name in EXAMPLE_MODULES:
        out.extend(importlib.import_module(name).examples())
    return out
