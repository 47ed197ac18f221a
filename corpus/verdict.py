"""What the reference verifier says about a corpus file, and whether that is its label.

A file's label is an expected verdict (``accept``, ``reject``, ``writer``,
``either``) and, unless ``accept``, the rule it breaks.  The reference agrees
with the label when:

``accept``  no finding is refused in the strict role;
``reject``  the labelled rule is reported and refused in the restore role;
``writer``  refused in the strict role, accepted in the restore role, the
            labelled rule reported;
``either``  accepted in both roles, the labelled rule reported.

An entry whose ``meta["reader"]`` names a reader profile (a check of Xen's C
readers, ``xenstream.reference.readers``) agrees with its label when, under
that profile in the restore role, exactly its rule is refused, and without it
the restore role accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenstream.reference.checker import Checker
from xenstream.reference.formats import get_codec, validate
from xenstream.reference.rules import ACCEPT, Role, Severity
from xenstream.reference.source import Source


def options_of(fmt: str, meta: dict | None) -> dict:
    """The codec options in an entry's ``meta`` (a legacy image's width, guest type, ...)."""
    return get_codec(fmt).pick_options(meta) if meta else {}


def reader_of(meta: dict | None):
    """The reader profile an entry's ``meta`` names, or None."""
    name = (meta or {}).get("reader")
    if not name:
        return None
    from xenstream.reference.readers import get

    return get(name)


def run(fmt: str, data: bytes, role: Role = Role.STRICT, options: dict | None = None, reader=None) -> Checker:
    """The reference validator's findings over ``data`` in ``role`` (and ``reader``'s profile)."""
    return validate(Source.from_bytes(data), fmt, Checker(role, reader=reader), **(options or {}))


def reader_problems(fmt: str, data: bytes, rule: str | None, options: dict | None, reader) -> list[str]:
    under = run(fmt, data, Role.RESTORE, options, reader)
    refused = {f.rule.id for f in under.findings if under.refuses(f)}
    out = []
    if refused != {rule}:
        out.append(f"under reader {reader.name} the refused rules are {sorted(refused)}, not [{rule}]")
    if not run(fmt, data, Role.RESTORE, options).accepted:
        out.append("refused in the restore role without a reader profile")
    return out


def problems(fmt: str, data: bytes, expected: str, rule: str | None,
             options: dict | None = None, reader=None) -> list[str]:
    """Why the reference does not give ``data`` its label; [] when it does."""
    if reader is not None:
        return reader_problems(fmt, data, rule, options, reader)
    strict = run(fmt, data, Role.STRICT, options)
    restore = run(fmt, data, Role.RESTORE, options)
    out: list[str] = []

    def refused(checker: Checker) -> list[str]:
        return [f.describe() for f in checker.findings if checker.role.refuses(f.rule.severity)]

    reported = rule is not None and rule in strict.rule_ids()
    if expected == ACCEPT:
        if rule is not None:
            out.append("a valid file names no rule")
        if not strict.accepted:
            out.append("refused in the strict role: " + "; ".join(refused(strict)[:3]))
    elif expected == "reject":
        if rule is None or rule not in [f.rule.id for f in restore.findings
                                        if Role.RESTORE.refuses(f.rule.severity)]:
            out.append(f"{rule} is not refused in the restore role; findings: "
                       + ("; ".join(f.describe() for f in restore.findings[:3]) or "none"))
    elif expected == "writer":
        if strict.accepted:
            out.append("accepted in the strict role")
        if not restore.accepted:
            out.append("refused in the restore role: " + "; ".join(refused(restore)[:3]))
        if not reported:
            out.append(f"{rule} is not reported")
    elif expected == "either":
        if not strict.accepted:
            out.append("refused in the strict role: " + "; ".join(refused(strict)[:3]))
        if not reported:
            out.append(f"{rule} is not reported")
    else:
        out.append(f"unknown expected verdict {expected!r}")
    return out


@dataclass(frozen=True)
class Verdict:
    expected: str         # accept, reject, writer, either
    rule: str | None      # the rule the label names
    offset: int | None    # where the reference reports it
    message: str | None


def classify(fmt: str, data: bytes, options: dict | None = None) -> Verdict:
    """The label the reference gives ``data`` (for fuzz-found files).

    The first finding refused in the restore role makes it ``reject``; else
    the first refused in the strict role ``writer``; else the first ``either``
    finding ``either``; else ``accept``.
    """
    strict = run(fmt, data, Role.STRICT, options)
    for severity, label in ((Severity.REJECT, "reject"), (Severity.WRITER, "writer"),
                            (Severity.EITHER, "either")):
        for f in strict.findings:
            if f.rule.severity is severity:
                return Verdict(label, f.rule.id, f.offset, f.message)
    return Verdict(ACCEPT, None, None, None)


def signature(fmt: str, data: bytes, options: dict | None = None, reader=None) -> tuple:
    """Everything the label depends on: both roles' verdicts and the strict findings' rules
    (and, with a reader profile, what it refuses)."""
    strict = run(fmt, data, Role.STRICT, options)
    restore = run(fmt, data, Role.RESTORE, options)
    out = (strict.accepted, restore.accepted, tuple(strict.rule_ids()), strict.total)
    if reader is not None:
        under = run(fmt, data, Role.RESTORE, options, reader)
        out += (tuple(f.rule.id for f in under.findings if under.refuses(f)),)
    return out


def record_kinds(fmt: str, data: bytes, options: dict | None = None) -> frozenset:
    """The kinds of item (layer, kind, record type) a stream holds, from the reference's dump."""
    from xenstream.reference.formats import get_codec

    kinds = set()
    try:
        for item in get_codec(fmt).dump(Source.from_bytes(data), Checker(), **(options or {})):
            fields = item.get("fields") or {}
            kind = item.get("type") or fields.get("type") if item.get("kind") in ("record", "chunk") \
                else None
            kinds.add((item.get("layer"), item.get("kind"), str(kind)))
    except Exception:  # noqa: BLE001 - only called on valid streams
        pass
    return frozenset(kinds)


def sniff(fmt: str, data: bytes) -> tuple[int | None, str | None]:
    """``(version, byteorder)`` read from a stream's header, None where it cannot tell."""
    from xenstream.reference.formats import get_codec

    return get_codec(fmt).sniff(data)
