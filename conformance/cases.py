"""The cases the conformance suite gives an implementation, from every source.

A :class:`Case` is one stream with the verdict the specification asks for.
Cases come from

``examples``
    the hand-written examples (``xenstream.reference.examples``);
``corpus``
    the regression files listed in ``corpus/manifest.json``;
``large``
    valid streams of each format several times larger than a pipe buffer
    (about 4 MiB; xenstore about 3 MiB), built on the fly and never
    committed, each with one truncation in the middle of a body: delivered
    in every mode whatever ``--delivery`` says, they show a reader that takes
    a short read for the end of its input;
``prefixes``
    strict prefixes of every valid case above (but the large ones): a truncated stream, which every
    reader must refuse.  A sample of lengths is taken, boundary-aware: inside
    the headers, at and just after each structure the reference reads, and
    inside bodies;
``strategies``
    the Hypothesis strategies (``xenstream.strategies``); those are not
    listed here but drawn by the suite's property tests.

Every case has a stable id, ``FORMAT/RULE/NAME-HASH`` (``valid`` for a valid
stream, ``prefix`` for a truncation), the hash being the first 8 hex digits
of the stream's SHA-256: an id changes only when the stream does, so that a
known-failures file survives regenerating the corpus or the examples.

A corpus whose manifest cannot be read, or an entry whose file is missing or
does not match its hash, gives a note (shown in the run's header) instead of
its cases.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

ACCEPT, REJECT, WRITER, EITHER = "accept", "reject", "writer", "either"
EXPECTED = (ACCEPT, REJECT, WRITER, EITHER)
SOURCES = ("examples", "corpus", "large", "prefixes", "strategies")

#: Prefix lengths checked per valid stream (at most).
PREFIX_SAMPLE = 8

_UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]+")


def short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def make_id(fmt: str, rule: str | None, name: str, data: bytes) -> str:
    name = _UNSAFE.sub("_", name).strip("_") or "case"
    return f"{fmt}/{rule or 'valid'}/{name}-{short_hash(data)}"


@dataclass(frozen=True)
class Case:
    id: str
    format: str
    data: bytes = field(repr=False)
    rule: str | None
    expected: str          # accept, reject, writer, either
    description: str
    source: str            # examples, corpus, prefixes, strategies
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def family(self) -> str:
        """The rule family a report groups the case under: its rule without the
        last part (``libxc.page_data``; a truncation, the rule the reference
        refuses it under); "" for a valid stream, which breaks no rule."""
        return rule_family(self.rule)

    @property
    def citation(self) -> str:
        return citation(self.rule)

    @property
    def options(self) -> dict:
        """Format options from the metadata (a legacy image's width, guest type, ...)."""
        return format_options(self.format, self.meta)


def format_options(fmt: str, meta: dict) -> dict:
    """The entries of ``meta`` that ``fmt``'s codec takes as options (none for
    most formats: only legacy images do not say everything about themselves)."""
    if not meta:
        return {}
    from xenstream.reference.errors import UsageError
    from xenstream.reference.formats import get_codec

    try:
        codec = get_codec(fmt)
    except UsageError:   # a corpus entry of a format the reference does not read
        return {}
    return codec.pick_options(meta)


def rule_family(rule_id: str | None) -> str:
    """``libxc.page_data.count`` -> ``libxc.page_data``; "" for no rule."""
    return rule_id.rsplit(".", 1)[0] if rule_id else ""


def section_of(rule_id: str | None) -> str:
    """The spec document and section a rule cites, "" for none."""
    if rule_id is None:
        return ""
    try:
        from xenstream.reference.rules import get_rule

        return get_rule(rule_id).citation
    except KeyError:
        return ""


def citation(rule_id: str | None) -> str:
    if rule_id is None:
        return "(valid stream)"
    try:
        from xenstream.reference.rules import get_rule

        rule = get_rule(rule_id)
    except KeyError:
        return f"{rule_id} (not in the rule catalogue)"
    return f"{rule.id} [{rule.severity.value}]: {rule.summary} ({rule.citation})"


@dataclass
class Collection:
    cases: list[Case] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, case: Case, seen: set[str]) -> None:
        if case.id in seen:
            return
        seen.add(case.id)
        self.cases.append(case)


# --------------------------------------------------------------------------
# sources


def from_examples(notes: list[str]) -> list[Case]:
    from xenstream.reference.examples import all_examples

    out = []
    for ex in all_examples():
        out.append(Case(
            id=make_id(ex.format, ex.rule, ex.name, ex.data), format=ex.format, data=ex.data,
            rule=ex.rule, expected=ex.expected, description=ex.description,
            source="examples", meta=dict(ex.meta)))
    return out


def default_corpus_dir() -> Path:
    import xenstream.corpus

    return Path(xenstream.corpus.__file__).resolve().parent


def _manifest(corpus_dir: Path | None, notes: list[str]) -> list:
    """The entries of ``corpus_dir``'s ``manifest.json`` (the package's corpus by default)."""
    manifest = (corpus_dir or default_corpus_dir()) / "manifest.json"
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"corpus: cannot read {manifest}: {exc}")
        return []
    if not isinstance(entries, list):
        notes.append(f"corpus: {manifest} is not a list of entries")
        return []
    return entries


def corpus_formats(corpus_dir: Path | None = None) -> list[str]:
    """The formats the corpus's entries name (from its manifest alone)."""
    return list(dict.fromkeys(e["format"] for e in _manifest(corpus_dir, [])
                              if isinstance(e, dict) and isinstance(e.get("format"), str)))


def from_corpus(notes: list[str], corpus_dir: Path | None = None) -> list[Case]:
    corpus_dir = corpus_dir or default_corpus_dir()
    entries = _manifest(corpus_dir, notes)
    out = []
    for entry in entries:
        try:
            path = corpus_dir / entry["path"]
            data = path.read_bytes()
            fmt = entry["format"]
            expected = entry["expected"]
        except (KeyError, TypeError, OSError) as exc:
            notes.append(f"corpus: skipping entry {entry!r:.80}: {exc}")
            continue
        if expected not in EXPECTED:
            notes.append(f"corpus: {entry.get('id')}: unknown expected verdict {expected!r}")
            continue
        sha = entry.get("sha256")
        if sha and hashlib.sha256(data).hexdigest() != sha:
            notes.append(f"corpus: {entry.get('id')}: {path.name} does not match its sha256; skipped")
            continue
        name = str(entry.get("id") or Path(entry["path"]).stem).rsplit("/", 1)[-1]
        meta = {k: entry[k] for k in ("version", "byteorder", "section", "origin", "path", "id")
                if k in entry}
        meta.update(entry.get("meta") or {})
        out.append(Case(
            id=make_id(fmt, entry.get("rule"), name, data), format=fmt, data=data,
            rule=entry.get("rule"), expected=expected,
            description=entry.get("description", ""), source="corpus", meta=meta))
    return out


def large_streams() -> list[tuple[str, str, bytes, dict, str]]:
    """(format, name, stream, meta, description) of the large valid streams."""
    from xenstream.reference import build, legacy, libxc, libxl, xl
    from xenstream.reference.formats import get_codec
    from xenstream.reference.libxc import DomainType
    from xenstream.reference import xenstore_build

    from xenstream.reference import container_profiles, libvirt, xenopsd

    pages = 1024  # 4 MiB of page contents
    xc_pv = build.libxc_stream(DomainType.X86_PV, pages=pages, batch=128)
    out = [
        ("libxc", "pv-4mib", libxc.encode(xc_pv),
         {}, "an x86 PV stream of 1024 pages in PAGE_DATA records of 128"),
        ("libxl", "hvm-4mib", libxl.encode(build.libxl_stream(DomainType.X86_HVM, pages=pages)), {},
         "an HVM libxl stream of 1024 pages"),
        ("xl", "hvm-4mib", xl.encode(build.xl_stream(DomainType.X86_HVM, pages=pages)), {},
         "an xl save file of an HVM guest with 1024 pages"),
        ("legacy", "hvm64-4mib",
         legacy.encode(legacy.build_hvm_stream(width=64, p2m_size=pages, qemu=None)),
         {"width": 64, "guest": "hvm", "qemu": False},
         "a 64-bit legacy HVM image of 1024 pages (the qemu record saved elsewhere)"),
        ("xenstore", "live-update-3000-domains",
         get_codec("xenstore").encode(xenstore_build.live_update_state(
             domains=tuple(range(1, 3001)), transactions=False)),
         {}, "a live-update stream of a host with 3000 guests"),
        ("libvirt", "hvm-4mib", libvirt.encode(libvirt.LibvirtImage.make(
            container_profiles.domain_xml("hvm"), build.libxl_stream(DomainType.X86_HVM, pages=pages))), {},
         "a libvirt save image of an HVM guest with 1024 pages"),
        ("xenopsd", "pv-4mib", xenopsd.encode(xenopsd.structured(
            xenopsd.xenops(), xenopsd.Record(xenopsd.RecordType.LIBXC, xc_pv),
            xenopsd.Record(xenopsd.RecordType.END_OF_IMAGE))), {},
         "a xenopsd suspend image of a PV guest with 1024 pages"),
    ]
    return out


def from_large(notes: list[str]) -> list[Case]:
    """The large valid streams and one truncation of each (see the module docstring)."""
    from xenstream.reference.checker import Checker
    from xenstream.reference.formats import validate
    from xenstream.reference.rules import Role
    from xenstream.reference.source import Source

    out = []
    for fmt, name, data, meta, description in large_streams():
        case = Case(id=make_id(fmt, None, name, data), format=fmt, data=data, rule=None,
                    expected=ACCEPT, description=description + f" ({len(data)} octets)",
                    source="large", meta=dict(meta))
        out.append(case)
        cut = len(data) // 2 + 5   # inside a body, off any alignment
        prefix = data[:cut]
        first = validate(Source.from_bytes(prefix), fmt, Checker(Role.RESTORE),
                         **case.options).first_refused()
        if first is None:  # pragma: no cover - a bug of the reference, not a case
            raise AssertionError(f"the reference accepts the first {cut} octets of {case.id}")
        out.append(Case(
            id=f"{fmt}/prefix/{case.id.rsplit('/', 1)[-1]}@{cut}-{short_hash(prefix)}",
            format=fmt, data=prefix, rule=first.rule.id, expected=REJECT,
            description=f"the first {cut} of {len(data)} octets of {case.id}",
            source="large", meta={**meta, "of": case.id, "length": cut}))
    return out


# --------------------------------------------------------------------------
# truncation


class _TracingSource:
    """Wraps a reference Source and notes where every read starts and ends,
    which are the structure boundaries of the stream as the reference sees it."""

    def __init__(self, src, marks: set[int]):
        self._src = src
        self._marks = marks

    def __getattr__(self, name):
        return getattr(self._src, name)

    @property
    def offset(self) -> int:
        return self._src.offset

    def read_exact(self, n, what):
        start = self._src.offset
        self._marks.add(start)
        self._marks.add(start + n)
        return self._src.read_exact(n, what)

    def read_upto(self, n):
        self._marks.add(self._src.offset)
        out = self._src.read_upto(n)
        self._marks.add(self._src.offset)
        return out

    def chunks(self, n, what, *args):
        start = self._src.offset
        self._marks.add(start)
        self._marks.add(start + n)
        return self._src.chunks(n, what, *args)

    def skip(self, n, what):
        start = self._src.offset
        self._marks.add(start)
        self._marks.add(start + n)
        return self._src.skip(n, what)

    def at_eof(self):
        return self._src.at_eof()


def boundaries(fmt: str, data: bytes, options: dict | None = None) -> list[int]:
    """Offsets where the reference reader starts or ends a read of ``data``."""
    from xenstream.reference.checker import Checker
    from xenstream.reference.errors import StreamError, UsageError
    from xenstream.reference.formats import get_codec
    from xenstream.reference.rules import Role
    from xenstream.reference.source import Source

    try:
        codec = get_codec(fmt)
    except UsageError:   # a format the reference does not read: no structure to cut at
        return []
    marks: set[int] = set()
    try:
        codec.validate(_TracingSource(Source.from_bytes(data), marks),
                                Checker(Role.RESTORE), **(options or {}))
    except StreamError:
        pass   # where the reader stopped is a boundary like the others
    return sorted(m for m in marks if 0 < m < len(data))


def prefix_lengths(fmt: str, data: bytes, sample: int = PREFIX_SAMPLE,
                   options: dict | None = None) -> list[int]:
    """A deterministic, boundary-aware sample of strict prefix lengths of ``data``.

    Always the empty stream and one octet short; then lengths inside the first
    header, at a structure boundary, just after one, and inside a body, spread
    over the whole stream; the choice depends only on the stream's content.
    """
    n = len(data)
    if n == 0 or sample <= 0:
        return []
    marks = boundaries(fmt, data, options)
    chosen: list[int] = []

    def pick(x: int) -> None:
        if 0 <= x < n and x not in chosen and len(chosen) < sample:
            chosen.append(x)

    pick(0)
    pick(n - 1)
    first = marks[0] if marks else min(n, 8)
    pick(first // 2)                               # inside the first header
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    interior = [m for m in marks if 0 < m < n]
    mids = [(a + b) // 2 for a, b in zip(interior, interior[1:]) if b - a > 1]
    kinds = (interior, [m + 1 for m in interior], mids)  # at, just after, inside
    k = 0
    while len(chosen) < sample and any(kinds):
        pool = kinds[k % 3]
        if pool:
            pick(pool.pop((seed >> (k * 5 % 60)) % len(pool)))
        k += 1
    if len(chosen) < sample:
        for x in (1, n // 2, n - 8, n - 2):
            pick(x)
    return sorted(chosen)


def prefixes_of(case: Case, sample: int = PREFIX_SAMPLE) -> list[Case]:
    """Truncations of a valid case, each expected to be refused.

    The rule shown for a prefix is the one the reference refuses it under (its
    format's truncation rule, usually); a prefix the reference would accept is
    not a truncation of anything and is left out.
    """
    from xenstream.reference.checker import Checker
    from xenstream.reference.formats import validate
    from xenstream.reference.rules import Role
    from xenstream.reference.source import Source

    out = []
    options = case.options
    for length in prefix_lengths(case.format, case.data, sample, options):
        data = case.data[:length]
        first = validate(Source.from_bytes(data), case.format, Checker(Role.RESTORE),
                         **options).first_refused()
        if first is None:
            continue
        base = case.id.rsplit("/", 1)[-1]
        out.append(Case(
            id=f"{case.format}/prefix/{base}@{length}-{short_hash(data)}",
            format=case.format, data=data, rule=first.rule.id, expected=REJECT,
            description=f"the first {length} of {len(case.data)} octets of {case.id}",
            source="prefixes", meta={**case.meta, "of": case.id, "length": length}))
    return out


# --------------------------------------------------------------------------


def collect(sources: Iterable[str] = SOURCES, *, formats: Iterable[str] | None = None,
            corpus_dir: Path | None = None, prefix_sample: int = PREFIX_SAMPLE) -> Collection:
    """Every listed case of the chosen sources, in a stable order, ids unique.

    ``formats`` limits the cases to those formats; ``prefixes`` derives from
    the valid cases of the other chosen sources.
    """
    sources = set(sources)
    wanted = None if formats is None else set(formats)
    coll = Collection()
    seen: set[str] = set()
    base: list[Case] = []
    for name, load in (("examples", lambda: from_examples(coll.notes)),
                       ("corpus", lambda: from_corpus(coll.notes, corpus_dir)),
                       ("large", lambda: from_large(coll.notes))):
        if name in sources:
            base += load()
    for case in base:
        if wanted is None or case.format in wanted:
            coll.add(case, seen)
    if "prefixes" in sources:
        for case in list(coll.cases):
            if case.expected == ACCEPT and case.source not in ("prefixes", "large"):
                for p in prefixes_of(case, prefix_sample):
                    coll.add(p, seen)
    return coll


def failure_path(folder: Path, case_id: str) -> Path:
    """Where a failing case's stream is saved: ``FOLDER/FORMAT/RULE/NAME-HASH.bin``."""
    parts = [_UNSAFE.sub("_", p).lstrip(".") or "_" for p in case_id.split("/")]
    return folder.joinpath(*parts[:-1], parts[-1] + ".bin")
