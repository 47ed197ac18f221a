"""Smaller variants of a stream's page batches, for the reducer.

Deleting whole items cannot shrink the one page batch a stream has; these
variants keep the first ``k`` pages of a batch (a legacy page batch, or a
libxc PAGE_DATA record, also inside libxl and xl streams) and fix the count
and, for a record, its length.  The reducer keeps a variant only when the
reference still says the same about the stream.
"""

from __future__ import annotations

import struct
from typing import Iterator

from xenstream.reference.checker import Checker
from xenstream.reference.source import Source

from .frames import spans

PAGE = 4096


def _libxc_has_data(entry: int) -> bool:
    from xenstream.reference import libxc

    t = entry >> 60
    try:
        return bool(libxc.HAS_DATA[t])
    except (IndexError, KeyError, TypeError):
        return True


def _legacy_has_data(entry: int) -> bool:
    from xenstream.reference import legacy

    return legacy.page_has_data(entry)


def _keep_first(count: int) -> list[int]:
    return sorted({1, count // 2} - {0, count})


def _libxc_batches(data: bytes) -> Iterator[tuple[int, int, bool]]:
    """(record start, record end, little) of PAGE_DATA records in libxc layers."""
    little = True
    for a, b, layer in spans_for(data):
        if layer == "libxc-headers" and b - a == 40:
            little = not (struct.unpack_from(">H", data, a + 16)[0] & 1)
        elif layer == "libxc" and b - a >= 16:
            rtype = struct.unpack_from("<I" if little else ">I", data, a)[0]
            if rtype == 1:
                yield a, b, little


_FMT: dict[int, str] = {}


def spans_for(data: bytes):
    return spans(_FMT.get(id(data), "libxc"), data)


def libxc_variants(fmt: str, data: bytes) -> Iterator[bytes]:
    _FMT[id(data)] = fmt
    try:
        batches = list(_libxc_batches(data))
    finally:
        _FMT.pop(id(data), None)
    for a, b, little in batches:
        e = "<" if little else ">"
        count = struct.unpack_from(e + "I", data, a + 8)[0]
        body_len = struct.unpack_from(e + "I", data, a + 4)[0]
        if count < 2 or 16 + 8 * count > b - a:
            continue
        entries = struct.unpack_from(f"{e}{count}Q", data, a + 16)
        with_data = [_libxc_has_data(x) for x in entries]
        if 8 + 8 * count + PAGE * sum(with_data) != body_len:
            continue
        pages_at = a + 16 + 8 * count
        for k in _keep_first(count):
            n_pages = sum(with_data[:k])
            body = (struct.pack(e + "II", k, struct.unpack_from(e + "I", data, a + 12)[0])
                    + data[a + 16:a + 16 + 8 * k] + data[pages_at:pages_at + PAGE * n_pages])
            rec = struct.pack(e + "II", 1, len(body)) + body
            yield data[:a] + rec + data[b:]


def legacy_variants(data: bytes, options: dict | None = None) -> Iterator[bytes]:
    from xenstream.reference.formats import get_codec

    width, batches = None, []
    try:
        for item in get_codec("legacy").dump(Source.from_bytes(data), Checker(), **(options or {})):
            if item.get("kind") == "image":
                width = item["fields"].get("width")
            elif item.get("kind") == "page batch":
                batches.append(item["offset"])
    except Exception:  # noqa: BLE001 - malformed streams stop the dump anywhere
        pass
    if width not in (32, 64):
        return
    w = width // 8
    for a in batches:
        if a + 4 > len(data):
            continue
        count = struct.unpack_from("<i", data, a)[0]
        if count < 2 or a + 4 + w * count > len(data):
            continue
        entries = struct.unpack_from(f"<{count}{'I' if w == 4 else 'Q'}", data, a + 4)
        with_data = [_legacy_has_data(x) for x in entries]
        pages_at = a + 4 + w * count
        end = pages_at + PAGE * sum(with_data)
        if end > len(data):
            continue
        for k in _keep_first(count):
            n_pages = sum(with_data[:k])
            chunk = (struct.pack("<i", k) + data[a + 4:a + 4 + w * k]
                     + data[pages_at:pages_at + PAGE * n_pages])
            yield data[:a] + chunk + data[end:]


def variants(fmt: str, data: bytes, options: dict | None = None) -> Iterator[bytes]:
    if fmt == "legacy":
        yield from legacy_variants(data, options)
    if fmt in ("libxc", "libxl", "xl", "libvirt", "xenopsd"):
        yield from libxc_variants(fmt, data)
