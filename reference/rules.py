"""The rule catalogue.

Every check the reference validators make is a :class:`Rule` with a stable id
(``<format>.<record or part>.<check>``, record names as the spec spells them in
lower case), the specification document and section it comes from, and a
severity:

``reject``
    a conforming reader must refuse the stream;
``writer``
    the specification binds the writer (a field "set to zero on save") and
    tells the reader to ignore it: strict verifiers refuse the stream,
    restorers accept it;
``either``
    the specification is silent or ambiguous; the rule's summary says why.
    Such findings are reported, never held against an implementation.

Format modules declare their rules at import time with :func:`define`;
:func:`catalogue` imports every format module and returns all rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.Enum):
    REJECT = "reject"
    WRITER = "writer"
    EITHER = "either"


class Role(enum.Enum):
    """How a reader treats ``writer`` findings."""

    STRICT = "strict"    # a verifier: refuses what a conforming writer would not write
    RESTORE = "restore"  # a restorer: refuses only what it cannot restore

    def refuses(self, severity: Severity) -> bool:
        if severity is Severity.REJECT:
            return True
        if severity is Severity.WRITER:
            return self is Role.STRICT
        return False


#: Specification documents, by the short key rules use.
SPECS: dict[str, str] = {
    "libxc": "libxc-migration-stream.pandoc (Domain Image Format, revision 3)",
    "libxl": "libxl-migration-stream.pandoc (libxenlight Domain Image Format, revision 2)",
    "xl": "xl savefile header (Xen tools/xl/xl.h, struct save_file_header; written by "
          "save_domain_core_writeconfig in tools/xl/xl_saverestore.c)",
    "xenstore": "xenstore-migration.md (Xenstore Migration)",
    "legacy": "legacy libxc/libxl image (libxc spec 'Legacy Images'; Xen "
              "tools/python/xen/migration/legacy.py, Xen 4.6 and later)",
    # Containers without a spec document: each rule's section names the source
    # file and function it is based on, its summary whether reader or writer (docs/containers.md).
    "libvirt": "libvirt libxl save image (no spec document: libvirt src/libxl/libxl_conf.h "
               "libxlSavefileHeader, libxl_driver.c libxlDoDomainSave(), libxlDomainSaveImageOpen(); "
               "docs/containers.md)",
    "xenopsd": "xenopsd suspend image (no spec document: xapi-project/xenopsd lib/suspend_image.ml, "
               "xc/domain.ml suspend and restore_common; docs/containers.md)",
}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    spec: str      # key into SPECS
    section: str   # section title as the document spells it
    summary: str   # one line: what must hold

    @property
    def format(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def citation(self) -> str:
        return f"{SPECS[self.spec].split(' (')[0]}, section \"{self.section}\""


_CATALOGUE: dict[str, Rule] = {}

#: Modules that declare rules; imported by :func:`catalogue`.
FORMAT_MODULES: tuple[str, ...] = (
    "xenstream.reference.libxc",
    "xenstream.reference.libxl",
    "xenstream.reference.xl",
    "xenstream.reference.xenstore",
    "xenstream.reference.legacy",
    "xenstream.reference.libvirt",
    "xenstream.reference.xenopsd",
)


def define(rule_id: str, severity: Severity, spec: str, section: str, summary: str) -> Rule:
    """Declare a rule; ids are unique across the whole project."""
    if spec not in SPECS:
        raise ValueError(f"rule {rule_id}: unknown spec {spec!r}")
    rule = Rule(rule_id, severity, spec, section, summary)
    existing = _CATALOGUE.get(rule_id)
    if existing is not None and existing != rule:
        raise ValueError(f"rule {rule_id} defined twice")
    _CATALOGUE[rule_id] = rule
    return rule


def definer(spec: str):
    """``_rule = definer("libxc")``: a function declaring rules of one spec and returning their ids."""
    def _rule(rule_id: str, severity: Severity, section: str, summary: str) -> str:
        define(rule_id, severity, spec, section, summary)
        return rule_id
    return _rule


def get_rule(rule_id: str) -> Rule:
    try:
        return _CATALOGUE[rule_id]
    except KeyError:
        raise KeyError(f"no such rule: {rule_id}") from None


def catalogue() -> dict[str, Rule]:
    """All rules of every format in :data:`SPECS`, sorted by id."""
    from .formats import import_optional

    for name in FORMAT_MODULES:
        import_optional(name)
    # Only the formats this project specifies: a test may define rules of a
    # made-up format (the conformance runner's toy), which get_rule() resolves
    # but which are no part of the catalogue.
    return dict(sorted((rid, r) for rid, r in _CATALOGUE.items() if r.format in SPECS))


def render_markdown() -> str:
    """docs/rules.md, generated from the catalogue."""
    rules = catalogue()
    out = [
        "# Rule catalogue",
        "",
        "Generated by `xenstream rules --markdown` from the code; "
        "`tests/test_rules_doc.py` fails when this file is stale.",
        "",
        "Severities: `reject` a conforming reader must refuse the stream; "
        "`writer` the spec binds the writer and tells the reader to ignore the field "
        "(strict verifiers refuse, restorers accept); `either` the spec is silent or "
        "ambiguous (reported, never failed).",
        "",
        "Specification documents:",
        "",
    ]
    for key, title in SPECS.items():
        out.append(f"- `{key}`: {title}")
    by_format: dict[str, list[Rule]] = {}
    for rule in rules.values():
        by_format.setdefault(rule.format, []).append(rule)
    for fmt, items in by_format.items():
        out += ["", f"## {fmt}", "", "| rule | severity | section | what must hold |", "|---|---|---|---|"]
        for r in items:
            summary = r.summary.replace("|", "\\|")
            out.append(f"| `{r.id}` | {r.severity.value} | {r.section} | {summary} |")
    from .readers import render_markdown as readers_markdown

    out += readers_markdown()
    out.append("")
    return "\n".join(out)
