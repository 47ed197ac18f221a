"""Where the items (records, chunks, headers) of a stream start, found without trusting it.

The reducer (:mod:`.reduce`) deletes whole items and the structure-aware fuzz
targets mutate one item at a time; both need item boundaries, also in
malformed streams.  :func:`spans` walks the common record framing (``type``,
``body_length``, body, padding to 8) of libxc, libxl (with its embedded libxc
stream) and xenstore streams, skips the xl savefile header, and for legacy
images uses the offsets the reference's ``dump`` reports.  It stops at the
first frame that does not fit the input; whatever follows is one last span.
Nothing here raises on any input.
"""

from __future__ import annotations

import struct

from xenstream.reference.checker import Checker
from xenstream.reference.source import Source

LIBXC_HEADERS = 24 + 16   # image header + domain header
LIBXL_HEADER = 16
XENSTORE_HEADER = 16
XL_MAGIC_LEN = 32
XL_WORDS = 16
#: An item this many times over is not walked further (bounds the walk's time).
MAX_ITEMS = 100_000

_LIBXC_CHECKPOINT, _LIBXC_END = 0x0E, 0x00
_LIBXL_LIBXC_CONTEXT, _LIBXL_CHECKPOINT_END = 1, 4


def _u32(data: bytes, off: int, little: bool) -> int:
    return struct.unpack_from("<I" if little else ">I", data, off)[0]


def _walk(data: bytes, start: int, little: bool, out: list[tuple[int, int, str]], layer: str,
          libxc_little: bool | None = None) -> int:
    """Append ``(start, end, layer)`` for each whole frame from ``start``; return where it stopped.

    For a libxl stream (``layer == 'libxl'``) the embedded libxc stream after
    LIBXC_CONTEXT is followed: its 40 header octets are one span, its records
    are framed in ``libxc_little`` byte order, and the layer switches back at
    libxc END or CHECKPOINT (and to libxc again at libxl CHECKPOINT_END).
    """
    at, n = start, len(data)
    cur = layer
    seen_context = False
    while at + 8 <= n and len(out) < MAX_ITEMS:
        lit = little if cur != "libxc" or libxc_little is None else libxc_little
        rtype = _u32(data, at, lit)
        length = _u32(data, at + 4, lit)
        end = at + 8 + length + (-length & 7)
        if end > n:
            break
        out.append((at, end, cur))
        at = end
        if layer == "libxl":
            if cur == "libxl" and rtype == _LIBXL_LIBXC_CONTEXT and not seen_context:
                seen_context = True
                if at + LIBXC_HEADERS > n:
                    break
                libxc_little = not (struct.unpack_from(">H", data, at + 16)[0] & 1)
                out.append((at, at + LIBXC_HEADERS, "libxc-headers"))
                at += LIBXC_HEADERS
                cur = "libxc"
            elif cur == "libxl" and rtype == _LIBXL_CHECKPOINT_END and seen_context:
                cur = "libxc"
            elif cur == "libxc" and rtype in (_LIBXC_END, _LIBXC_CHECKPOINT):
                cur = "libxl"
    return at


def _libxc(data: bytes, base: int, out: list) -> int:
    if len(data) < base + LIBXC_HEADERS:
        return base
    out.append((base, base + LIBXC_HEADERS, "libxc-headers"))
    little = not (struct.unpack_from(">H", data, base + 16)[0] & 1)
    return _walk(data, base + LIBXC_HEADERS, little, out, "libxc")


def _libxl(data: bytes, base: int, out: list) -> int:
    if len(data) < base + LIBXL_HEADER:
        return base
    out.append((base, base + LIBXL_HEADER, "libxl-header"))
    little = not (struct.unpack_from(">I", data, base + 12)[0] & 1)
    return _walk(data, base + LIBXL_HEADER, little, out, "libxl")


def _xenstore(data: bytes, base: int, out: list) -> int:
    if len(data) < base + XENSTORE_HEADER:
        return base
    out.append((base, base + XENSTORE_HEADER, "xenstore-header"))
    little = not (struct.unpack_from(">I", data, base + 12)[0] & 1)
    return _walk(data, base + XENSTORE_HEADER, little, out, "xenstore")


def _dump_offsets(fmt: str, data: bytes, options: dict | None = None) -> list[int]:
    """Item offsets the reference's dump reports (legacy images); [] on any trouble."""
    from xenstream.reference.formats import get_codec

    offsets: list[int] = []
    try:
        for item in get_codec(fmt).dump(Source.from_bytes(data), Checker(), **(options or {})):
            off = item.get("offset")
            if isinstance(off, int) and 0 <= off <= len(data):
                offsets.append(off)
    except Exception:  # noqa: BLE001 - a malformed stream stops the dump anywhere
        pass
    return offsets


def _dumped(fmt: str, data: bytes, out: list, options: dict | None = None) -> int:
    """The items of a container (libvirt, xenopsd) and of the streams inside it, from the
    offsets the reference's dump reports, each span labelled with the item's layer."""
    from xenstream.reference.formats import get_codec

    starts: dict[int, str] = {}
    try:
        for item in get_codec(fmt).dump(Source.from_bytes(data), Checker(), **(options or {})):
            off = item.get("offset")
            if isinstance(off, int) and 0 <= off <= len(data):
                starts.setdefault(off, str(item.get("layer") or fmt))
    except Exception:  # noqa: BLE001 - a malformed stream stops the dump anywhere
        pass
    points = sorted(starts)
    for a, b in zip(points, points[1:]):
        out.append((a, b, starts[a]))
    return points[-1] if points else 0


def _legacy(data: bytes, base: int, out: list, options: dict | None = None) -> int:
    offsets = sorted({o for o in _dump_offsets("legacy", data, options) if o >= base} | {base})
    for a, b in zip(offsets, offsets[1:]):
        out.append((a, b, "legacy"))
    return offsets[-1]


def _xl(data: bytes, out: list) -> int:
    hdr = XL_MAGIC_LEN + XL_WORDS
    if len(data) < hdr:
        return 0
    little = data[XL_MAGIC_LEN:XL_MAGIC_LEN + 4] == b"\x04\x03\x02\x01"
    mandatory = _u32(data, XL_MAGIC_LEN + 4, little)
    optlen = _u32(data, XL_MAGIC_LEN + 12, little)
    end = hdr + optlen
    if end > len(data):
        out.append((0, hdr, "xl-header"))
        return hdr
    out.append((0, end, "xl-header"))
    if mandatory & 2:
        return _libxl(data, end, out)
    return _legacy(data, end, out)


def spans(fmt: str, data: bytes, options: dict | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, layer)`` of each item found, in order, covering ``data`` from 0.

    The last span runs to the end of the input when the walk stopped early (a
    truncated or garbled tail is one item).  ``options`` are the codec's
    (a legacy image's width, guest type, ...).
    """
    data = bytes(data)
    out: list[tuple[int, int, str]] = []
    try:
        if fmt == "libxc":
            at = _libxc(data, 0, out)
        elif fmt == "libxl":
            at = _libxl(data, 0, out)
        elif fmt == "xenstore":
            at = _xenstore(data, 0, out)
        elif fmt == "xl":
            at = _xl(data, out)
        elif fmt == "legacy":
            at = _legacy(data, 0, out, options)
        elif fmt in ("libvirt", "xenopsd"):
            at = _dumped(fmt, data, out, options)
        else:
            at = 0
    except struct.error:
        at = out[-1][1] if out else 0
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
