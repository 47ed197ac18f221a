"""The registry of stream formats: every list of formats derives from here.

:data:`FORMAT_MODULES` names each format (the name given to ``xenstream
verify -f``) and the module that defines its ``CODEC`` (:class:`Codec`);
:data:`SPECS` the document that specifies it (rule citations).  The rule
catalogue, the hand-written examples (``reference/examples/<format>.py``),
the strategies (``strategies/<format>.py``), the corpus folders, the fuzz
targets and the command line all take their formats from here, and what the
corpus, fuzzers and strategies need to know of a format (sniffing its header,
the spans of its items) is a property of its codec.  This module imports
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
}

#: An item of a stream found without trusting it: (start, end, layer).
Span = tuple[int, int, str]


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

    def pick_options(self, meta: dict) -> dict:
        """The entries of ``meta`` (an example's or a corpus entry's) that are options of this codec."""
        return {k: meta[k] for k in self.options if meta.get(k) is not None}


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
