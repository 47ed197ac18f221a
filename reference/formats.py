"""The registry of stream formats.

Each format module exposes a ``CODEC`` (:class:`Codec`) that the CLI, the
strategies and the conformance runner look up by the format's name, so that a
format is added in one place.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .checker import Checker
from .errors import UsageError
from .source import Source

#: Format name -> module that defines its ``CODEC``.
FORMAT_MODULES: dict[str, str] = {
    "libxc": "xenstream.reference.libxc",
    "libxl": "xenstream.reference.libxl",
    "xl": "xenstream.reference.xl",
    "xenstore": "xenstream.reference.xenstore",
    "legacy": "xenstream.reference.legacy",
    "libvirt": "xenstream.reference.libvirt",
    "xenopsd": "xenstream.reference.xenopsd",
}


#: How many first octets a codec's ``recognise`` is given.
RECOGNISE_OCTETS = 64


@dataclass(frozen=True)
class Codec:
    name: str
    description: str
    #: Streaming validation: reads ``Source`` to its end, reporting through the
    #: checker; raises StreamError (already recorded) when it cannot go on.
    validate: Callable[[Source, Checker], None]
    #: bytes (or a Source) -> typed stream value; raises StreamError.
    decode: Callable[..., Any]
    #: typed stream value -> bytes
    encode: Callable[[Any], bytes]
    #: Source, Checker -> items for ``xenstream dump`` (JSON-able dicts)
    dump: Callable[[Source, Checker], Iterator[dict]]
    #: items -> lines of text; None means the generic renderer
    render_text: Callable[[Iterator[dict]], Iterator[str]] | None = None
    #: keyword options that validate/decode/dump take: what the stream itself
    #: does not say (a legacy image's toolstack width, say)
    options: tuple[str, ...] = ()
    #: the first octets of a file (up to :data:`RECOGNISE_OCTETS`) -> why they are this
    #: format's (its magic), or None; for ``xenstream verify`` without ``-f`` (:mod:`.detect`)
    recognise: Callable[[bytes], str | None] | None = None
    #: False for a format without a magic (legacy images): tried after every other one
    recognise_by_magic: bool = True

    def pick_options(self, meta: dict) -> dict:
        """The entries of ``meta`` (an example's or a corpus entry's) that are options of this codec."""
        return {k: meta[k] for k in self.options if meta.get(k) is not None}


def import_optional(module: str):
    """Import ``module``, or return None when it (or its package) does not exist yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        return None


def available() -> list[str]:
    return [name for name, module in FORMAT_MODULES.items() if import_optional(module)]


def get_codec(name: str) -> Codec:
    module = FORMAT_MODULES.get(name)
    if module is None:
        raise UsageError(f"unknown format {name!r}; known: {', '.join(FORMAT_MODULES)}")
    loaded = import_optional(module)
    if loaded is None:
        raise UsageError(f"format {name!r} is not implemented yet")
    return loaded.CODEC


def validate(src: Source, fmt: str, checker: Checker, **options) -> Checker:
    """Run ``fmt``'s validator over ``src``; the checker holds the verdict."""
    from .errors import StreamError

    try:
        get_codec(fmt).validate(src, checker, **options)
    except StreamError:
        pass  # recorded by the checker
    return checker
