"""Builders of typical valid libxc, libxl and xl streams.

They follow the spec's "Layout" section (libxc) and what ``xl save`` writes,
and are shared by the hand-written examples, the strategies, the corpus and
the benchmark.  Everything is deterministic: the same arguments give the
same bytes.
"""

from __future__ import annotations

from . import libxc, libxl, xl
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


CPUID_LEAVES = ((0x0, 0xFFFFFFFF, 0xD, 0x756E6547, 0x6C65746E, 0x49656E69),
                (0x1, 0xFFFFFFFF, 0x000906EA, 0x00100800, 0x7FFAFBFF, 0xBFEBFBFF))
MSR_ENTRIES = ((0xCE, 0, 0x80000000),)
HVM_PARAMS = ((1, 0xFEFFF), (2, 3), (12, 0xFEFFD000))  # STORE_PFN, STORE_EVTCHN, IDENT_PT


def static_records(guest: DomainType, version: int) -> list[libxc.Record]:
    records: list[libxc.Record] = []
    if guest is DomainType.X86_PV:
        records.append(libxc.X86PvInfo(8, 4))
    if version >= 3:
        records += [libxc.X86CpuidPolicy(CPUID_LEAVES), libxc.X86MsrPolicy(MSR_ENTRIES), libxc.StaticDataEnd()]
    return records


def p2m_frames(pages: int, guest_width: int = 8, page_size: int = PAGE) -> libxc.X86PvP2mFrames:
    per_frame = page_size // guest_width
    end = max(pages - 1, 0)
    frames = end // per_frame + 1
    return libxc.X86PvP2mFrames(0, end, tuple(0x1000 + i for i in range(frames)))


def vcpu_records(vcpus: int = 1) -> list[libxc.Record]:
    out: list[libxc.Record] = []
    for v in range(vcpus):
        out += [libxc.X86PvVcpuBasic(v, bytes([v + 1]) * 64), libxc.X86PvVcpuExtended(v, bytes(16)),
                libxc.X86PvVcpuXsave(v, bytes(24)), libxc.X86PvVcpuMsrs(v, bytes(16))]
    return out


def tail_records(guest: DomainType, vcpus: int = 1) -> list[libxc.Record]:
    tsc = libxc.X86TscInfo(mode=0, khz=2_000_000, nsec=123_456_789, incarnation=1)
    if guest is DomainType.X86_PV:
        return [tsc, libxc.SharedInfo(page_bytes(0xFFFF)), *vcpu_records(vcpus)]
    return [tsc, libxc.HvmParams(HVM_PARAMS), libxc.HvmContext(b"HVMCTX" + bytes(58))]


def libxc_stream(guest: DomainType = DomainType.X86_HVM, *, version: int = 3, endian: Endian = Endian.LITTLE,
                 pages: int = 8, batch: int = 4, vcpus: int = 1, checkpoints: int = 0,
                 optional: bool = False, end: bool = True) -> libxc.LibxcStream:
    """A typical stream of ``guest``: static records, memory, tail, END.

    ``checkpoints`` adds that many CHECKPOINT records, each followed by another
    round of PAGE_DATA and tail records; ``optional`` adds an unknown optional
    record (bit 31 set), which every reader must accept.
    """
    records = list(static_records(guest, version))
    if guest is DomainType.X86_PV:
        records.append(p2m_frames(pages))
    if optional:
        records.append(libxc.RawRecord(0x80000123, b"optional", libxc.LAYER))
    records += page_batches(pages, batch)
    records += tail_records(guest, vcpus)
    for _ in range(checkpoints):
        records.append(libxc.Checkpoint())
        records += page_batches(min(pages, batch), batch)
        records += tail_records(guest, vcpus)
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


def record_offsets(stream: libxc.LibxcStream) -> list[int]:
    """Offset of each record header of a stand-alone libxc stream."""
    from .framing import padding_length

    offsets, at = [], libxc.IMAGE_HEADER.size + libxc.DOMAIN_HEADER.size
    for rec in stream.records:
        offsets.append(at)
        n = len(rec.encode_body(stream.endian))
        at += 8 + n + padding_length(n)
    return offsets


def libxl_item_offsets(stream: libxl.LibxlStream) -> list[int]:
    """Offset of each item (libxl or libxc record header) of a libxl stream."""
    from .framing import padding_length

    offsets, at = [], libxl.HEADER.size
    endian, xc_endian = stream.header.endian, stream.libxc_endian
    for item in stream.items:
        offsets.append(at)
        n = len(item.encode_body(xc_endian if item.layer == libxc.LAYER else endian))
        at += 8 + n + padding_length(n)
        if isinstance(item, libxl.LibxcContext) and item.image_header is not None:
            at += libxc.IMAGE_HEADER.size + libxc.DOMAIN_HEADER.size
    return offsets
