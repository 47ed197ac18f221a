"""``xenstream rules``: the rule catalogue as a table, Markdown or JSON."""

from __future__ import annotations

import json

from .formats import names
from .readers import checks_of
from .rules import catalogue, render_markdown


def add_arguments(p) -> None:
    p.add_argument("--format", choices=list(names()), help="only the rules of this format")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--markdown", action="store_true", help="docs/rules.md")
    group.add_argument("--json", action="store_true")


def run(args) -> int:
    if args.markdown:
        print(render_markdown(), end="")
        return 0
    rules = [r for r in catalogue().values() if not args.format or r.format == args.format]
    for r in rules:
        if args.json:
            print(json.dumps({"id": r.id, "severity": r.severity.value, "spec": r.spec,
                              "section": r.section, "summary": r.summary,
                              "readers": [{"component": c.component, "releases": c.releases,
                                           "modes": list(c.modes), "source": c.source}
                                          for c in checks_of(r.id)]}))
        else:
            print(f"{r.id:55} {r.severity.value:7} {r.section}: {r.summary}")
    return 0
