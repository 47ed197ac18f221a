"""Which format a file is, from its first octets: ``xenstream verify`` and ``dump`` without ``-f``.

Every codec that can tell its streams by their start has a ``recognise``
(:class:`~.formats.Codec`): the formats with a magic (the xl, libvirt and
xenopsd containers, libxc, libxl, xenstore) are asked first, in registry
order; a legacy image, which has none, last.  No magic overlaps another, so
the order among them does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .formats import RECOGNISE_OCTETS, get_codec, names

#: Exit status of ``verify``/``dump`` when no format recognises the input (no verdict:
#: the same as a usage error, which names the way out, ``-f``).
UNRECOGNISED_EXIT = 2


@dataclass(frozen=True)
class Detected:
    format: str
    reason: str


def detect(prefix: bytes) -> Detected | None:
    """The format whose magic ``prefix`` (the first :data:`RECOGNISE_OCTETS` octets) starts with."""
    prefix = bytes(prefix[:RECOGNISE_OCTETS])
    later = []
    for name in names():   # imported one at a time: a libxc stream costs libxc's import only
        codec = get_codec(name)
        if not codec.recognise_by_magic:
            later.append(codec)
            continue
        reason = codec.recognise(prefix)
        if reason:
            return Detected(codec.name, reason)
    for codec in later:
        reason = codec.recognise(prefix)
        if reason:
            return Detected(codec.name, reason)
    return None


def unrecognised_message(name: str, prefix: bytes) -> str:
    shown = prefix[:16].hex(" ") if prefix else "none: the input is empty"
    return (f"{name}: not a save file of any known format (first octets: {shown}); "
            f"name its format with -f ({', '.join(names())})")
