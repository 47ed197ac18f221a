"""Hand-written example streams: valid ones, and malformed ones that each break one rule.

Every rule of the catalogue has at least one malformed example here and every
record type at least one valid example.  The tests prove each example gets
its verdict from the reference validator, the conformance suite sends them to
implementations, and the corpus builder writes them out as files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..formats import import_optional
from ..rules import Severity, get_rule

ACCEPT = "accept"

#: Modules contributing ``examples() -> list[Example]``.
EXAMPLE_MODULES: tuple[str, ...] = (
    "xenstream.reference.examples.libxc",
    "xenstream.reference.examples.libxl",
    "xenstream.reference.examples.xl",
    "xenstream.reference.examples.xenstore",
    "xenstream.reference.examples.legacy",
    "xenstream.reference.examples.xen",
    "xenstream.reference.examples.libvirt",
    "xenstream.reference.examples.xenopsd",
)


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


def all_examples() -> list[Example]:
    out: list[Example] = []
    for name in EXAMPLE_MODULES:
        module = import_optional(name)
        if module is not None:
            out.extend(module.examples())
    return out
