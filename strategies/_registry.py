"""The labelled example type and the registry of builders and mutations.

Each format module registers one valid-stream builder (:func:`valid_builder`)
and any number of mutations (:func:`mutation`), each breaking one named rule
within one family.  A mutation draws its own valid base stream (so it can
ask for the guest type, version or record it needs) and returns the broken
octets and a one-line description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from xenstream.reference.formats import names
from xenstream.reference.rules import ACCEPT, get_rule

from ._draw import Draw

FORMATS: tuple[str, ...] = names()
FAMILIES: tuple[str, ...] = ("padding", "reserved", "width", "strings", "framing", "semantics")


@dataclass(frozen=True, slots=True)
class Labelled:
    """One generated stream and what the reference says of it."""

    format: str
    data: bytes
    rule: str | None = None          # the broken rule; None for a valid stream
    expected: str = ACCEPT           # accept, or the rule's severity: reject, writer, either
    description: str = ""
    family: str | None = None        # the malformed family; None for a valid stream

    def to_json(self) -> dict:
        return {"format": self.format, "verdict": self.expected, "rule": self.rule,
                "description": self.description, "family": self.family, "size": len(self.data)}


@dataclass(frozen=True)
class Mutation:
    format: str
    family: str
    rule: str | None   # None: the result is valid on purpose (an unknown optional record)
    name: str
    fn: Callable[[Draw], tuple[bytes, str]]

    def apply(self, d: Draw) -> Labelled:
        data, description = self.fn(d)
        expected = ACCEPT if self.rule is None else get_rule(self.rule).severity.value
        return Labelled(self.format, bytes(data), self.rule, expected, description, self.family)


MUTATIONS: list[Mutation] = []
VALID: dict[str, Callable[..., tuple[bytes, str]]] = {}
#: (format, variant) -> builder of valid streams narrowed to what one kind of
#: reader restores (``xenstore``/``c-restorable``).  A variant builder returns
#: (stream, description, rule): ``rule`` names the one ``either`` rule the
#: stream leans on (None when it breaks none), so its label stays honest.
VARIANTS: dict[tuple[str, str], Callable[..., tuple[bytes, str, str | None]]] = {}


def mutation(fmt: str, family: str, rule: str | None, name: str | None = None):
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")

    def register(fn):
        MUTATIONS.append(Mutation(fmt, family, rule, name or fn.__name__.lstrip("_"), fn))
        return fn
    return register


def valid_builder(fmt: str, variant: str | None = None):
    """Register ``fmt``'s valid-stream builder, or (``variant``) a narrowed one."""
    def register(fn):
        if variant is None:
            VALID[fmt] = fn
        else:
            VARIANTS[(fmt, variant)] = fn
        return fn
    return register
