"""Smaller variants of a stream's page batches, for the reducer.

Deleting whole items cannot shrink the one page batch a stream has; these
variants keep the first ``k`` pages of a batch (a legacy page batch, or a
libxc PAGE_DATA record, also inside libxl and xl streams) and fix the count
and, for a record, its length.  The reducer keeps a variant only when the
reference still says the same about the stream.  Sizes, offsets and types come
from the reference's layouts.
"""

from __future__ import annotations

from typing import Iterator

from xenstream.reference import legacy, libxc
from xenstream.reference.checker import Checker
from xenstream.reference.formats import get_codec
from xenstream.reference.framing import RECORD_HEADER, encode_record
from xenstream.reference.layout import Endian
from xenstream.reference.source import Source

from .frames import spans

PAGE = 1 << libxc.X86_PAGE_SHIFT
_PD = libxc.PageData.LAYOUT


def _keep_first(count: int) -> list[int]:
    return sorted({1, count // 2} - {0, count})


def _page_data_records(fmt: str, data: bytes) -> Iterator[tuple[int, int, Endian]]:
    """(record start, record end, byte order) of the PAGE_DATA records of the libxc layers."""
    endian = Endian.LITTLE
    for a, b, layer in spans(fmt, data):
        if layer == "libxc-headers" and b - a == libxc.HEADERS_SIZE:
            endian = libxc.headers_endian(data, a)
        elif layer == libxc.LAYER and b - a >= RECORD_HEADER.size + _PD.size:
            if RECORD_HEADER.values(endian, data, a)["type"] == libxc.RecordType.PAGE_DATA:
                yield a, b, endian


def libxc_variants(fmt: str, data: bytes) -> Iterator[bytes]:
    for a, b, endian in list(_page_data_records(fmt, data)):
        body_at = a + RECORD_HEADER.size
        body_len = RECORD_HEADER.values(endian, data, a)["body_length"]
        fixed = libxc.PageData.decode_fixed(endian, data, body_at)
        count = fixed["count"]
        pfns_at = body_at + _PD.size
        if count < 2 or _PD.size + 8 * count > b - body_at:
            continue
        entries = _PD.tail[0].entries(endian, count).unpack_from(data, pfns_at)
        with_data = [libxc.HAS_DATA[libxc.page_type_of(x)] for x in entries]
        if libxc.page_data_length(count, sum(with_data), PAGE) != body_len:
            continue
        pages_at = pfns_at + 8 * count
        for k in _keep_first(count):
            n_pages = sum(with_data[:k])
            rec = libxc.PageData(entries[:k], data[pages_at:pages_at + PAGE * n_pages], fixed["reserved"])
            yield data[:a] + encode_record(rec.type, rec.encode_body(endian), endian) + data[b:]


def legacy_variants(data: bytes, options: dict | None = None) -> Iterator[bytes]:
    width, batches = None, []
    try:
        for item in get_codec("legacy").dump(Source.from_bytes(data), Checker(), **(options or {})):
            if item.get("kind") == "image":
                width = item["fields"].get("width")
            elif item.get("kind") == "page batch":
                batches.append(item["offset"])
    except Exception:  # noqa: BLE001 - malformed streams stop the dump anywhere
        pass
    if width not in legacy.ULONG:
        return
    entry = legacy.ULONG[width]
    for a in batches:
        count = legacy.CHUNK_TYPE.get(Endian.LITTLE, data, "type", a)
        pfns_at = a + legacy.CHUNK_TYPE.size
        if count is None or count < 2 or pfns_at + entry.size * count > len(data):
            continue
        entries = [entry.values(Endian.LITTLE, data, pfns_at + entry.size * i)["value"] for i in range(count)]
        with_data = [legacy.page_has_data(x) for x in entries]
        pages_at = pfns_at + entry.size * count
        end = pages_at + legacy.PAGE_SIZE * sum(with_data)
        if end > len(data):
            continue
        for k in _keep_first(count):
            n_pages = sum(with_data[:k])
            chunk = legacy.encode_chunk(legacy.PageBatch(tuple(entries[:k]),
                                                         data[pages_at:pages_at + legacy.PAGE_SIZE * n_pages]),
                                        width)
            yield data[:a] + chunk + data[end:]


def variants(fmt: str, data: bytes, options: dict | None = None) -> Iterator[bytes]:
    if fmt == "legacy":
        yield from legacy_variants(data, options)
    if fmt in ("libxc", "libxl", "xl", "libvirt", "xenopsd"):
        yield from libxc_variants(fmt, data)
