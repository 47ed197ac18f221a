"""``xenstream corpus build``: regenerate the corpus files and manifest, byte for byte.

Sources, in this order:

1. every hand-written example (``xenstream.reference.examples.all_examples()``),
   origin ``hand-written``;
2. the writer profiles (``xenstream.reference.profiles``): streams shaped as
   Xen's own writers shape them, origin ``writer-profile: WRITER, Xen RELEASE
   (PROFILE)``, never reduced (their shape is the point);
3. streams from the Hypothesis strategies, drawn with fixed seeds (see
   :mod:`.seeds`), origin ``strategy``, when the strategies package exists;
4. the entries with origin ``fuzz`` (or a real writer's, such as
   ``xenstored-4.17``: :data:`.manifest.KEPT_ORIGINS`) already in the target folder's manifest:
   they are committed by hand (``xenstream corpus add``) and kept as they are.

A stream larger than :data:`REDUCE_ABOVE` octets is reduced before it is
written (whole records, chunks or page batches deleted, see :mod:`.reduce`)
as long as the reference still says exactly the same about it: the same
verdict in both roles and the same findings for a malformed stream, no
findings and the same kinds of record for a valid one.  The entry's ``meta``
names the example it was reduced from.  Everything is deterministic, so that
building twice gives identical files.
"""

from __future__ import annotations

import json

import os
from dataclasses import dataclass, field
from pathlib import Path

from xenstream.reference.formats import get_codec
from xenstream.reference.rules import get_rule

from . import manifest as mf
from .reduce import reduce
from .verdict import options_of, reader_of, record_kinds, signature, sniff

#: Streams above this size are reduced (page payloads dominate valid streams).
REDUCE_ABOVE = 8 * 1024
#: Reducer budget per stream (predicate calls); ample for item-level reduction.
REDUCE_TESTS = 4000
#: Smallest piece the octet pass deletes from a malformed stream.
OCTET_CHUNK = 1024


def default_dir() -> Path:
    return Path(__file__).resolve().parent


@dataclass
class Item:
    entry: mf.Entry
    data: bytes


@dataclass
class BuildResult:
    folder: Path
    entries: list[mf.Entry]
    written: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum((self.folder / e.path).stat().st_size for e in self.entries)


def shrink(fmt: str, data: bytes, valid: bool, meta: dict | None = None,
           expected: str | None = None, *, above: int = REDUCE_ABOVE,
           octet_chunk: int = OCTET_CHUNK) -> bytes:
    """``data`` reduced while the reference says the same about it (see the module docstring).

    Streams of ``above`` octets or fewer are left as they are; the octet pass
    over a malformed stream deletes pieces of ``octet_chunk`` octets or more.
    """
    codec = get_codec(fmt)
    if len(data) <= above or ((valid or expected == "writer") and codec.keep_whole):
        # a stream a restorer must restore is kept whole (Codec.keep_whole)
        return data
    opts = options_of(fmt, meta)
    reader = reader_of(meta)
    want = signature(fmt, data, opts, reader)
    if valid:
        kinds = record_kinds(fmt, data, opts)

        def keep(candidate: bytes) -> bool:
            return signature(fmt, candidate, opts) == want and record_kinds(fmt, candidate, opts) == kinds
    else:
        def keep(candidate: bytes) -> bool:
            return signature(fmt, candidate, opts, reader) == want
    data = reduce(data, keep, fmt=fmt, max_tests=REDUCE_TESTS, options=opts,
                  variants=lambda d: codec.trim(d, opts))
    if not valid and len(data) > above:
        # a malformed stream the reader gives up on early: whatever follows
        # the finding is opaque to the item pass; drop it in pieces
        data = reduce(data, keep, fmt=fmt, items=False, octets=True, min_chunk=octet_chunk,
                      max_tests=REDUCE_TESTS, options=opts)
    return data


def make_entry(fmt: str, data: bytes, *, expected: str, rule: str | None, name: str,
               description: str, origin: str, meta: dict | None = None) -> mf.Entry:
    meta = dict(meta or {})
    version, byteorder = meta.pop("version", None), meta.pop("byteorder", None)
    sniffed_version, sniffed_order = sniff(fmt, data)
    version = version if version is not None else sniffed_version
    byteorder = byteorder if byteorder is not None else sniffed_order
    fname = mf.file_name(fmt, expected, rule, name)
    return mf.Entry(
        id=f"{fmt}/{fname[:-len(mf.SUFFIX)]}", path=f"{fmt}/{fname}", format=fmt,
        version=version if isinstance(version, int) else None,
        byteorder=byteorder if byteorder in ("little", "big") else None,
        expected=expected, rule=rule, section=None if rule is None else get_rule(rule).section,
        description=description, origin=origin, sha256=mf.sha256(data), meta=_jsonable(meta))


def _jsonable(meta: dict) -> dict:
    out = {}
    for k, v in sorted(meta.items()):
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[str(k)] = v
        elif hasattr(v, "value"):
            out[str(k)] = v.value
        elif isinstance(v, (dict, list, tuple)):  # JSON-able already (a real dump's store)
            out[str(k)] = json.loads(json.dumps(v))
        else:
            out[str(k)] = str(v)
    return out


def from_examples(notes: list[str] | None = None) -> list[Item]:
    from xenstream.reference.examples import all_examples

    items: list[Item] = []
    for ex in all_examples():
        if ex.meta.get("corpus") is False:  # too large to ship (an 8 MiB record)
            continue
        data = shrink(ex.format, ex.data, ex.rule is None, ex.meta, ex.expected)
        meta = dict(ex.meta)
        description = ex.description
        if data != ex.data:
            meta["reduced_from"] = ex.case_id
            meta["original_size"] = len(ex.data)
            description += f" (reduced for the corpus from {len(ex.data)} to {len(data)} octets)"
        elif ex.offset is not None:
            meta["offset"] = ex.offset
        items.append(Item(make_entry(ex.format, data, expected=ex.expected, rule=ex.rule, name=ex.name,
                                     description=description, origin="hand-written", meta=meta), data))
    return items


def from_profiles(notes: list[str]) -> list[Item]:
    """The writer profiles' showcase streams, as Xen's writers write them (not reduced)."""
    from xenstream.reference import profiles

    items: list[Item] = []
    streams = [(layer, prof.name, prof.encode(layer), profiles.origin(layer, prof),
                {"profile": prof.name, "release": profiles.release_name(prof.release), "guest": prof.guest,
                 "mode": prof.mode}, f"{layer} stream of a {prof.guest} guest as Xen "
                f"{profiles.release_name(prof.release)}'s writers write it ({prof.mode}); {prof.sources}")
               for layer, prof in profiles.showcase()]
    streams.append(("xenstore", "c-xenstored", profiles.c_xenstored(),
                    "writer-profile: C xenstored live-update dump, Xen 4.17",
                    {"profile": "c-xenstored"}, "a live-update dump as C xenstored writes it "
                    "(tools/xenstored/lu.c lu_dump_state() and the dump_state_* functions)"))
    from xenstream.reference import container_profiles as CP

    for name in CP.SHOWCASE:
        prof = CP.get(name)
        streams.append((prof.format, name, prof.encode(), CP.origin(prof), {"profile": name},
                        f"a {prof.guest} guest's {prof.format} image as {prof.writer} writes it; {prof.sources}"))
    # libxl only: the legacy builder's page contents and contexts are synthetic, so a real
    # restore of the converted libxc stream fails on content (see profiles.convert_legacy)
    for fmt, guest, width in (("libxl", "hvm", 64), ("libxl", "pv", 32)):
        streams.append((fmt, f"convert-legacy-stream-{guest}{width}",
                        profiles.convert_legacy(fmt, guest=guest, width=width),
                        "writer-profile: convert-legacy-stream, Xen 4.17",
                        {"profile": "convert-legacy-stream"}, f"a {width}-bit {guest} legacy image converted "
                        f"to {fmt} as tools/python/scripts/convert-legacy-stream writes it"))
    for fmt, name, data, origin, meta, description in streams:
        expected, rule = profiles.label(fmt, data)
        items.append(Item(make_entry(fmt, data, expected=expected, rule=rule, name=name,
                                     description=description, origin=origin, meta=meta), data))
    return items


def from_strategies(notes: list[str]) -> list[Item]:
    from .seeds import strategy_samples

    items: list[Item] = []
    for s in strategy_samples(notes):
        data = shrink(s.format, s.data, s.rule is None, s.meta, s.expected)
        meta = dict(s.meta)
        if data != s.data:
            meta["original_size"] = len(s.data)
        items.append(Item(make_entry(s.format, data, expected=s.expected, rule=s.rule, name=s.name,
                                     description=s.description, origin="strategy", meta=meta), data))
    return items


def kept_fuzz_entries(folder: Path, notes: list[str]) -> list[Item]:
    items: list[Item] = []
    for entry in mf.load(folder):
        if entry.origin not in mf.KEPT_ORIGINS:
            continue
        path = folder / entry.path
        if not path.is_file():
            notes.append(f"{entry.origin} entry {entry.id}: {entry.path} is missing; dropped")
            continue
        items.append(Item(entry, path.read_bytes()))
    return items


def collect(folder: Path, *, strategies: bool = True, notes: list[str] | None = None) -> list[Item]:
    notes = notes if notes is not None else []
    items = from_examples(notes)
    items += from_profiles(notes)
    if strategies:
        items += from_strategies(notes)
    items += kept_fuzz_entries(folder, notes)
    out: list[Item] = []
    seen_paths: set[str] = set()
    seen_content: set[tuple] = set()
    for it in items:
        key = (it.entry.format, it.entry.expected, it.entry.rule, it.entry.sha256)
        if key in seen_content:
            notes.append(f"{it.entry.id}: same stream and label as an earlier entry; skipped")
            continue
        if it.entry.path in seen_paths:
            notes.append(f"{it.entry.id}: name taken by an earlier entry; skipped")
            continue
        seen_content.add(key)
        seen_paths.add(it.entry.path)
        out.append(it)
    return out


def build(folder: Path | None = None, *, strategies: bool = True) -> BuildResult:
    """Write every corpus file and the manifest into ``folder`` (default: this package's folder)."""
    from xenstream.reference.outfile import write_atomic

    folder = Path(folder) if folder is not None else default_dir()
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    items = collect(folder, strategies=strategies, notes=notes)
    result = BuildResult(folder, [it.entry for it in items], notes=notes)
    wanted = set()
    for it in items:
        path = folder / it.entry.path
        wanted.add(path.resolve())
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.read_bytes() == it.data:
            result.unchanged += 1
            continue
        write_atomic(path, it.data)
        result.written += 1
    for fmt in mf.FORMATS:
        sub = folder / fmt
        if not sub.is_dir():
            continue
        for path in sorted(sub.glob("*" + mf.SUFFIX)):
            if path.resolve() not in wanted:
                path.unlink()
                result.removed.append(os.path.relpath(path, folder))
    mf.save(folder, result.entries)
    return result
