"""The registry of stream formats: every list of formats derives from here.

:data:`FORMAT_MODULES` names each format (the name given to ``xenstream
verify -f``) and the module that defines its ``CODEC`` (:class:`Codec`);
:data:`SPECS` the document that specifies it (rule citations).  The rule
catalogue, the hand-written examples (``reference/examples/<format>.py``),
the strategies (``strategies/<format>.py``), the corpus folders, the fuzz
targets and the command line all take their formats from here, and what the
corpus, fuzzers and strategies need to know of a format (sniffing its header,
the spans of its items, recognising it by its magic, the smaller variants the
reducer tries, whether a valid stream is kept whole) is a property of its codec.  This module imports
nothing of the package at load time: the rules (:mod:`.rules`) take
:data:`SPECS` from it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

#: Format name -> module that defines its ``CODEC``, in the order every list of formats follows.
FORMAT_MODULES: dict[str, str] = {
    "libxc": "xenstream.reference.libxc",
    "libxl": "xenstream.reference.libxl",
    "xl": "xenstream.reference.xl",
    "xenstore": "xenstream.reference.xenstore",
    "legacy": "xenstream.reference.legacy",
    "libvirt": "xenstream.reference.libvirt",
    "xenopsd": "xenstream.reference.xenopsd",
}

#: Specification documents, by the format (the ``spec`` of its rules).
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

#: An item of a stream found without trusting it: (start, end, layer).
Span = tuple[int, int, str]

#: How many first octets a codec's ``recognise`` is given.
RECOGNISE_OCTETS = 64


def names() -> tuple[str, ...]:
    """The formats this project specifies, in registry order."""
    return tuple(name for name in FORMAT_MODULES if name in SPECS)


def submodules(package: str) -> tuple[str, ...]:
    """``package.<format>`` for every format: where examples and strategies live."""
    return tuple(f"{package}.{name}" for name in names())


@dataclass(frozen=True)
class Codec:
    name: str
    description: str
    #: Streaming validation: reads ``Source`` to its end, reporting through the
    #: checker; raises StreamError (already recorded) when it cannot go on.
    validate: Callable[..., None]
    #: bytes (or a Source) -> typed stream value; raises StreamError.
    decode: Callable[..., Any]
    #: typed stream value -> bytes
    encode: Callable[[Any], bytes]
    #: Source, Checker -> items for ``xenstream dump`` (JSON-able dicts)
    dump: Callable[..., Iterator[dict]]
    #: items -> lines of text; None means the generic renderer
    render_text: Callable[[Iterator[dict]], Iterator[str]] | None = None
    #: keyword options that validate/decode/dump take: what the stream itself
    #: does not say (a legacy image's toolstack width, say)
    options: tuple[str, ...] = ()
    #: bytes -> (version, byteorder) read from the stream's header, None where it cannot tell
    sniff: Callable[[bytes], tuple[int | None, str | None]] = lambda data: (None, None)
    #: (bytes, options) -> (the spans of the whole items found from offset 0, where the walk
    #: stopped); never raises, never trusts a length (the reducer and the mutating fuzzers)
    spans: Callable[..., tuple[list[Span], int]] = lambda data, options=None: ([], 0)
    #: the first octets of a file (up to :data:`RECOGNISE_OCTETS`) -> why they are this
    #: format's (its magic), or None; for ``xenstream verify`` without ``-f`` (:mod:`.detect`)
    recognise: Callable[[bytes], str | None] = lambda prefix: None
    #: False for a format without a magic (legacy images): tried after every other one
    recognise_by_magic: bool = True
    #: (bytes, options) -> smaller variants of the stream, each a page batch cut to its first
    #: pages with its count (and a record's length) fixed: what the reducer tries where
    #: deleting whole items cannot shrink a stream's one batch; never raises
    trim: Callable[..., Iterator[bytes]] = lambda data, options=None: iter(())
    #: True where a valid stream (or one breaking only rules that bind writers) carries a guest
    #: a real restorer restores: its records name each other's pfns (page tables, start info,
    #: p2m frames, vCPU contexts), so the corpus keeps such a stream whole, never reduced
    keep_whole: bool = False

    def pick_options(self, meta: dict) -> dict:
        """The entries of ``meta`` (an example's or a corpus entry's) that are options of this codec."""
        return {k: meta[k] for k in self.options if meta.get(k) is not None}


def by_magic(*magics: tuple[bytes, str]) -> Callable[[bytes], str | None]:
    """A codec's ``recognise`` for a format told by its first octets: ``(magic, what it is)``
    pairs, the first that the prefix starts with names the reason."""
    def recognise(prefix: bytes) -> str | None:
        for magic, what in magics:
            if prefix.startswith(magic):
                return f"starts with {what}"
        return None
    return recognise


def spans_of_dump(dump: Callable[..., Iterator[dict]], data: bytes, options: dict | None = None, base: int = 0,
                  out: list | None = None, layer: str = "") -> tuple[list[Span], int]:
    """A codec's ``spans`` for a format whose items only its reader can find (a legacy image,
    a container): the spans between the offsets ``dump`` reports from ``base``, each labelled
    with the layer of the first item dumped at its start (``layer`` where none is); where
    they stop.  A malformed stream stops the dump anywhere, and what it reported stands."""
    from .checker import Checker
    from .source import Source

    out = [] if out is None else out
    starts: dict[int, str] = {}
    try:
        for item in dump(Source.from_bytes(data), Checker(), **(options or {})):
            off = item.get("offset")
            if isinstance(off, int) and base <= off <= len(data):
                starts.setdefault(off, str(item.get("layer") or layer))
    except Exception:  # noqa: BLE001 - a malformed stream stops the dump anywhere
        pass
    starts.setdefault(base, layer)
    points = sorted(starts)
    out += [(a, b, starts[a]) for a, b in zip(points, points[1:])]
    return out, points[-1]


def get_codec(name: str) -> Codec:
    module = FORMAT_MODULES.get(name)
    if module is None:
        from .errors import UsageError

        raise UsageError(f"unknown format {name!r}; known: {', '.join(FORMAT_MODULES)}")
    return importlib.import_module(module).CODEC


def validate(src, fmt: str, checker, **options):
    """Run ``fmt``'s validator over ``src``; the checker holds the verdict."""
    from .errors import StreamError

    try:
        get_codec(fmt).validate(src, checker, **options)
    except StreamError:
        pass  # recorded by the checker
    return checker
