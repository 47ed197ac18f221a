"""Builders of typical valid libxc, libxl and xl streams.

They follow the spec's "Layout" section (libxc) and what ``xl save`` writes,
and are shared by the hand-written examples, the strategies, the corpus and
the benchmark.  Everything is deterministic: the same arguments give the
same bytes.
"""

from __future__ import annotations

from dataclasses import replace

from . import libxc, libxl, xen_abi, xl
from .framing import RECORD_HEADER, padding_length
from .layout import Endian
from .libxc import DomainType, PageType, pfn_entry

PAGE = 4096


def page_bytes(pfn: int, size: int = PAGE) -> bytes:
    """Recognisable, deterministic page contents."""
    stamp = pfn.to_bytes(8, "little")
    return (stamp * (size // 8))[:size]


def page_data(pfns, types=None, *, page_size: int = PAGE) -> libxc.PageData:
    """A PAGE_DATA record for ``pfns`` (types default to NOTAB), with page contents where due."""
    types = types or [PageType.NOTAB] * len(pfns)
    entries = tuple(pfn_entry(p, t) for p, t in zip(pfns, types))
    pages = b"".join(page_bytes(p, page_size) for p, t in zip(pfns, types) if libxc.HAS_DATA[int(t)])
    return libxc.PageData(entries, pages)


def page_batches(count: int, batch: int = 4, start: int = 0) -> list[libxc.PageData]:
    return [page_data(range(s, min(s + batch, start + count))) for s in range(start, start + count, batch)]


#: What a 64-bit HVM guest's static records carry (reference/xen_abi.py).
CPUID_LEAVES = xen_abi.cpuid_policy("hvm")
MSR_ENTRIES = xen_abi.msr_policy()
HVM_PARAMS = xen_abi.hvm_params()


def static_records(guest: DomainType, version: int, width: int = 8) -> list[libxc.Record]:
    records: list[libxc.Record] = []
    if guest is DomainType.X86_PV:
        records.append(libxc.X86PvInfo(width, 4 if width == 8 else 3))
    if version >= 3:
        cpuid = xen_abi.cpuid_policy("pv" if guest is DomainType.X86_PV else "hvm")
        records += [libxc.X86CpuidPolicy(cpuid), libxc.X86MsrPolicy(MSR_ENTRIES), libxc.StaticDataEnd()]
    return records


def p2m_frames(pages: int, guest_width: int = 8, page_size: int = PAGE) -> libxc.X86PvP2mFrames:
    """An X86_PV_P2M_FRAMES record whose frame count suits ``pages`` pfns (the
    frames themselves are arbitrary: for malformed examples; valid streams use
    :func:`pv_p2m_frames`)."""
    per_frame = page_size // guest_width
    end = max(pages - 1, 0)
    frames = end // per_frame + 1
    return libxc.X86PvP2mFrames(0, end, tuple(0x1000 + i for i in range(frames)))


def pv_guest(pages: int = 8, width: int = 8, vcpus: int = 1, **kwargs) -> xen_abi.PvGuest:
    """The PV guest a valid stream of ``pages`` pfns carries (at least the
    fewest :func:`xen_abi.pv_guest` builds one with)."""
    return xen_abi.pv_guest(width, max(pages, xen_abi.pv_min_pages(width, kwargs.get("p2m_size", 0))),
                            vcpus, **kwargs)


def pv_p2m_frames(guest: xen_abi.PvGuest) -> libxc.X86PvP2mFrames:
    return libxc.X86PvP2mFrames(0, guest.max_pfn, guest.p2m_pfns)


def pv_page_data(guest: xen_abi.PvGuest, pfns) -> libxc.PageData:
    """PAGE_DATA for ``pfns`` of ``guest``: its page types and contents."""
    pfns = list(pfns)
    entries = tuple(pfn_entry(p, guest.page_type(p)) for p in pfns)
    return libxc.PageData(entries, b"".join(guest.page(p) for p in pfns))


def pv_page_batches(guest: xen_abi.PvGuest, batch: int = 4, pfns=None) -> list[libxc.PageData]:
    pfns = list(range(guest.pages) if pfns is None else pfns)
    return [pv_page_data(guest, pfns[s:s + batch]) for s in range(0, len(pfns), batch)]


def vcpu_records(vcpus: int = 1, guest: xen_abi.PvGuest | None = None) -> list[libxc.Record]:
    """Each vCPU's BASIC, EXTENDED, XSAVE and MSRS records, as the PV saver
    writes them (tools/libs/guest/xg_sr_save_x86_pv.c, write_one_vcpu_*)."""
    guest = guest or pv_guest(vcpus=vcpus)
    out: list[libxc.Record] = []
    for v in range(vcpus):
        out += [libxc.X86PvVcpuBasic(v, guest.vcpu_context(v)),
                libxc.X86PvVcpuExtended(v, xen_abi.vcpu_extended(guest.width, v)),
                libxc.X86PvVcpuXsave(v, xen_abi.vcpu_xsave()),
                libxc.X86PvVcpuMsrs(v, xen_abi.vcpu_msrs(v))]
    return out


TSC_INFO = libxc.X86TscInfo(mode=0, khz=2_000_000, nsec=123_456_789, incarnation=1)


def tail_records(guest: DomainType, vcpus: int = 1, pv: xen_abi.PvGuest | None = None) -> list[libxc.Record]:
    if guest is DomainType.X86_PV:
        pv = pv or pv_guest(vcpus=vcpus)
        return [TSC_INFO, libxc.SharedInfo(pv.shared_info()), *vcpu_records(vcpus, pv)]
    return [TSC_INFO, libxc.HvmParams(HVM_PARAMS), libxc.HvmContext(xen_abi.hvm_context(vcpus))]


def hvm_special_pages() -> libxc.PageData:
    """PAGE_DATA for the special pages of a libxl-built HVM guest (the HVM
    params name them; the saver sends every populated pfn)."""
    return page_data(xen_abi.hvm_special_pfns())


def libxc_stream(guest: DomainType = DomainType.X86_HVM, *, version: int = 3, endian: Endian = Endian.LITTLE,
                 pages: int = 8, batch: int = 4, vcpus: int = 1, checkpoints: int = 0,
                 optional: bool = False, end: bool = True, width: int = 8,
                 p2m_size: int = 0) -> libxc.LibxcStream:
    """A typical stream of ``guest``: static records, memory, tail, END, with
    content a real Xen restores (reference/xen_abi.py): an HVM guest's RAM
    pages 0..pages-1 and its special pages, its HVM params and HVM context; a
    PV guest of ``width`` with page tables, start info, p2m frames, shared info
    and vCPU contexts (at least :func:`xen_abi.pv_min_pages` pages).

    ``checkpoints`` adds that many CHECKPOINT records, each followed by another
    round of PAGE_DATA and tail records; ``optional`` adds an unknown optional
    record (bit 31 set), which every reader must accept; ``p2m_size`` gives a
    PV guest a p2m of that many pfns, those beyond ``pages`` not populated.
    """
    records = list(static_records(guest, version, width))
    pv = None
    if guest is DomainType.X86_PV:
        pv = pv_guest(pages, width, vcpus, p2m_size=p2m_size)
        records.append(pv_p2m_frames(pv))
    if optional:
        records.append(libxc.RawRecord(0x80000123, b"optional", libxc.LAYER))
    if pv is not None:
        records += pv_page_batches(pv, batch)
    else:
        records += page_batches(pages, batch) + [hvm_special_pages()]
    records += tail_records(guest, vcpus, pv)
    for _ in range(checkpoints):
        records.append(libxc.Checkpoint())
        if pv is not None:
            records += pv_page_batches(pv, batch, range(min(pv.pages, batch)))
        else:
            records += page_batches(min(pages, batch), batch)
        records += tail_records(guest, vcpus, pv)
    if end:
        records.append(libxc.End())
    header = libxc.ImageHeader.make(version, endian)
    return libxc.LibxcStream(header, libxc.DomainHeader(int(guest)), tuple(records))


XENSTORE_PAIRS = ((b"physmap/f0000000/start_addr", b"f0000000"),
                  (b"physmap/f0000000/size", b"800000"),
                  (b"physmap/f0000000/name", b"vga.vram"))


def emulator_records(emulator: int = libxl.EmulatorId.QEMU_UPSTREAM) -> list[libxl.Record]:
    return [libxl.EmulatorXenstoreData(emulator, 0, XENSTORE_PAIRS),
            libxl.EmulatorContext(emulator, 0, b"QEVM" + bytes(60))]


def libxl_stream(guest: DomainType = DomainType.X86_HVM, *, endian: Endian = Endian.LITTLE,
                 libxc_endian: Endian | None = None, version: int = 3, pages: int = 8, checkpoints: int = 0,
                 optional: bool = False, legacy: bool = False, emulator: int | None = None) -> libxl.LibxlStream:
    """libxl header, LIBXC_CONTEXT and the libxc stream, emulator records (HVM), END.

    With ``checkpoints`` the libxc part stops at each CHECKPOINT and libxl
    records up to CHECKPOINT_END follow before libxc resumes, as a
    checkpointed (Remus/COLO) stream does.
    """
    xc = libxc_stream(guest, version=version, endian=libxc_endian or endian, pages=pages,
                      checkpoints=checkpoints, optional=optional)
    emu = [] if guest is DomainType.X86_PV else emulator_records(
        emulator if emulator is not None else (libxl.EmulatorId.UNKNOWN if legacy else libxl.EmulatorId.QEMU_UPSTREAM))
    items: list = [libxl.LibxcContext(xc.image_header, xc.domain_header)]
    for rec in xc.records:
        items.append(rec)
        if isinstance(rec, libxc.Checkpoint):
            items += emu
            items.append(libxl.CheckpointEnd())
    items += emu
    if optional:
        items.append(libxl.RawRecord(0x80000042, b"libxl-optional", libxl.LAYER))
    items.append(libxl.End())
    options = endian.bit | (libxl.OPT_LEGACY if legacy else 0)
    return libxl.LibxlStream(libxl.LibxlHeader(options=options), tuple(items))


CONFIG_JSON = b'{"c_info": {"type": "hvm", "name": "guest"}, "b_info": {"max_memkb": 1048576}}\0'


def xl_stream(guest: DomainType = DomainType.X86_HVM, *, endian: Endian = Endian.LITTLE,
              config: bytes | None = CONFIG_JSON, **kwargs) -> xl.XlStream:
    """What ``xl save`` writes: the xl header with the JSON config, then a libxl stream."""
    header = xl.XlHeader.with_config(config, endian=endian)
    return xl.XlStream(header, libxl_stream(guest, endian=endian, **kwargs))


# --------------------------------------------------------------------------
# Editing typed streams (the examples' and the strategies' one set of helpers)
# --------------------------------------------------------------------------


def _parts_name(stream) -> str:
    """The field of a stream value that holds its records (libxc) or items (libxl)."""
    return "records" if hasattr(stream, "records") else "items"


def find_all(stream, cls, start: int = 0) -> list[int]:
    """Indexes of the records (items) of type ``cls`` from ``start``."""
    return [i for i, r in enumerate(getattr(stream, _parts_name(stream))) if i >= start and isinstance(r, cls)]


def find(stream, cls, start: int = 0) -> int:
    """Index of the first record (item) of type ``cls`` from ``start``."""
    return find_all(stream, cls, start)[0]


def edit(stream, index: int, *new, drop: int = 1):
    """``stream`` with ``drop`` records (items) from ``index`` replaced by ``new``."""
    name = _parts_name(stream)
    parts = list(getattr(stream, name))
    parts[index:index + drop] = new
    return replace(stream, **{name: tuple(parts)})


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with ``new`` written over it at ``offset``."""
    return data[:offset] + new + data[offset + len(new):]


def record_offsets(stream: libxc.LibxcStream) -> list[int]:
    """Offset of each record header of a stand-alone libxc stream, and of its end last."""
    offsets, at = [], libxc.HEADERS_SIZE
    for rec in stream.records:
        offsets.append(at)
        n = len(rec.encode_body(stream.endian))
        at += RECORD_HEADER.size + n + padding_length(n)
    return offsets + [at]


def libxl_item_offsets(stream: libxl.LibxlStream) -> list[int]:
    """Offset of each item (libxl or libxc record header) of a libxl stream, and of its end last."""
    offsets, at = [], libxl.HEADER.size
    endian, xc_endian = stream.header.endian, stream.libxc_endian
    for item in stream.items:
        offsets.append(at)
        n = len(item.encode_body(xc_endian if item.layer == libxc.LAYER else endian))
        at += RECORD_HEADER.size + n + padding_length(n)
        if isinstance(item, libxl.LibxcContext) and item.image_header is not None:
            at += libxc.HEADERS_SIZE
    return offsets + [at]
