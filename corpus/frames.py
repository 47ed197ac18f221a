"""Where the items (records, chunks, headers) of a stream start, found without trusting it.

The reducer (:mod:`.reduce`) deletes whole items and the structure-aware fuzz
targets mutate one item at a time; both need item boundaries, also in
malformed streams.  Each format's codec walks its own items
(``Codec.spans``: the record framing of libxc, libxl with its embedded libxc
stream, and xenstore, the xl header then its body, a legacy image's items at
the offsets its reader reports) and stops at the first that does not fit the
input; here whatever precedes or follows the walk becomes one span more.
Nothing here raises on any input.
"""

from __future__ import annotations

from xenstream.reference.formats import get_codec


def spans(fmt: str, data: bytes, options: dict | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, layer)`` of each item found, in order, covering ``data`` from 0.

    The last span runs to the end of the input when the walk stopped early (a
    truncated or garbled tail is one item).  ``options`` are the codec's
    (a legacy image's width, guest type, ...).
    """
    data = bytes(data)
    out, at = get_codec(fmt).spans(data, options)
    if out and out[0][0] > 0:
        out.insert(0, (0, out[0][0], "prefix"))
    if at < len(data):
        out.append((at, len(data), "tail"))
    return out


def boundaries(fmt: str, data: bytes, options: dict | None = None) -> list[int]:
    """Sorted item start offsets, plus ``len(data)``."""
    points = {0, len(data)}
    for a, b, _ in spans(fmt, data, options):
        points.add(a)
        points.add(b)
    return sorted(p for p in points if 0 <= p <= len(data))
