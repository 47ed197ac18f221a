"""Hypothesis strategies for Xen's save/migration stream formats.

``valid(format, **opts)``
    streams that satisfy every ``reject`` and ``writer`` rule of the reference
    validator, built constructively and shrinking towards short, simple
    streams.  Options (all optional; a value fixes it, a ``(lo, hi)`` tuple
    draws in range): libxc/libxl/xl ``guest`` (pv|hvm), ``version`` (2|3),
    ``byteorder`` (little|big), ``pages``, ``records`` (most PAGE_DATA
    records per round), ``checkpoints``, ``optional`` (unknown optional
    records); xenstore ``version`` (1|2), ``byteorder``, ``records``
    (committed nodes), ``live_update``, ``transactions``; legacy ``width``
    (32|64), ``guest``, ``pages``, ``physmap``, ``qemu``, ``xl``.

    ``variant=NAME`` narrows the valid streams to what one kind of reader
    restores (:func:`variants`): xenstore ``c-restorable``, valid streams that
    stay inside what C xenstored 4.17 and 4.20 restore by the departures
    docs/findings.md documents (version 1, little-endian, live update, domain
    0's ring first, every body whole 8-octet words, node owners connected,
    whole pending output messages, no quota records or pending nodes).  A
    stream with the special nodes is labelled with their ``either`` rule.

    ``profile=NAME`` instead builds the stream as one of Xen's own writers
    shapes it (:mod:`xenstream.reference.profiles`): ``xen-4.17-hvm``,
    ``xen-4.6-pv-remus``, ``xen-4.20-pv32-migrate``, ... for ``libxc``,
    ``libxl`` and ``xl``; ``any`` draws the writer too; ``c-xenstored`` for
    ``xenstore``; ``convert-legacy-stream`` for ``libxc`` and ``libxl``.  Only
    what differs between two streams of that writer is drawn.  Such a stream
    may break a ``writer`` or ``either`` rule where Xen's writers do
    (docs/findings.md, "Xen's own writers"): its label then names that rule
    and severity, and the restore role accepts it.
``malformed(format, family=None)``
    a valid stream with exactly one rule broken, labelled with the rule id,
    the expected verdict (the rule's severity) and a description.  Families:
    :data:`FAMILIES`; :func:`families` lists those a format has and
    :func:`family_rules` the rules each can break.

Every example is a :class:`Labelled` (``.data``, ``.format``, ``.rule``,
``.expected``, ``.description``, ``.family``).  The same builders run under a
seeded ``random.Random`` for ``xenstream sample`` (:func:`generate_valid`,
:func:`generate_malformed`).
"""

from __future__ import annotations

import importlib
import random

from xenstream.reference.errors import UsageError
from xenstream.reference.formats import submodules
from xenstream.reference.rules import get_rule

from ._draw import Draw, HypothesisDraw, RandomDraw
from ._registry import ACCEPT, FAMILIES, FORMATS, MUTATIONS, VALID, VARIANTS, Labelled, Mutation

#: One module of builders and mutations per format (the format registry's).
_FORMAT_MODULES = submodules("xenstream.strategies")
_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _FORMAT_MODULES:
            importlib.import_module(module)
        _loaded = True


def available_formats() -> list[str]:
    """The formats, every one with a valid builder."""
    _load()
    return list(FORMATS)


def _check_format(fmt: str) -> None:
    _load()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def mutations(fmt: str | None = None, family: str | None = None) -> list[Mutation]:
    _load()
    if family is not None and family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return [m for m in MUTATIONS if (fmt is None or m.format == fmt) and (family is None or m.family == family)]


def variants(fmt: str) -> list[str]:
    """The named narrowings of ``fmt``'s valid streams (``valid(fmt, variant=NAME)``)."""
    _load()
    return [v for f, v in VARIANTS if f == fmt]


def _check_variant(fmt: str, variant: str) -> None:
    if (fmt, variant) not in VARIANTS:
        known = ", ".join(variants(fmt)) or "none"
        raise UsageError(f"format {fmt!r} has no valid variant {variant!r}; known: {known}")


def families(fmt: str) -> list[str]:
    """The families that have at least one mutation for ``fmt``."""
    have = {m.family for m in mutations(fmt)}
    return [f for f in FAMILIES if f in have]


def family_rules(fmt: str | None = None) -> dict[str, set[str]]:
    """family -> the rule ids its mutations break (for ``fmt``, or every format)."""
    out: dict[str, set[str]] = {f: set() for f in FAMILIES}
    for m in mutations(fmt):
        if m.rule is not None:
            out[m.family].add(m.rule)
    return out


def covered_rules() -> set[str]:
    return {r for rules in family_rules().values() for r in rules}


def unreachable_rules() -> dict[str, str]:
    """Rules no generated stream can break under the reader's defaults, with the reason."""
    _load()
    out: dict[str, str] = {}
    for module in _FORMAT_MODULES:
        out.update(getattr(importlib.import_module(module), "UNREACHABLE", {}))
    from xenstream.reference import readers

    for rule in sorted(readers.reader_only_rules()):
        out.setdefault(rule, "checked only under a reader profile (xenstream verify --reader); the "
                                       "strategies are judged under the spec alone, and reference/examples/xen.py "
                                       "breaks it under its reader")
    return out


# -- plain builders, driven by any Draw ------------------------------------------


def build_valid(d: Draw, fmt: str, **opts) -> Labelled:
    _check_format(fmt)
    variant = opts.pop("variant", None)
    if variant is not None:
        _check_variant(fmt, variant)
        data, description, rule = VARIANTS[(fmt, variant)](d, **opts)
        expected = ACCEPT if rule is None else get_rule(rule).severity.value
        return Labelled(fmt, bytes(data), rule, expected, description, None)
    profile = opts.pop("profile", None)
    if profile is not None:
        from . import profiles

        if opts:
            raise UsageError(f"profile {profile!r} takes no other options ({', '.join(sorted(opts))})")
        try:
            data, description, expected, rule = profiles.build(d, fmt, profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return Labelled(fmt, bytes(data), rule, expected, description, None)
    data, description = VALID[fmt](d, **opts)
    return Labelled(fmt, bytes(data), None, ACCEPT, description, None)


def build_malformed(d: Draw, fmt: str, family: str | None = None) -> Labelled:
    _check_format(fmt)
    pool = mutations(fmt, family)
    if not pool:
        raise UsageError(f"format {fmt!r} has no mutations of family {family!r}")
    return d.choice(pool).apply(d)


def generate_valid(fmt: str, rnd: random.Random | int, **opts) -> Labelled:
    return build_valid(RandomDraw(rnd), fmt, **opts)


def generate_malformed(fmt: str, rnd: random.Random | int, family: str | None = None) -> Labelled:
    return build_malformed(RandomDraw(rnd), fmt, family)


# -- Hypothesis strategies -----------------------------------------------------------


def valid(fmt: str, **opts):
    """Strategy of valid :class:`Labelled` streams of ``fmt`` (``variant=NAME``: one
    of :func:`variants`)."""
    from hypothesis import strategies as st

    _check_format(fmt)
    if opts.get("variant") is not None:
        _check_variant(fmt, opts["variant"])

    @st.composite
    def strategy(draw):
        return build_valid(HypothesisDraw(draw), fmt, **opts)
    return strategy()


def malformed(fmt: str, family: str | None = None):
    """Strategy of :class:`Labelled` streams of ``fmt`` breaking one rule of ``family`` (any family if None)."""
    from hypothesis import strategies as st

    _check_format(fmt)
    pool = mutations(fmt, family)
    if not pool:
        raise UsageError(f"format {fmt!r} has no mutations of family {family!r}")

    @st.composite
    def strategy(draw):
        m = draw(st.sampled_from(pool))
        return m.apply(HypothesisDraw(draw))
    return strategy()


__all__ = ["ACCEPT", "FAMILIES", "FORMATS", "Labelled", "Mutation", "valid", "malformed", "families",
           "family_rules", "variants", "covered_rules", "unreachable_rules", "mutations", "available_formats", "generate_valid",
           "generate_malformed", "build_valid", "build_malformed", "Draw", "HypothesisDraw", "RandomDraw"]
