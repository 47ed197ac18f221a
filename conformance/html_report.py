"""``report.html``: the results of one or more conformance runs as a matrix.

Rows are the rules the cases break, grouped by format and spec section (the
valid streams and the Hypothesis properties of each format have rows of their
own); columns are the runs (implementations); a cell holds the cases of one
rule in one run, coloured by the worst of their verdicts (:data:`CLASSES`).
A cell links to a panel listing its cases: id, outcome, expected and observed
verdicts, failure kind, spec section and the replay command.

One self-contained file: inline CSS and a little inline JavaScript (filters
by format and verdict, a search, "only rows that differ"); no network, no
external script, font or image.  The panels work without JavaScript (CSS
``:target``), so does every link.  ``pytest conformance --report DIR`` writes
it beside ``results.json``; ``xenstream report A B C --html`` merges runs.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from .results import CaseResult, Run

#: Verdict classes of a case, worst first: a cell takes the worst of its cases'.
#: (class, label, what it means)
CLASSES = (
    ("harness", "harness-error", "the runner failed on the case, not the implementation"),
    ("crash", "crash", "no verdict: an exit status other than 0 and 1, a signal, an output flood, "
                       "a protocol error, not executable"),
    ("memory", "memory", "a sanitizer report or an allocation failure"),
    ("timeout", "timeout", "still running after the time limit"),
    ("fail", "fail", "the wrong verdict (or, for converters and restorers, the wrong output or "
                     "state)"),
    ("inconsistent", "inconsistent", "the verdict depends on how the stream is delivered"),
    ("flaky", "flaky", "the verdict changed when the case was run again"),
    ("xpass", "listed, passes", "listed in the known-failures file but passes"),
    ("known", "known", "fails as the known-failures file says"),
    ("reported", "either", "an either rule: any verdict conforms; recorded, never failed"),
    ("pass", "pass", "the verdict the spec asks for"),
    ("skipped", "skipped", "not run"),
)
_ORDER = {name: i for i, (name, _, _) in enumerate(CLASSES)}
_LABEL = {name: label for name, label, _ in CLASSES}


def case_class(c: CaseResult) -> str:
    """The verdict class of one case (see :data:`CLASSES`)."""
    if c.outcome == "pass":
        return "pass"
    if c.outcome == "reported":
        return "reported"
    if c.outcome == "xfail":
        return "known"
    if c.outcome == "xpass":
        return "xpass"
    if c.outcome == "harness-error" or c.kind == "harness-error":
        return "harness"
    if c.outcome == "skipped":
        return "skipped"
    if c.kind == "crash":
        seen = c.observed or ""
        if "timeout" in seen:
            return "timeout"
        if "memory" in seen:
            return "memory"
        return "crash"
    if c.kind in ("inconsistent", "flaky"):
        return c.kind
    return "fail"


def _worst(classes) -> str:
    return min(classes, key=_ORDER.__getitem__)


@dataclass
class _Row:
    format: str
    group: str           # the spec document and section, or a heading of ours
    key: str             # rule id, or "valid streams", or a property's id
    label: str
    rule: str | None = None
    severity: str = ""
    summary: str = ""
    cells: list[list[CaseResult]] = field(default_factory=list)


def _section_parts(section: str) -> tuple[str, str]:
    """('libxc-migration-stream.pandoc', 'Image Header') from a rule's citation."""
    doc, sep, title = section.partition(", section ")
    if not sep:
        return "", section
    return doc, title.strip('"')


def _rule_info(rule: str | None) -> tuple[str, str, str]:
    """(severity, summary, citation) of a rule from the catalogue, when known."""
    if not rule:
        return "", "", ""
    try:
        from xenstream.reference.rules import catalogue, get_rule

        if not _CATALOGUE_LOADED:
            catalogue()   # imports every format's module, which defines its rules
            _CATALOGUE_LOADED.append(True)
        r = get_rule(rule)
    except (KeyError, ImportError):
        return "", "", ""
    return r.severity.value, r.summary, r.citation


VALID_GROUP, PROPERTY_GROUP = "Valid streams", "Hypothesis properties"
_CATALOGUE_LOADED: list = []


def _rule_rank() -> dict[str, int]:
    """Rules in the order their modules define them (the order of the spec's
    sections, near enough); empty when the catalogue does not say."""
    try:
        from xenstream.reference import rules

        _rule_info("-")   # loads the catalogue
        return {rid: i for i, rid in enumerate(getattr(rules, "_CATALOGUE", {}))}
    except ImportError:
        return {}


def _format_rank(fmt: str) -> tuple[int, str]:
    """Formats in the order the project lists them (libxc, libxl, xl, xenstore, legacy)."""
    try:
        from xenstream.reference.formats import FORMAT_MODULES

        order = list(FORMAT_MODULES)
    except ImportError:
        order = []
    return (order.index(fmt) if fmt in order else len(order), fmt)


def rows_of(runs: list[Run]) -> list[_Row]:
    """The matrix's rows, in order: by format, then spec section, then rule."""
    rows: dict[tuple[str, str], _Row] = {}
    for i, run in enumerate(runs):
        for c in run.cases:
            if c.source == "strategies":
                key, group, rule = c.id, PROPERTY_GROUP, None
                label = c.id.split("/", 1)[-1]
            elif c.rule:
                key, rule = c.rule, c.rule
                group = c.section or _rule_info(rule)[2] or "(no section)"
                label = rule
            else:
                key, group, rule, label = "valid", VALID_GROUP, None, "valid streams"
            row = rows.get((c.format, key))
            if row is None:
                severity, summary, citation = _rule_info(rule)
                if rule and citation and group == "(no section)":
                    group = citation
                row = rows[(c.format, key)] = _Row(c.format, group, key, label, rule, severity,
                                                   summary, [[] for _ in runs])
            row.cells[i].append(c)

    rank = _rule_rank()
    first: dict[tuple[str, str], int] = {}   # a section comes where its first rule does
    for r in rows.values():
        k = rank.get(r.key, len(rank))
        first[(r.format, r.group)] = min(first.get((r.format, r.group), k), k)

    def order(r: _Row):
        special = {VALID_GROUP: 0, PROPERTY_GROUP: 2}.get(r.group, 1)
        return (_format_rank(r.format), special, first[(r.format, r.group)],
                _section_parts(r.group)[1].lower(), r.group, rank.get(r.key, len(rank)), r.key)
    return sorted(rows.values(), key=order)



def _e(text) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root{--bg:#f6f7f9;--fg:#1c2024;--muted:#60646c;--line:#dfe3e8;--card:#fff;
--pass:#d3efd9;--pass-fg:#14532d;--fail:#e5484d;--known:#f6c26b;--known-fg:#5a3b00;
--reported:#d4e4fb;--reported-fg:#123a72;--crash:#6e2bb8;--memory:#b0307a;--timeout:#ef7d1a;
--inconsistent:#f2d64b;--flaky:#f2d64b;--xpass:#17a398;--harness:#8a8f98;--skipped:#eceef1}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans","Liberation Sans",sans-serif}
header{padding:22px 28px 10px;background:linear-gradient(120deg,#1d2b45,#243b63 60%,#2b4c7e);color:#eef2f8}
header h1{margin:0 0 2px;font-size:22px;font-weight:650;letter-spacing:.2px}
header .sub{margin:0;color:#b9c6dc;font-size:13px}
.runs{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0 8px}
.run{background:rgba(255,255,255,.08);border:1px solid rgba(255,255,255,.14);border-radius:10px;
padding:10px 14px;min-width:260px;flex:1 1 260px;max-width:480px}
.run h2{margin:0;font-size:15px;font-weight:600;color:#fff;word-break:break-all}
.run .meta{color:#b9c6dc;font-size:12px;margin:2px 0 8px}
.run .counts{font-size:12px;color:#dbe3f0;margin-top:6px}
.notes{font-size:12px;color:#c9d4e6;margin-top:4px}.notes summary{cursor:pointer}
.notes div{margin:3px 0 0 12px}
.bar{display:flex;height:8px;border-radius:4px;overflow:hidden;background:rgba(255,255,255,.15)}
.bar span{display:block;height:100%}
nav{position:sticky;top:0;z-index:5;background:rgba(246,247,249,.96);backdrop-filter:blur(4px);
border-bottom:1px solid var(--line);padding:10px 28px;display:flex;flex-wrap:wrap;gap:10px 22px;
align-items:center}
nav .group{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
nav .title{font-size:11px;text-transform:uppercase;letter-spacing:.8px;color:var(--muted);margin-right:2px}
.chip{display:inline-flex;align-items:center;gap:6px;border:1px solid var(--line);background:#fff;
border-radius:999px;padding:3px 10px 3px 7px;font-size:12.5px;cursor:pointer;user-select:none}
.chip input{display:none}
.chip i{width:11px;height:11px;border-radius:3px;display:inline-block}
.chip.off{opacity:.42;text-decoration:line-through}
.chip b{font-weight:600;color:var(--muted)}
nav input[type=search]{border:1px solid var(--line);border-radius:8px;padding:5px 10px;width:220px;font:inherit}
main{padding:14px 28px 40px}
table.matrix{border-collapse:separate;border-spacing:0;background:var(--card);border:1px solid var(--line);
border-radius:10px;min-width:60%}
.matrix thead th{position:sticky;top:53px;z-index:3;background:#fff;border-bottom:2px solid var(--line);
padding:9px 10px;text-align:left;font-size:12.5px;font-weight:600;vertical-align:bottom}
.matrix thead th.impl{text-align:center;max-width:190px;word-break:break-all}
.matrix th,.matrix td{border-bottom:1px solid #eef0f3}
tr.fmt th{background:#eef2f8;font-size:15px;font-weight:650;padding:12px 12px 8px;text-align:left;
border-top:1px solid var(--line)}
tr.fmt th span{font-weight:400;font-size:12px;color:var(--muted);margin-left:8px}
tr.sec th{background:#fafbfc;font-size:12px;font-weight:600;color:#3b4350;padding:7px 12px 5px 18px;text-align:left}
tr.sec th span{font-weight:400;color:var(--muted);margin-left:6px}
tr.rule th{font-weight:400;text-align:left;padding:3px 12px 3px 26px;max-width:640px}
tr.rule th code{font:12.5px/1.3 ui-monospace,"DejaVu Sans Mono","Liberation Mono",monospace;color:#1c2a44}
tr.rule th .sum{display:block;color:var(--muted);font-size:11.5px;white-space:nowrap;
overflow:hidden;text-overflow:ellipsis;max-width:600px}
td.sev{font-size:11px;color:var(--muted);padding:0 8px;text-transform:uppercase;letter-spacing:.5px}
td.cell{padding:2px 4px;text-align:center;min-width:118px}
td.cell a{display:block;border-radius:5px;padding:3px 8px;text-decoration:none;font-weight:600;
font-size:12px;color:#fff;white-space:nowrap}
td.cell a:hover{outline:2px solid #1c2a44;outline-offset:1px}
td.cell a small{font-weight:500;font-size:10.5px;opacity:.88;margin-left:5px}
td.cell.none{color:#c3c8cf;font-size:12px}
td.cell .mix{height:4px;margin:3px -3px -1px;border-radius:2px;background:#fff;box-shadow:0 0 0 1px rgba(255,255,255,.85)}
.v-pass{background:var(--pass);color:var(--pass-fg)!important}
.v-fail{background:var(--fail)}
.v-known{background:var(--known);color:var(--known-fg)!important}
.v-reported{background:var(--reported);color:var(--reported-fg)!important}
.v-crash{background:var(--crash)}
.v-memory{background:var(--memory)}
.v-timeout{background:var(--timeout)}
.v-inconsistent,.v-flaky{background:repeating-linear-gradient(135deg,var(--inconsistent) 0 7px,#e7c531 7px 14px);color:#4a3c00!important}
.v-xpass{background:var(--xpass)}
.v-harness{background:var(--harness);outline:2px dashed #5b6068;outline-offset:-3px}
.v-skipped{background:var(--skipped);color:var(--muted)!important}
i.v-pass{background:#3fb060}
.detail{display:none;position:fixed;top:0;right:0;bottom:0;width:min(760px,62vw);z-index:10;background:#fff;
box-shadow:-12px 0 36px rgba(20,30,50,.22);overflow:auto;padding:18px 22px 30px;border-left:1px solid var(--line)}
.detail:target{display:block}
.detail h3{margin:0 0 2px;font-size:16px;word-break:break-all}
.detail .where{color:var(--muted);font-size:12.5px;margin-bottom:10px}
.detail .close{position:absolute;top:12px;right:16px;text-decoration:none;font-size:22px;color:var(--muted)}
.case{border:1px solid var(--line);border-left-width:5px;border-radius:8px;padding:8px 11px;margin:8px 0}
.case .id{font:12px ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all;font-weight:600}
.case dl{display:grid;grid-template-columns:88px 1fr;gap:2px 10px;margin:6px 0 0;font-size:12.5px}
.case dt{color:var(--muted)}
.case dd{margin:0;word-break:break-word}
.case pre{margin:0;white-space:pre-wrap;word-break:break-all;font:11.5px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;
background:#f3f5f8;border-radius:5px;padding:5px 7px}
.tag{display:inline-block;border-radius:4px;padding:0 6px;font-size:11.5px;font-weight:600;color:#fff}
.legend{color:var(--muted);font-size:12px;margin:10px 0 0}
.empty{display:none;padding:30px;color:var(--muted)}
footer{color:var(--muted);font-size:12px;padding:0 28px 24px}
"""

_JS = r"""
(function(){
  var rows=[].slice.call(document.querySelectorAll('tr.rule'));
  var heads=[].slice.call(document.querySelectorAll('tr.fmt,tr.sec'));
  function on(name){return [].slice.call(document.querySelectorAll('input[name='+name+']:checked')).map(function(i){return i.value})}
  function apply(){
    var fmts=on('fmt'),verdicts=on('verdict'),diff=document.getElementById('diff'),
        q=(document.getElementById('q').value||'').toLowerCase(),shown=0,seen={};
    rows.forEach(function(r){
      var cls=r.getAttribute('data-classes').split(' ');
      var ok=fmts.indexOf(r.getAttribute('data-format'))>=0 &&
        cls.some(function(c){return verdicts.indexOf(c)>=0}) &&
        (!q||r.getAttribute('data-text').indexOf(q)>=0) &&
        (!diff||!diff.checked||r.getAttribute('data-differ')==='1');
      r.hidden=!ok;
      if(ok){shown++;seen[r.getAttribute('data-format')]=1;seen[r.getAttribute('data-group')]=1}
    });
    heads.forEach(function(h){h.hidden=!seen[h.getAttribute('data-key')]});
    document.getElementById('shown').textContent=shown;
    document.querySelector('.empty').style.display=shown?'none':'block';
  }
  [].slice.call(document.querySelectorAll('nav input')).forEach(function(i){
    i.addEventListener(i.type==='search'?'input':'change',function(){
      if(i.parentNode.classList.contains('chip'))i.parentNode.classList.toggle('off',!i.checked);
      apply()})});
  document.addEventListener('keydown',function(e){if(e.key==='Escape'&&location.hash)location.hash=''});
  // ?format=libxc,xl&verdict=fail,crash&q=TEXT&diff=1 opens the page filtered (a link to a view)
  var args={};location.search.replace(/^\?/,'').split('&').forEach(function(kv){
    if(kv){var p=kv.split('=');args[decodeURIComponent(p[0])]=decodeURIComponent((p[1]||'').replace(/\+/g,' '))}});
  ['format','verdict'].forEach(function(k){
    if(args[k]===undefined)return;var want=args[k].split(',');
    [].slice.call(document.querySelectorAll('input[name='+(k==='format'?'fmt':k)+']')).forEach(function(i){
      i.checked=want.indexOf(i.value)>=0;i.parentNode.classList.toggle('off',!i.checked)})});
  if(args.q)document.getElementById('q').value=args.q;
  var d=document.getElementById('diff');
  if(args.diff&&d){d.checked=true;d.parentNode.classList.remove('off')}
  apply();
})();
"""


def _bar(counts: Counter, total: int) -> str:
    spans = []
    for name, _, _ in reversed(CLASSES):
        n = counts.get(name, 0)
        if n:
            spans.append(f'<span class="v-{name}" style="width:{100 * n / total:.3f}%" '
                         f'title="{n} {_e(_LABEL[name])}"></span>')
    return f'<div class="bar">{"".join(spans)}</div>'


def _counts_text(counts: Counter) -> str:
    return ", ".join(f"{counts[n]} {_LABEL[n]}" for n, _, _ in CLASSES if counts.get(n))


def _notes(run: Run) -> str:
    lines = [f"note: {n}" for n in run.notes] + \
        [f"known-failures file does not describe the run: {p}" for p in run.known_failures_problems]
    if not lines:
        return ""
    return (f'<details class="notes"><summary>{len(lines)} note{"s" if len(lines) != 1 else ""}'
            "</summary>" + "".join(f"<div>{_e(n)}</div>" for n in lines) + "</details>")


def _case_html(c: CaseResult) -> str:
    cls = case_class(c)
    items = [("outcome", f'<span class="tag v-{cls}">{_e(_LABEL[cls])}</span>'
              + (f" {_e(c.kind)}" if c.kind and c.kind != cls else "")),
             ("expected", _e(c.expected) + (f" (required: {_e(c.required or 'any verdict')})"
                                            if c.required != c.expected else "")),
             ("observed", _e(c.observed))]
    if c.section:
        items.append(("section", _e(c.section)))
    if c.known:
        items.append(("listed as", f"<code>{_e(c.known)}</code>"))
    if c.saved:
        items.append(("stream", f"<pre>{_e(c.saved)}</pre>"))
    if c.replay:
        items.append(("replay", f"<pre>{_e(c.replay)}</pre>"))
    if c.state_diff:
        diff = "\n".join(f"{d.get('path')}: {d.get('what')}: expected {d.get('expected')}, "
                         f"restored {d.get('restored')}" for d in c.state_diff[:20])
        items.append(("state", f"<pre>{_e(diff)}</pre>"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return (f'<div class="case" style="border-left-color:var(--{cls})">'
            f'<div class="id">{_e(c.id)}</div><dl>{dl}</dl></div>')


def render_html(runs: list[tuple[str, Run]], title: str = "Conformance matrix") -> str:
    """The matrix of ``runs`` ((folder, Run) pairs, one column each) as one HTML page."""
    used: set[str] = set()
    labels = [run.label(used, folder.rstrip("/").rsplit("/", 1)[-1] or folder)
              for folder, run in runs]
    plain = [run for _, run in runs]
    rows = rows_of(plain)
    formats = list(dict.fromkeys(r.format for r in rows))
    n_cases = sum(len(run.cases) for run in plain)
    present = Counter()
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           f"<title>{_e(title)}: {_e(', '.join(labels))}</title>", f"<style>{_CSS}</style>",
           "</head><body>", "<header>", f"<h1>{_e(title)}</h1>",
           f'<p class="sub">{len([r for r in rows if r.rule])} rules and '
           f'{len([r for r in rows if not r.rule])} other rows · {n_cases} cases · '
           f'{len(runs)} implementation{"s" if len(runs) != 1 else ""} · '
           "each cell: the cases of one rule, coloured by the worst verdict among them; "
           "click it for the cases</p>", '<div class="runs">']
    for label, run in zip(labels, plain):
        counts = Counter(case_class(c) for c in run.cases)
        present.update(counts)
        meta = f"{run.kind}, role {run.role} · {', '.join(run.formats) or 'all formats'} · {run.started}"
        out.append(f'<div class="run"><h2>{_e(label)}</h2><div class="meta">{_e(meta)}</div>'
                   f'{_bar(counts, max(1, len(run.cases)))}'
                   f'<div class="counts">{len(run.cases)} cases: {_e(_counts_text(counts))}</div>'
                   + _notes(run) + "</div>")
    out.append("</div></header>")
    # filters
    out.append('<nav><div class="group"><span class="title">Format</span>')
    for fmt in formats:
        n = sum(1 for r in rows if r.format == fmt)
        out.append(f'<label class="chip"><input type="checkbox" name="fmt" value="{_e(fmt)}" checked>'
                   f"{_e(fmt)} <b>{n}</b></label>")
    out.append('</div><div class="group"><span class="title">Verdict</span>')
    for name, label, meaning in CLASSES:
        if present.get(name) or name in ("pass", "fail"):
            out.append(f'<label class="chip" title="{_e(meaning)}"><input type="checkbox" '
                       f'name="verdict" value="{name}" checked><i class="v-{name}"></i>'
                       f"{_e(label)} <b>{present.get(name, 0)}</b></label>")
    out.append('</div><div class="group"><input type="search" id="q" placeholder="rule, case id, section…">')
    if len(runs) > 1:
        out.append('<label class="chip off"><input type="checkbox" id="diff">only rows that differ</label>')
    out.append('<span class="title"><span id="shown"></span> rows shown</span></div></nav>')
    # the matrix
    out.append('<main><table class="matrix"><thead><tr><th>rule</th><th>severity</th>')
    out += [f'<th class="impl">{_e(label)}</th>' for label in labels]
    out.append("</tr></thead><tbody>")
    panels = []
    width = 2 + len(runs)
    last_fmt = last_group = None
    for ri, row in enumerate(rows):
        if row.format != last_fmt:
            spec = ""
            docs = {_section_parts(r.group)[0] for r in rows if r.format == row.format} - {""}
            if docs:
                spec = f"<span>{_e(', '.join(sorted(docs)))}</span>"
            out.append(f'<tr class="fmt" data-key="{_e(row.format)}"><th colspan="{width}">'
                       f"{_e(row.format)}{spec}</th></tr>")
            last_fmt, last_group = row.format, None
        group_key = f"{row.format}|{row.group}"
        if row.group != last_group:
            doc, sec = _section_parts(row.group)
            out.append(f'<tr class="sec" data-key="{_e(group_key)}"><th colspan="{width}">'
                       f"{_e(sec)}" + (f"<span>{_e(doc)}</span>" if doc else "") + "</th></tr>")
            last_group = row.group
        classes = []
        cells = []
        for ci, cases in enumerate(row.cells):
            if not cases:
                cells.append('<td class="cell none">—</td>')
                classes.append("")
                continue
            counts = Counter(case_class(c) for c in cases)
            worst = _worst(counts)
            classes.append(worst)
            good = counts.get("pass", 0) + counts.get("reported", 0) + counts.get("known", 0)
            text = f"{good}/{len(cases)}" if worst in ("pass", "reported", "known") else \
                f"{sum(n for k, n in counts.items() if _ORDER[k] <= _ORDER['flaky'])}/{len(cases)}"
            anchor = f"d{ri}-{ci}"
            mix = _bar(counts, len(cases)).replace('class="bar"', 'class="bar mix"') \
                if len(counts) > 1 else ""
            cells.append(f'<td class="cell"><a class="v-{worst}" href="#{anchor}" '
                         f'title="{_e(_counts_text(counts))}">{text}'
                         f"<small>{_e(_LABEL[worst])}</small>{mix}</a></td>")
            order = sorted(cases, key=lambda c: (_ORDER[case_class(c)], c.id))
            panels.append(
                f'<section class="detail" id="{anchor}"><a class="close" href="#" '
                f'title="close (Esc)">×</a><h3>{_e(row.label)}</h3>'
                f'<div class="where">{_e(labels[ci])} · {_e(row.group)} · {len(cases)} case'
                f'{"s" if len(cases) != 1 else ""}: {_e(_counts_text(counts))}'
                + (f"<br>{_e(row.severity)}: {_e(row.summary)}" if row.summary else "")
                + "</div>" + "".join(_case_html(c) for c in order[:500])
                + (f"<p>… and {len(order) - 500} more (results.json has them all)</p>"
                   if len(order) > 500 else "") + "</section>")
        kinds = sorted({c for c in classes if c}, key=_ORDER.__getitem__)
        differ = "1" if len({c for c in classes if c}) > 1 else "0"   # a run without the rule's cases: no difference
        text = " ".join([row.key, row.label, row.group, row.summary,
                         *(c.id for cases in row.cells for c in cases)]).lower()
        summary = f'<span class="sum" title="{_e(row.summary)}">{_e(row.summary)}</span>' \
            if row.summary else ""
        out.append(f'<tr class="rule" data-format="{_e(row.format)}" data-group="{_e(group_key)}" '
                   f'data-classes="{" ".join(kinds)}" data-differ="{differ}" '
                   f'data-text="{_e(text)}"><th><code>{_e(row.label)}</code>{summary}</th>'
                   f'<td class="sev">{_e(row.severity)}</td>{"".join(cells)}</tr>')
    out.append('</tbody></table><div class="empty">No row matches the filters.</div>')
    out.append('<p class="legend">' + " · ".join(
        f'<span class="tag v-{n}">{_e(label)}</span> {_e(meaning)}' for n, label, meaning in CLASSES
        if present.get(n)) + "</p></main>")
    out.append("<footer>Written by xenstream-conformance; each cell's cases are also in the "
               "run's results.json.</footer>")
    out += panels
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def cell_count(runs: list[Run]) -> int:
    """How many cells (``td.cell``) the matrix of ``runs`` has: rows × runs."""
    return len(rows_of(runs)) * len(runs)

