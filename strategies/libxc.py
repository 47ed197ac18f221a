"""libxc v2/v3 streams: a constructive builder of valid streams and the
mutations that break one rule each."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from xenstream.reference import libxc as X
from xenstream.reference import xen_abi
from xenstream.reference.build import edit, find, find_all, patch
from xenstream.reference.build import record_offsets as offsets
from xenstream.reference.framing import OPTIONAL_BIT, RECORD_HEADER, RawRecord, encode_record, padding_length
from xenstream.reference.layout import Endian
from xenstream.reference.libxc import DomainType, PageType, RecordType

from ._draw import Draw, pattern, pick
from ._registry import mutation, valid_builder

_HEAD = RECORD_HEADER.size
_PD = X.PageData.LAYOUT


def _pd_pages_at(body: bytes, s) -> int:
    """Where a PAGE_DATA body's pages start: after its fixed part and ``count`` pfns."""
    return _PD.offset("pfns", _PD.get(s.endian, body, "count"))

FORMAT = "libxc"
HVM, PV = DomainType.X86_HVM, DomainType.X86_PV
HEADERS = X.HEADERS_SIZE
LE, BE = Endian.LITTLE, Endian.BIG

HVM_TYPES = (PageType.NOTAB, PageType.XTAB, PageType.BROKEN, PageType.XALLOC)
PV_TYPES = (PageType.NOTAB, PageType.L1TAB, PageType.L2TAB, PageType.L3TAB, PageType.L4TAB,
            PageType.L1TAB_PIN, PageType.L2TAB_PIN, PageType.L3TAB_PIN, PageType.L4TAB_PIN,
            PageType.XTAB, PageType.BROKEN, PageType.XALLOC)


#: A record of any type and body, for framing that typed values cannot express.
Raw = partial(RawRecord, layer=X.LAYER)


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------


def endian_of(value) -> Endian | None:
    if value is None or isinstance(value, Endian):
        return value
    return Endian(value)


def guest_of(value) -> DomainType | None:
    if value is None or isinstance(value, DomainType):
        return value
    return {"pv": PV, "hvm": HVM}[str(value).lower()]


# --------------------------------------------------------------------------
# the valid builder
# --------------------------------------------------------------------------


def page_data(d: Draw, pfns: list[int], guest: DomainType, page_size: int,
              pv: xen_abi.PvGuest | None = None) -> X.PageData:
    """PAGE_DATA for ``pfns``: a PV guest's own page types and contents; for an
    HVM guest NOTAB pages, some drawn XTAB, BROKEN or XALLOC (no data)."""
    if pv is not None:
        return X.PageData(tuple(X.pfn_entry(p, pv.page_type(p)) for p in pfns),
                          b"".join(sized(pv.page(p), page_size) for p in pfns))
    entries, pages = [], []
    for pfn in pfns:
        t = d.choice(HVM_TYPES) if d.bool() else PageType.NOTAB
        entries.append(X.pfn_entry(pfn, t))
        if X.HAS_DATA[int(t)]:
            pages.append(pattern(pfn, page_size))
    return X.PageData(tuple(entries), b"".join(pages))


def sized(data: bytes, page_size: int) -> bytes:
    """An x86 page as a page of another size (the page_shift mutation's)."""
    return data if len(data) == page_size else (data + bytes(page_size))[:page_size]


def page_records(d: Draw, pfns: list[int], guest, page_size, max_records: int,
                 pv: xen_abi.PvGuest | None = None) -> list[X.PageData]:
    """PAGE_DATA records covering ``pfns`` in 1..max_records batches."""
    n = d.int(1, max(1, min(max_records, len(pfns))))
    cuts = sorted(d.sample(range(1, len(pfns)), n - 1, n - 1)) if n > 1 else []
    bounds = [0, *cuts, len(pfns)]
    return [page_data(d, pfns[a:b], guest, page_size, pv) for a, b in zip(bounds, bounds[1:])]


def p2m_frames_for(start: int, end: int, guest_width: int, page_size: int, base: int = 0x1000):
    per_frame = page_size // guest_width
    frames = end // per_frame - start // per_frame + 1
    return X.X86PvP2mFrames(start, end, tuple(base + i for i in range(frames)))


def vcpu_records(d: Draw, vcpus: int, pv: xen_abi.PvGuest) -> list[X.Record]:
    """Each vCPU's real BASIC context; EXTENDED, XSAVE and MSRS drawn (a
    saver leaves out what the hypervisor has not got)."""
    out: list[X.Record] = []
    for v in range(vcpus):
        out.append(X.X86PvVcpuBasic(v, pv.vcpu_context(v)))
        if d.bool():
            out.append(X.X86PvVcpuExtended(v, xen_abi.vcpu_extended(pv.width, v)))
        if d.bool():
            out.append(X.X86PvVcpuXsave(v, xen_abi.vcpu_xsave(xcr0=d.choice([0x3, 0x7]))))
        if d.bool():
            out.append(X.X86PvVcpuMsrs(v, xen_abi.vcpu_msrs(v)))
    return out


def subset(d: Draw, items: tuple, at_least: int = 1) -> tuple:
    """A non-empty subset of ``items`` in their order (shrinks towards all)."""
    keep = tuple(x for x in items if not (d.bool() and d.bool()))
    return keep if len(keep) >= at_least else items[:at_least]


def tail_records(d: Draw, guest, vcpus: int, page_size: int,
                 pv: xen_abi.PvGuest | None = None) -> list[X.Record]:
    out: list[X.Record] = []
    if d.bool():
        # TSC modes Xen takes (tsc_set_info, xen/arch/x86/time.c): default,
        # always emulate, never emulate
        out.append(X.X86TscInfo(d.int(0, 2), d.int(0, 4_000_000), d.int(0, 1 << 40), d.int(0, 5)))
    if guest is PV:
        out.append(X.SharedInfo(sized(pv.shared_info(), page_size)))
        out += vcpu_records(d, vcpus, pv)
    else:
        out.append(X.HvmParams(subset(d, xen_abi.hvm_params())))
        out.append(X.HvmContext(xen_abi.hvm_context(vcpus, mode=d.choice(["long", "real"]))))
    return out


def optional_record(d: Draw) -> RawRecord:
    rtype = OPTIONAL_BIT | d.choice([0x123, d.int(0x13, 0x7FFFFFFF)])
    return RawRecord(rtype, pattern(rtype, d.int(0, 20)), X.LAYER)


def build(d: Draw, *, guest=None, version=None, byteorder=None, pages=None, records=None,
          checkpoints=None, optional=None, vcpus=None, page_shift: int = 12,
          end: bool = True) -> X.LibxcStream:
    """A valid libxc stream: every reject and writer rule holds, and its
    content is what a real Xen restores (reference/xen_abi.py): a PV guest's
    page tables, start info, p2m frames, shared info and vCPU contexts; an HVM
    guest's save records, params and CPU policy.  Little-endian unless
    ``byteorder`` asks otherwise (x86 hosts write little-endian images).

    ``guest`` pv|hvm, ``version`` 2|3, ``byteorder`` little|big, ``pages``
    (count of pfns, or a (lo, hi) range; a PV guest has at least the pages its
    structures need), ``records`` (most PAGE_DATA records per round),
    ``checkpoints`` (count or range; True for 1..2), ``optional`` (unknown
    optional records and VERIFY), ``vcpus``.
    """
    guest = pick(d, guest_of(guest), lambda: d.choice([HVM, PV]))
    version = pick(d, version, lambda: d.choice([3, 2]))
    endian = pick(d, endian_of(byteorder), lambda: LE)
    npages = pick(d, pages, lambda: d.int(1, 6))
    max_records = pick(d, records, lambda: d.int(1, 3))
    if checkpoints is True:
        checkpoints = (1, 2)
    ncp = pick(d, checkpoints if checkpoints is not False else 0, lambda: d.int(0, 1) if d.bool() else 0)
    opt = pick(d, optional, lambda: d.bool())
    nvcpus = pick(d, vcpus, lambda: d.int(1, 2))
    page_size = 1 << page_shift

    records_: list[X.Record] = []
    pv = None
    if guest is PV:
        guest_width = d.choice([8, 4])
        size = xen_abi.pv_min_pages(guest_width) + npages - 1
        pv = xen_abi.pv_guest(guest_width, size, nvcpus, p2m_size=size + d.int(0, 3))
        records_.append(X.X86PvInfo(guest_width, pv.levels))
    if version >= 3:
        if d.bool():
            records_.append(X.X86CpuidPolicy(subset(d, xen_abi.cpuid_policy(
                "pv" if guest is PV else "hvm"))))
        if d.bool():
            records_.append(X.X86MsrPolicy(subset(d, xen_abi.msr_policy())))
        records_.append(X.StaticDataEnd())
    if pv is not None:
        pfns = list(range(pv.pages))
        records_.append(X.X86PvP2mFrames(0, pv.max_pfn, pv.p2m_pfns))
    else:
        first = d.int(0, 64)
        pfns = list(range(first, first + npages))
    if opt:
        records_.append(optional_record(d))
    records_ += page_records(d, pfns, guest, page_size, max_records, pv)
    if pv is None:   # the special pages the HVM params name
        special = xen_abi.hvm_special_pfns()
        records_.append(X.PageData(tuple(X.pfn_entry(p) for p in special),
                                   b"".join(pattern(p, page_size) for p in special)))
    if opt and d.bool():   # memory sent again "for debugging purposes": the same pages
        records_.append(X.Verify())
        records_.append(next(r for r in records_ if isinstance(r, X.PageData)))
    records_ += tail_records(d, guest, nvcpus, page_size, pv)
    for _ in range(ncp):
        records_.append(X.Checkpoint())
        dirty = pfns[:d.int(1, len(pfns))]
        records_ += page_records(d, dirty, guest, page_size, max_records, pv)
        records_ += tail_records(d, guest, nvcpus, page_size, pv)
    if end:
        records_.append(X.End())
    header = X.ImageHeader.make(version, endian)
    return X.LibxcStream(header, X.DomainHeader(int(guest), page_shift=page_shift,
                                                xen_minor=d.int(5, 20)), tuple(records_))


def describe(s: X.LibxcStream) -> str:
    guest = "PV" if s.domain_header.type == PV else "HVM"
    return (f"libxc v{s.image_header.version} {guest} {s.endian.value}-endian stream, "
            f"{len(s.records)} records")


@valid_builder(FORMAT)
def valid(d: Draw, **opts) -> tuple[bytes, str]:
    s = build(d, **opts)
    return X.encode(s), "valid " + describe(s)


# --------------------------------------------------------------------------
# helpers for mutations
# --------------------------------------------------------------------------


def content_slot(d: Draw, s: X.LibxcStream) -> int:
    """An index where a content record may be inserted (after STATIC_DATA_END, before END)."""
    lo = find(s, X.PageData)
    return d.int(lo, len(s.records) - 1)


def u32(value: int, endian: Endian) -> bytes:
    return value.to_bytes(4, endian.value)


def enc(s) -> bytes:
    return X.encode(s)


# --------------------------------------------------------------------------
# padding
# --------------------------------------------------------------------------


@mutation(FORMAT, "padding", X.PADDING)
def _padding_nonzero(d: Draw):
    s = build(d)
    padded = [i for i, r in enumerate(s.records) if padding_length(len(r.encode_body(s.endian)))]
    if not padded or d.bool():
        i = d.int(0, len(s.records) - 1)
        s = edit(s, i, RawRecord(OPTIONAL_BIT | 0x777, pattern(i, d.int(1, 7) + 8 * d.int(0, 2)),
                                     X.LAYER), drop=0)
        padded = [i]
    i = d.choice(padded)
    n = len(s.records[i].encode_body(s.endian))
    at = offsets(s)[i] + _HEAD + n + d.int(0, padding_length(n) - 1)
    value = d.int(1, 255)
    return patch(enc(s), at, bytes([value])), \
        f"padding octet at {at} after {X.record_name(s.records[i].type)} is 0x{value:02x}"


@mutation(FORMAT, "padding", X.STREAM_TRUNCATED, "padding_missing")
def _padding_missing(d: Draw):
    s = build(d)
    last = len(s.records) - 2  # the record before END
    n = d.int(1, 7)
    s = edit(s, last + 1, Raw(OPTIONAL_BIT | 0x99, pattern(n, n + 8 * d.int(0, 1))), X.End(), drop=1)
    offs = offsets(s)
    body_end = offs[last + 1] + _HEAD + len(s.records[last + 1].encode_body(s.endian))
    data = enc(s)
    data = data[:body_end] + data[body_end + padding_length(n):]
    return data, "the padding of the last record before END is missing: END is read as padding " \
                 "and the input ends inside a record header"


for _rule in (X.END_LENGTH, X.SDE_LENGTH, X.TSC_LENGTH, X.PVI_LENGTH):
    def _padding_in_body(d: Draw, _rule=_rule):
        want = {X.END_LENGTH: X.End, X.SDE_LENGTH: X.StaticDataEnd, X.TSC_LENGTH: X.X86TscInfo,
                X.PVI_LENGTH: X.X86PvInfo}[_rule]
        opts = {"version": 3} if want is X.StaticDataEnd else {"guest": "pv"} if want is X.X86PvInfo else {}
        s = build(d, **opts)
        if want is X.X86TscInfo and not find_all(s, X.X86TscInfo):
            k = find(s, X.SharedInfo if s.domain_header.type == PV else X.HvmParams)
            s = edit(s, k, X.X86TscInfo(1, 2, 3, 4), drop=0)
        i = d.choice(find_all(s, want))
        rec = s.records[i]
        s = edit(s, i, Raw(rec.type, rec.encode_body(s.endian) + bytes(8 * d.int(1, 2))))
        return enc(s), f"{X.record_name(rec.type)} body_length counts zero padding octets"
    mutation(FORMAT, "padding", _rule, f"padding_in_body_{_rule.split('.')[1]}")(_padding_in_body)


# --------------------------------------------------------------------------
# reserved
# --------------------------------------------------------------------------


@mutation(FORMAT, "reserved", X.OPTIONS_RESERVED)
def _options_reserved(d: Draw):
    s = build(d)
    bits = d.int(1, 0x7FFF) << 1
    s = replace(s, image_header=replace(s.image_header, options=s.image_header.options | bits))
    return enc(s), f"image header options has reserved bits 0x{bits:04x}"


@mutation(FORMAT, "reserved", X.IMAGE_RESERVED)
def _image_reserved(d: Draw):
    s = build(d)
    value = 1 << d.int(0, 47) if d.bool() else d.int(1, (1 << 48) - 1)
    s = replace(s, image_header=replace(s.image_header, reserved=value))
    return enc(s), f"image header reserved field is 0x{value:012x}"


@mutation(FORMAT, "reserved", X.DOMAIN_RESERVED)
def _domain_reserved(d: Draw):
    s = build(d)
    value = d.int(1, 0xFFFF)
    s = replace(s, domain_header=replace(s.domain_header, reserved=value))
    return enc(s), f"domain header reserved field is 0x{value:04x}"


@mutation(FORMAT, "reserved", X.PD_RESERVED)
def _page_data_reserved(d: Draw):
    s = build(d)
    i = d.choice(find_all(s, X.PageData))
    value = d.int(1, 0xFFFFFFFF)
    s = edit(s, i, replace(s.records[i], reserved=value))
    return enc(s), f"PAGE_DATA record #{i} reserved field is 0x{value:08x}"


@mutation(FORMAT, "reserved", X.PD_PFN_RESERVED)
def _pfn_reserved(d: Draw):
    s = build(d)
    i = d.choice(find_all(s, X.PageData))
    rec = s.records[i]
    j = d.int(0, len(rec.pfns) - 1)
    low, high = X.PFN_RESERVED_BITS[0], X.PFN_RESERVED_BITS[-1]
    bits = (1 << d.int(low, high)) if d.bool() else (d.int(1, X.PFN_RESERVED_MASK >> low) << low)
    pfns = list(rec.pfns)
    pfns[j] |= bits
    s = edit(s, i, replace(rec, pfns=tuple(pfns)))
    return enc(s), f"PAGE_DATA record #{i} pfn[{j}] has reserved bits 0x{bits:016x} (bits 52-59)"


@mutation(FORMAT, "reserved", X.PVI_RESERVED)
def _pv_info_reserved(d: Draw):
    s = build(d, guest="pv")
    i = find(s, X.X86PvInfo)
    value = d.int(1, (1 << 48) - 1)
    s = edit(s, i, replace(s.records[i], reserved=value))
    return enc(s), f"X86_PV_INFO reserved field is 0x{value:012x}"


@mutation(FORMAT, "reserved", X.TSC_RESERVED)
def _tsc_reserved(d: Draw):
    s = build(d)
    tsc = find_all(s, X.X86TscInfo)
    value = d.int(1, 0xFFFFFFFF)
    if tsc:
        i = d.choice(tsc)
        s = edit(s, i, replace(s.records[i], reserved=value))
    else:
        i = content_slot(d, s)
        s = edit(s, i, X.X86TscInfo(0, 1000, 0, 1, value), drop=0)
    return enc(s), f"X86_TSC_INFO reserved field is 0x{value:08x}"


@mutation(FORMAT, "reserved", X.HVMP_RESERVED)
def _hvm_params_reserved(d: Draw):
    s = build(d, guest="hvm")
    i = d.choice(find_all(s, X.HvmParams))
    value = d.int(1, 0xFFFFFFFF)
    s = edit(s, i, replace(s.records[i], reserved=value))
    return enc(s), f"HVM_PARAMS reserved field is 0x{value:08x}"


@mutation(FORMAT, "reserved", X.VCPU_RESERVED)
def _vcpu_reserved(d: Draw):
    s = build(d, guest="pv")
    i = d.choice(find_all(s, X.X86PvVcpu))
    value = d.int(1, 0xFFFFFFFF)
    s = edit(s, i, replace(s.records[i], reserved=value))
    return enc(s), f"{X.record_name(s.records[i].type)} reserved field is 0x{value:08x}"


# --------------------------------------------------------------------------
# width
# --------------------------------------------------------------------------


@mutation(FORMAT, "width", X.P2M_FRAME_COUNT, "p2m_frames_other_width")
def _p2m_other_width(d: Draw):
    s = build(d, guest="pv")
    info = s.records[find(s, X.X86PvInfo)]
    other = 4 if info.guest_width == 8 else 8
    end = d.int(512, 5000)
    i = find(s, X.X86PvP2mFrames)
    s = edit(s, i, p2m_frames_for(0, end, other, s.domain_header.page_size))
    return enc(s), (f"{info.guest_width * 8}-bit guest whose p2m frame list (pfns 0-{end}) is counted "
                    f"for a {other * 8}-bit guest")


@mutation(FORMAT, "width", X.PVI_WIDTH)
def _pv_info_width(d: Draw):
    s = build(d, guest="pv")
    i = find(s, X.X86PvInfo)
    width = d.choice([0, 1, 2, 16, 32, 3, 255])
    s = edit(s, i, replace(s.records[i], guest_width=width))
    return enc(s), f"X86_PV_INFO guest_width is {width}"


@mutation(FORMAT, "width", X.MARKER_RULE, "legacy_image_read_as_v2")
def _legacy_as_v2(d: Draw):
    from . import legacy as LG

    data, desc = LG.valid(d)
    return data, f"a legacy image read as a v2 libxc stream ({desc})"


# --------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------


@mutation(FORMAT, "framing", X.STREAM_TRUNCATED, "truncated")
def _truncated(d: Draw):
    s = build(d)
    data = enc(s)
    offs = offsets(s)
    kind = d.choice(["record header", "body", "image header", "domain header", "padding"])
    if kind == "image header":
        cut = d.int(0, X.IMAGE_HEADER.size - 1)
    elif kind == "domain header":
        cut = d.int(X.IMAGE_HEADER.size, HEADERS - 1)
    else:
        i = d.int(0, len(s.records) - 1)
        n = len(s.records[i].encode_body(s.endian))
        start = offs[i]
        if kind == "body" and n:
            cut = start + _HEAD + d.int(0, n - 1)
        elif kind == "padding" and padding_length(n):
            cut = start + _HEAD + n + d.int(0, padding_length(n) - 1)
        else:
            kind = "record header"
            cut = start + d.int(1, _HEAD - 1)
    return data[:cut], f"input of {len(data)} octets cut at {cut}, inside the {kind}"


@mutation(FORMAT, "framing", X.END_MISSING)
def _end_missing(d: Draw):
    s = build(d)
    offs = offsets(s)
    # not right after a CHECKPOINT: a checkpointed stream may stop there (ends_after_checkpoint)
    cands = [i for i in range(1, len(s.records)) if not isinstance(s.records[i - 1], X.Checkpoint)]
    i = d.choice(cands) if d.bool() else len(s.records) - 1
    return enc(s)[:offs[i]], f"input ends at a record boundary (before record #{i}) without END"


@mutation(FORMAT, "framing", X.CHECKPOINT_EOF)
def _ends_after_checkpoint(d: Draw):
    s = build(d, checkpoints=(1, 2))
    cps = find_all(s, X.Checkpoint)
    i = d.choice(cps) + 1
    return enc(s)[:offsets(s)[i]], f"a checkpointed stream that stops after CHECKPOINT record #{i - 1}"


@mutation(FORMAT, "framing", X.TRAILING_DATA)
def _trailing(d: Draw):
    s = build(d)
    kind = d.choice(["bytes", "END", "record"])
    if kind == "bytes":
        extra = d.bytes(1, 16)
    elif kind == "END":
        extra = encode_record(0, b"", s.endian)
    else:
        extra = encode_record(d.int(1, 0x12), pattern(1, d.int(0, 16)), s.endian)
    return enc(s) + extra, f"{len(extra)} octets ({kind}) follow END"


@mutation(FORMAT, "framing", X.UNKNOWN_MANDATORY)
def _unknown_mandatory(d: Draw):
    s = build(d)
    rtype = d.choice([0x13, 0x7FFFFFFF, d.int(0x13, 0x7FFFFFFF)])
    i = d.int(0, len(s.records) - 1)
    s = edit(s, i, Raw(rtype, pattern(rtype, d.int(0, 24))), drop=0)
    return enc(s), f"unknown mandatory record type 0x{rtype:08x} at record #{i}"


@mutation(FORMAT, "framing", None, "unknown_optional")
def _unknown_optional(d: Draw):
    s = build(d)
    i = d.int(0, len(s.records) - 1)
    rtype = OPTIONAL_BIT | d.int(0, 0x7FFFFFFF)
    s = edit(s, i, Raw(rtype, pattern(rtype, d.int(0, 24))), drop=0)
    return enc(s), f"unknown optional record type 0x{rtype:08x} (bit 31 set): valid, ignored"


@mutation(FORMAT, "framing", X.STREAM_TRUNCATED, "body_length_past_end")
def _body_length_past_end(d: Draw):
    s = build(d, guest="hvm")
    i = max(find_all(s, X.HvmContext))
    offs = offsets(s)
    data = enc(s)
    left = len(data) - (offs[i] + _HEAD)
    value = min(left + d.int(1, 4096), 0xFFFFFFFF)
    return patch(data, RECORD_HEADER.at(offs[i], "body_length"), u32(value, s.endian)), \
        f"HVM_CONTEXT body_length {value} runs past the end of the input"


def _length_mutation(rule: str, cls, make_body, opts: dict, what: str):
    def fn(d: Draw):
        s = build(d, **opts)
        if not find_all(s, cls):
            if cls in (X.X86CpuidPolicy, X.X86MsrPolicy):
                k, new = find(s, X.StaticDataEnd), cls(((0, 0, 1, 2, 3, 4),) if cls is X.X86CpuidPolicy
                                                      else ((0xCE, 0, 1),))
            else:
                k, new = content_slot(d, s), {X.X86TscInfo: X.X86TscInfo(1, 2, 3, 4), X.Verify: X.Verify(),
                                              X.Checkpoint: X.Checkpoint()}[cls]
            s = edit(s, k, new, drop=0)
        i = d.choice(find_all(s, cls))
        rec = s.records[i]
        body = make_body(d, rec.encode_body(s.endian), s)
        s = edit(s, i, Raw(rec.type, body))
        return enc(s), f"{X.record_name(rec.type)} with body_length {len(body)}: {what}"
    mutation(FORMAT, "framing", rule, f"length_{rule.split('.', 1)[1].replace('.', '_')}")(fn)


def _cut(lo_keep: int, hi_keep_from_end: int = 1):
    def f(d, body, s):
        return body[:d.int(lo_keep, max(lo_keep, len(body) - hi_keep_from_end))]
    return f


def _grow(d, body, s):
    return body + pattern(len(body), d.int(1, 16))


def _odd(unit: int):
    def f(d, body, s):
        n = len(body) + d.int(1, unit - 1) if d.bool() else max(0, len(body) - d.int(1, unit - 1))
        if n % unit == 0:
            n += 1
        return (body + pattern(n, unit))[:n]
    return f


_length_mutation(X.END_LENGTH, X.End, _grow, {}, "END has a body")
_length_mutation(X.VERIFY_LENGTH, X.Verify, _grow, {}, "VERIFY has a body")
_length_mutation(X.CHECKPOINT_LENGTH, X.Checkpoint, _grow, {}, "CHECKPOINT has a body")
_length_mutation(X.SDE_LENGTH, X.StaticDataEnd, _grow, {"version": 3}, "STATIC_DATA_END has a body")
_length_mutation(X.TSC_LENGTH, X.X86TscInfo, lambda d, b, s: _cut(0)(d, b, s) if d.bool() else _grow(d, b, s),
                 {}, "X86_TSC_INFO is not 24 octets")
_length_mutation(X.PVI_LENGTH, X.X86PvInfo, lambda d, b, s: _cut(0)(d, b, s) if d.bool() else _grow(d, b, s),
                 {"guest": "pv"}, "X86_PV_INFO is not 8 octets")
_length_mutation(X.HVMP_LENGTH, X.HvmParams, lambda d, b, s: _cut(0)(d, b, s) if d.bool() else _grow(d, b, s),
                 {"guest": "hvm"}, "HVM_PARAMS count does not match its pairs")
_length_mutation(X.SHINFO_LENGTH, X.SharedInfo,
                 lambda d, b, s: _cut(0)(d, b, s) if d.bool() else _grow(d, b, s),
                 {"guest": "pv"}, "SHARED_INFO is not one page")
_length_mutation(X.VCPU_LENGTH, X.X86PvVcpu, lambda d, b, s: b[:d.int(0, 7)], {"guest": "pv"},
                 "shorter than the vcpu_id/reserved header")
_length_mutation(X.P2M_LENGTH, X.X86PvP2mFrames, _odd(8), {"guest": "pv"},
                 "not the 8-octet header plus whole p2m_pfn entries")
_length_mutation(X.CPUID_LENGTH, X.X86CpuidPolicy,
                 lambda d, b, s: (b + bytes(24))[:len(b) + d.choice([-1, 1]) * d.int(1, 23)],
                 {"version": 3}, "not a whole number of cpuid leaves")
_length_mutation(X.MSR_LENGTH, X.X86MsrPolicy,
                 lambda d, b, s: (b + bytes(16))[:len(b) + d.choice([-1, 1]) * d.int(1, 15)],
                 {"version": 3}, "not a whole number of msr entries")
_length_mutation(X.PD_SHORT, X.PageData, lambda d, b, s: b[:d.int(0, _PD.size - 1)] if d.bool() else
                 b[:d.int(_PD.size, _pd_pages_at(b, s) - 1)],
                 {}, "too short for its count and pfn entries")
_length_mutation(X.PD_PAGE_COUNT, X.PageData,
                 lambda d, b, s: b + pattern(1, d.int(1, 4096)) if d.bool() else
                 (b[:len(b) - d.int(1, 4096)] if len(b) > _pd_pages_at(b, s)
                  else b + pattern(2, 4096)),
                 {}, "page data does not match the pfns that carry data")


# --------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------


@mutation(FORMAT, "semantics", X.MARKER_RULE)
def _marker(d: Draw):
    s = build(d)
    data = enc(s)
    i = d.int(0, 7)
    value = d.int(0, 0xFE)
    return patch(data, i, bytes([value])), f"marker octet {i} is 0x{value:02x}"


@mutation(FORMAT, "semantics", X.ID_RULE)
def _ident(d: Draw):
    s = build(d)
    ident = d.choice([0, 0x58454E47, d.int(0, 0xFFFFFFFF)])
    if ident == X.IDENT:
        ident ^= 1
    s = replace(s, image_header=replace(s.image_header, id=ident))
    return enc(s), f"image header id is 0x{ident:08x}"


@mutation(FORMAT, "semantics", X.VERSION_RULE)
def _version(d: Draw):
    s = build(d)
    version = d.choice([1, 4, 0, d.int(5, 0xFFFFFFFF)])
    s = replace(s, image_header=replace(s.image_header, version=version))
    return enc(s), f"image header version is {version}"


@mutation(FORMAT, "semantics", X.DOMAIN_TYPE)
def _domain_type(d: Draw):
    s = build(d)
    t = d.choice([0, 3, d.int(3, 0xFFFFFFFF)])
    s = replace(s, domain_header=replace(s.domain_header, type=t))
    return enc(s), f"domain header type is 0x{t:08x} (reserved)"


@mutation(FORMAT, "semantics", X.ENDIAN_X86)
def _big_endian(d: Draw):
    s = build(d, byteorder="big")
    return enc(s), "big-endian image of an x86 guest: " + describe(s)


@mutation(FORMAT, "semantics", X.PAGE_SHIFT)
def _page_shift(d: Draw):
    shift = d.choice([13, 11, 14, 16])
    s = build(d, page_shift=shift)
    return enc(s), f"page_shift {shift} for an x86 guest, with pages of that size throughout"


@mutation(FORMAT, "semantics", X.RECORD_VERSION)
def _v3_record_in_v2(d: Draw):
    s = build(d, version=2)
    rec = d.choice([X.StaticDataEnd(), X.X86CpuidPolicy(((0, 0, 1, 2, 3, 4),)), X.X86MsrPolicy(((0xCE, 0, 1),))])
    i = d.int(0, len(s.records) - 1)
    s = edit(s, i, rec, drop=0)
    return enc(s), f"{X.record_name(rec.type)} in a version 2 stream"


@mutation(FORMAT, "semantics", X.GUEST_TYPE)
def _guest_type(d: Draw):
    s = build(d)
    ps = s.domain_header.page_size
    if s.domain_header.type == PV:
        rec = d.choice([X.HvmParams(((1, 2),)), X.HvmContext(b"ctx" * d.int(1, 5))])
    else:
        rec = d.choice([X.SharedInfo(pattern(1, ps)), X.X86PvVcpuBasic(0, b"v" * d.int(1, 9)),
                        X.X86PvVcpuMsrs(1, b"m" * 8)])
    s = edit(s, content_slot(d, s), rec, drop=0)
    return enc(s), f"{X.record_name(rec.type)} in an x86 {'PV' if s.domain_header.type == PV else 'HVM'} stream"


@mutation(FORMAT, "semantics", X.PD_COUNT)
def _page_data_count_zero(d: Draw):
    s = build(d)
    i = d.choice(find_all(s, X.PageData))
    s = edit(s, i, X.PageData((), b"", 0), drop=d.int(0, 1))
    return enc(s), "a PAGE_DATA record with count 0"


@mutation(FORMAT, "semantics", X.PD_PAGE_TYPE)
def _page_type(d: Draw):
    s = build(d)
    i = d.choice(find_all(s, X.PageData))
    rec = s.records[i]
    j = d.int(0, len(rec.pfns) - 1)
    t = d.int(5, 8)
    ps = s.domain_header.page_size
    pages, pfns, k = [], list(rec.pfns), 0
    for n, p in enumerate(rec.pfns):
        if X.HAS_DATA[X.page_type_of(p)]:
            if n != j:
                pages.append(rec.pages[k * ps:(k + 1) * ps])
            k += 1
    pfns[j] = X.with_page_type(pfns[j], t)
    s = edit(s, i, replace(rec, pfns=tuple(pfns), pages=b"".join(pages)))
    return enc(s), f"PAGE_DATA pfn[{j}] has reserved page type {t}"


@mutation(FORMAT, "semantics", X.PD_PAGE_COUNT, "page_type_data_mismatch")
def _page_type_mismatch(d: Draw):
    s = build(d)
    i = d.choice(find_all(s, X.PageData))
    rec = s.records[i]
    j = d.int(0, len(rec.pfns) - 1)
    t = X.page_type_of(rec.pfns[j])
    new = PageType.NOTAB if not X.HAS_DATA[t] else d.choice([PageType.XTAB, PageType.BROKEN, PageType.XALLOC])
    pfns = list(rec.pfns)
    pfns[j] = X.with_page_type(pfns[j], new)
    s = edit(s, i, replace(rec, pfns=tuple(pfns)))
    return enc(s), f"PAGE_DATA pfn[{j}] type changed to {new.name} but the page data was not"


@mutation(FORMAT, "semantics", X.PVI_LEVELS)
def _pt_levels(d: Draw):
    s = build(d, guest="pv")
    i = find(s, X.X86PvInfo)
    levels = d.choice([0, 1, 2, 5, 255])
    s = edit(s, i, replace(s.records[i], pt_levels=levels))
    return enc(s), f"X86_PV_INFO pt_levels is {levels}"


@mutation(FORMAT, "semantics", X.P2M_RANGE)
def _p2m_range(d: Draw):
    s = build(d, guest="pv")
    i = find(s, X.X86PvP2mFrames)
    start = d.int(1, 1 << 20)
    end = d.int(0, start - 1)
    s = edit(s, i, X.X86PvP2mFrames(start, end, s.records[i].p2m_pfns))
    return enc(s), f"p2m_end_pfn {end} below p2m_start_pfn {start}"


@mutation(FORMAT, "semantics", X.P2M_FRAME_COUNT)
def _p2m_frame_count(d: Draw):
    s = build(d, guest="pv")
    i = find(s, X.X86PvP2mFrames)
    rec = s.records[i]
    if d.bool() and len(rec.p2m_pfns) > 1:
        pfns = rec.p2m_pfns[:-1]
    else:
        pfns = rec.p2m_pfns + tuple(0x9000 + k for k in range(d.int(1, 3)))
    s = edit(s, i, replace(rec, p2m_pfns=pfns))
    return enc(s), f"X86_PV_P2M_FRAMES lists {len(pfns)} frames for pfns {rec.p2m_start_pfn}-{rec.p2m_end_pfn}"


@mutation(FORMAT, "semantics", X.EMPTY_CONTENT)
def _empty_content(d: Draw):
    s = build(d)
    pv = s.domain_header.type == PV
    kinds = ["vcpu"] if pv else ["hvm_context", "hvm_params"]
    if s.image_header.version >= 3:
        kinds += ["cpuid", "msr"]
    kind = d.choice(kinds)
    if kind == "vcpu":
        i = d.choice(find_all(s, X.X86PvVcpu))
        s = edit(s, i, replace(s.records[i], context=b""))
    elif kind == "hvm_context":
        i = d.choice(find_all(s, X.HvmContext))
        s = edit(s, i, X.HvmContext(b""))
    elif kind == "hvm_params":
        i = d.choice(find_all(s, X.HvmParams))
        s = edit(s, i, X.HvmParams(()))
    else:
        cls = X.X86CpuidPolicy if kind == "cpuid" else X.X86MsrPolicy
        found = find_all(s, cls)
        if found:
            s = edit(s, found[0], cls())
        else:
            s = edit(s, find(s, X.StaticDataEnd), cls(), drop=0)
    return enc(s), f"a data record ({kind}) with no content"


@mutation(FORMAT, "semantics", X.TOOLSTACK_DEPRECATED)
def _toolstack(d: Draw):
    s = build(d)
    s = edit(s, content_slot(d, s), X.Toolstack(pattern(7, d.int(0, 40))), drop=0)
    return enc(s), "the deprecated TOOLSTACK record"


@mutation(FORMAT, "semantics", X.DIRTY_DIRECTION)
def _dirty_pfn_list(d: Draw):
    s = build(d)
    pfns = tuple(d.int(0, 100) for _ in range(d.int(1, 4)))
    s = edit(s, content_slot(d, s), X.CheckpointDirtyPfnList(pfns), drop=0)
    return enc(s), "a back-channel CHECKPOINT_DIRTY_PFN_LIST in a saved stream"


@mutation(FORMAT, "framing", X.DIRTY_LENGTH)
def _dirty_length(d: Draw):
    s = build(d)
    body = pattern(3, 8 * d.int(0, 3) + d.int(1, 7))
    s = edit(s, content_slot(d, s), Raw(RecordType.CHECKPOINT_DIRTY_PFN_LIST, body), drop=0)
    return enc(s), f"CHECKPOINT_DIRTY_PFN_LIST body of {len(body)} octets"


@mutation(FORMAT, "semantics", X.SDE_MISSING)
def _sde_missing(d: Draw):
    s = build(d, version=3)
    s = edit(s, find(s, X.StaticDataEnd))
    return enc(s), "version 3 stream without STATIC_DATA_END"


@mutation(FORMAT, "semantics", X.SDE_REPEATED)
def _sde_repeated(d: Draw):
    s = build(d, version=3)
    k = find(s, X.StaticDataEnd)
    s = edit(s, d.int(k + 1, len(s.records) - 1), X.StaticDataEnd(), drop=0)
    return enc(s), "a second STATIC_DATA_END"


@mutation(FORMAT, "semantics", X.STATIC_AFTER_END)
def _static_after_end(d: Draw):
    s = build(d, version=3)
    k = find(s, X.StaticDataEnd)
    rec = d.choice([X.X86CpuidPolicy(((0, 0, 1, 2, 3, 4),)), X.X86MsrPolicy(((0xCE, 0, 1),))])
    s = edit(s, d.int(k + 1, len(s.records) - 1), rec, drop=0)
    return enc(s), f"{X.record_name(rec.type)} after STATIC_DATA_END"


def _moved_after(d: Draw, s: X.LibxcStream, cls, anchor) -> bytes:
    """``s`` with its first ``cls`` record moved to a drawn place after the first ``anchor``."""
    recs = list(s.records)
    rec = recs.pop(find(s, cls))
    j = next(i for i, r in enumerate(recs) if isinstance(r, anchor))
    recs.insert(d.int(j + 1, len(recs) - 1), rec)
    return enc(replace(s, records=tuple(recs)))


@mutation(FORMAT, "semantics", X.PV_INFO_FIRST)
def _pv_info_after_p2m(d: Draw):
    s = build(d, guest="pv")
    return _moved_after(d, s, X.X86PvInfo, X.X86PvP2mFrames), "X86_PV_INFO after X86_PV_P2M_FRAMES"


@mutation(FORMAT, "semantics", X.PV_P2M_FIRST)
def _p2m_after_page_data(d: Draw):
    s = build(d, guest="pv")
    return _moved_after(d, s, X.X86PvP2mFrames, X.PageData), "X86_PV_P2M_FRAMES after a PAGE_DATA record"


@mutation(FORMAT, "semantics", X.PV_PAGES_FIRST)
def _vcpu_before_page_data(d: Draw):
    s = build(d, guest="pv")
    recs = list(s.records)
    vcpu = recs.pop(d.choice(find_all(s, X.X86PvVcpu)))
    j = next(i for i, r in enumerate(recs) if isinstance(r, X.PageData))
    recs.insert(d.int(next(i for i, r in enumerate(recs) if isinstance(r, X.X86PvP2mFrames)) + 1, j), vcpu)
    return enc(replace(s, records=tuple(recs))), f"{X.record_name(vcpu.type)} before any PAGE_DATA"


@mutation(FORMAT, "semantics", X.PV_REQUIRED)
def _pv_without_vcpus(d: Draw):
    s = build(d, guest="pv")
    s = replace(s, records=tuple(r for r in s.records if not isinstance(r, X.X86PvVcpu)))
    return enc(s), "x86 PV stream without VCPU records"


@mutation(FORMAT, "semantics", X.HVM_PARAMS_FIRST)
def _context_before_params(d: Draw):
    s = build(d, guest="hvm")
    recs = list(s.records)
    ctx = recs.pop(find(s, X.HvmContext))
    j = next(i for i, r in enumerate(recs) if isinstance(r, X.HvmParams))
    lo = next(i for i, r in enumerate(recs) if isinstance(r, X.PageData))
    recs.insert(d.int(lo, j), ctx)
    return enc(replace(s, records=tuple(recs))), "HVM_CONTEXT before HVM_PARAMS"
