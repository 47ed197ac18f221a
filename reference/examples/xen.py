"""Examples built on the streams Xen's own writers write (:mod:`..profiles`).

Two kinds:

- the departures of Xen's writers from the spec that got a rule of their
  own (a checkpointed stream that stops at a checkpoint);
- one malformed example per check of Xen's C readers (:mod:`..readers`):
  a writer-profile stream, which every reader of its release and later
  restores, with exactly the one edit that reader refuses.  ``meta["reader"]``
  names the reader profile to judge it under (the newest one that refuses
  it); without a reader profile the reference accepts it in both roles,
  since the spec does not ask for the check.
"""

from __future__ import annotations

from dataclasses import replace

from .. import build, libxc, libxl, profiles as P, xl
from ..framing import RawRecord, padding_length
from ..layout import Endian
from ..libxc import RecordType
from . import Example

BIG_RECORD = 8 * 1024 * 1024 + 8


def _libxc_meta(s: libxc.LibxcStream, **extra) -> dict:
    return {"version": s.image_header.version, "byteorder": s.endian.value,
            "guest": "pv" if s.domain_header.type == libxc.DomainType.X86_PV else "hvm", **extra}


def _find(records, cls, start: int = 0, vcpu: int | None = None) -> int:
    return next(i for i, r in enumerate(records) if i >= start and isinstance(r, cls)
                and (vcpu is None or r.vcpu_id == vcpu))


def _edit_xc(s: libxc.LibxcStream, index: int, *new, drop: int = 1) -> libxc.LibxcStream:
    recs = list(s.records)
    recs[index:index + drop] = new
    return replace(s, records=tuple(recs))


def _edit_xl(s: libxl.LibxlStream, index: int, *new, drop: int = 1) -> libxl.LibxlStream:
    items = list(s.items)
    items[index:index + drop] = new
    return replace(s, items=tuple(items))


class _Builder:
    def __init__(self):
        self.out: list[Example] = []

    def libxc(self, name: str, rule: str, s: libxc.LibxcStream, description: str, *, at: int,
              plus: int = 0, reader: str | None = None, profile: str, **meta) -> None:
        offset = build.record_offsets(s)[at] + plus if at >= 0 else None
        extra = {"profile": profile, **({"reader": reader} if reader else {}), **meta}
        self.out.append(Example("libxc", name, libxc.encode(s), rule, description, _libxc_meta(s, **extra),
                                offset))

    def libxl(self, name: str, rule: str, s: libxl.LibxlStream, description: str, *, at: int | None,
              plus: int = 0, offset: int | None = None, reader: str | None = None, profile: str) -> None:
        if offset is None and at is not None:
            offset = build.libxl_item_offsets(s)[at] + plus
        meta = {"byteorder": s.header.endian.value, "profile": profile, **({"reader": reader} if reader else {})}
        self.out.append(Example("libxl", name, libxl.encode(s), rule, description, meta, offset))

    def xl(self, name: str, rule: str, s: xl.XlStream, description: str, *, offset: int, reader: str,
           profile: str) -> None:
        meta = {"byteorder": s.header.endian.value, "profile": profile, "reader": reader}
        self.out.append(Example("xl", name, xl.encode(s), rule, description, meta, offset))


def _departures(b: _Builder) -> None:
    pv_remus = P.get("xen-4.17-pv-remus")
    s = pv_remus.libxc()
    b.libxc("remus_stream_stops", libxc.CHECKPOINT_EOF, s, "a Remus stream of Xen 4.17's libxenguest: the "
            "sender stopped after its last CHECKPOINT, no END", at=-1, profile=pv_remus.name)
    b.out[-1] = replace(b.out[-1], offset=len(b.out[-1].data))
    s = pv_remus.libxl()
    data = libxl.encode(s)
    b.libxl("remus_stream_stops", libxl.CHECKPOINT_EOF, s, "a Remus stream of Xen 4.17's libxl: the sender "
            "stopped after CHECKPOINT_END, no END", at=None, offset=len(data), profile=pv_remus.name)


def _libxc_readers(b: _Builder) -> None:
    hvm = P.get("xen-4.17-hvm")
    s = hvm.libxc()
    name = hvm.name
    b.libxc("version_3_for_4_13", libxc.VERSION_3_OLD, s, "a Xen 4.17 HVM stream (version 3) read by Xen 4.13, "
            "which restores version 2 only", at=-1, reader="xen-4.13", profile=name)
    b.out[-1] = replace(b.out[-1], offset=12)
    be = replace(s, image_header=libxc.ImageHeader.make(3, Endian.BIG))
    b.libxc("xen_big_endian", libxc.ENDIAN_X86, be, "a Xen 4.17 HVM stream written big-endian",
            at=-1, reader="xen-4.22", profile=name)
    b.out[-1] = replace(b.out[-1], offset=16)
    pages8k = replace(s, domain_header=replace(s.domain_header, page_shift=13), records=tuple(
        libxc.PageData(r.pfns, b"".join(r.pages[i:i + 4096] * 2 for i in range(0, len(r.pages), 4096)))
        if isinstance(r, libxc.PageData) else r for r in s.records))
    b.libxc("xen_page_shift_13", libxc.PAGE_SHIFT, pages8k, "a Xen 4.17 HVM stream with 8 KiB pages, consistently",
            at=-1, reader="xen-4.22", profile=name)
    b.out[-1] = replace(b.out[-1], offset=28)
    old = P.get("xen-4.9-hvm")
    s9 = old.libxc()
    end = len(s9.records) - 1
    big = _edit_xc(s9, end, RawRecord(0x80000123, bytes(BIG_RECORD), libxc.LAYER), drop=0)
    b.libxc("record_over_8_mib", libxc.LENGTH_MAX, big, "an optional record of 8 MiB + 8 octets in a Xen 4.9 "
            "HVM stream; Xen 4.6-4.9 cap records at 8 MiB", at=end, plus=4, reader="xen-4.9",
            profile=old.name, corpus=False)
    remus = P.get("xen-4.17-hvm-remus")
    sr = remus.libxc()
    b.libxc("checkpoint_in_plain_restore", libxc.CHECKPOINT_PLAIN, sr, "a Xen 4.17 Remus stream given to a plain "
            "restore (xl restore)", at=_find(sr.records, libxc.Checkpoint), reader="xen-4.22", profile=remus.name)
    k = _find(s.records, libxc.HvmContext)
    b.libxc("empty_hvm_context", libxc.HVM_CONTEXT_EMPTY,
            _edit_xc(s, k + 1, libxc.HvmContext(b""), drop=0), "a Xen 4.17 HVM stream with an empty "
            "HVM_CONTEXT after its real one", at=k + 1, plus=4, reader="xen-4.22", profile=name)
    hvm_end = len(s.records) - 1
    b.libxc("no_hvm_context", libxc.HVM_CONTEXT_MISSING,
            _edit_xc(s, _find(s.records, libxc.HvmContext)), "a Xen 4.17 HVM stream without its HVM_CONTEXT",
            at=hvm_end - 1, reader="xen-4.22", profile=name)
    k = _find(s.records, libxc.X86CpuidPolicy)
    b.libxc("empty_cpuid_policy", libxc.CPUID_EMPTY, _edit_xc(s, k, libxc.X86CpuidPolicy(())),
            "a Xen 4.17 HVM stream whose X86_CPUID_POLICY has no leaves", at=k, plus=4, reader="xen-4.22",
            profile=name)
    k = _find(s.records, libxc.X86MsrPolicy)
    b.libxc("empty_msr_policy", libxc.MSR_EMPTY, _edit_xc(s, k, libxc.X86MsrPolicy(())),
            "a Xen 4.17 HVM stream whose X86_MSR_POLICY has no entries", at=k, plus=4, reader="xen-4.22",
            profile=name)

    pv = P.get("xen-4.17-pv", vcpus=2, msrs=((P.MSR_TSC_AUX, 1),))
    s = pv.libxc()
    name = pv.name
    k = _find(s.records, libxc.X86PvInfo)
    b.libxc("second_pv_info", libxc.PVI_REPEATED, _edit_xc(s, k + 1, s.records[k], drop=0),
            "a Xen 4.17 PV stream with X86_PV_INFO twice", at=k + 1, reader="xen-4.22", profile=name)
    k = _find(s.records, libxc.X86PvVcpuBasic, vcpu=0)
    b.libxc("no_vcpu0_basic", libxc.PV_VCPU0, _edit_xc(s, k), "a Xen 4.17 PV stream of two vcpus without vcpu 0's "
            "X86_PV_VCPU_BASIC", at=len(s.records) - 2, reader="xen-4.22", profile=name)
    rec = s.records[k]
    b.libxc("vcpu_basic_short", libxc.VCPU_BASIC_SIZE, _edit_xc(s, k, replace(rec, context=rec.context[:-8])),
            "X86_PV_VCPU_BASIC of a 64-bit guest 8 octets short of a vcpu_guest_context", at=k, plus=4,
            reader="xen-4.22", profile=name)
    k = _find(s.records, libxc.X86PvVcpuExtended)
    rec = s.records[k]
    b.libxc("vcpu_extended_long", libxc.VCPU_EXT_SIZE, _edit_xc(s, k, replace(rec, context=bytes(136))),
            "X86_PV_VCPU_EXTENDED of 136 octets", at=k, plus=4, reader="xen-4.22", profile=name)
    k = _find(s.records, libxc.X86PvVcpuXsave)
    rec = s.records[k]
    b.libxc("vcpu_xsave_short", libxc.VCPU_XSAVE_SIZE, _edit_xc(s, k, replace(rec, context=rec.context[:8])),
            "X86_PV_VCPU_XSAVE of 8 octets: no room for xcr0 and xcr0_accum", at=k, plus=4, reader="xen-4.22",
            profile=name)
    k = _find(s.records, libxc.X86PvVcpuMsrs)
    rec = s.records[k]
    b.libxc("vcpu_msrs_partial", libxc.VCPU_MSRS_SIZE, _edit_xc(s, k, replace(rec, context=rec.context + bytes(8))),
            "X86_PV_VCPU_MSRS of 24 octets: one and a half entries", at=k, plus=4, reader="xen-4.22",
            profile=name)

    pv32 = P.get("xen-4.17-pv32")
    s = pv32.libxc()
    k = _find(s.records, libxc.X86PvInfo)
    b.libxc("pv32_four_levels", libxc.PVI_COMBINATION, _edit_xc(s, k, libxc.X86PvInfo(4, 4)),
            "a 32-bit PV guest claiming 4 levels of page tables", at=k, plus=8, reader="xen-4.22",
            profile=pv32.name)

    pv13 = P.get("xen-4.13-pv")
    s = pv13.libxc()
    k = _find(s.records, libxc.SharedInfo)
    b.libxc("shared_info_first", libxc.PV_INFO_BEFORE_SHINFO, _edit_xc(_edit_xc(s, k), 0, s.records[k], drop=0),
            "a Xen 4.13 PV stream (version 2) whose SHARED_INFO comes before X86_PV_INFO", at=0,
            reader="xen-4.13", profile=pv13.name)

    amd = P.get("xen-4.8-pv", amd_dbext=True)
    s = amd.libxc()
    k = _find(s.records, libxc.X86PvVcpuMsrs)
    b.libxc("empty_vcpu_msrs_4_8", libxc.VCPU_EMPTY, s, "Xen 4.8's PV stream on an AMD host with DBEXT: an "
            "empty X86_PV_VCPU_MSRS, which Xen 4.8's own restore refuses", at=k, plus=4, reader="xen-4.8",
            profile=amd.name)


def _libxl_readers(b: _Builder) -> None:
    hvm = P.get("xen-4.17-hvm")
    s = hvm.libxl()
    be = replace(s, header=libxl.LibxlHeader(options=libxl.OPT_ENDIAN))
    b.libxl("xen_big_endian", libxl.ENDIANNESS, be, "a Xen 4.17 libxl stream with big-endian libxl records",
            at=None, offset=12, reader="xen-4.22", profile=hvm.name)
    end = len(s.items) - 1
    b.libxl("optional_record", libxl.UNKNOWN_OPTIONAL,
            _edit_xl(s, end, RawRecord(0x80000042, b"libxl-optional", libxl.LAYER), drop=0),
            "an unknown optional libxl record in a Xen 4.17 stream", at=end, reader="xen-4.22", profile=hvm.name)
    pv = P.get("xen-4.17-pv")
    s = pv.libxl()
    end = len(s.items) - 1
    b.libxl("emulator_for_pv", libxl.EMU_GUEST_TYPE,
            _edit_xl(s, end, libxl.EmulatorContext(libxl.EmulatorId.QEMU_UPSTREAM, 0, b"QEVM"), drop=0),
            "an EMULATOR_CONTEXT in a Xen 4.17 PV stream", at=end, reader="xen-4.22", profile=pv.name)
    colo = P.get("xen-4.17-pv-colo")
    s = colo.libxl()
    k = next(i for i, r in enumerate(s.items) if isinstance(r, libxl.CheckpointState))
    b.libxl("colo_for_remus", libxl.CPS_DIRECTION, s, "a Xen 4.17 COLO stream given to a Remus restore, which "
            "refuses CHECKPOINT_STATE", at=k, reader="xen-4.22-remus", profile=colo.name)


def _xl_readers(b: _Builder) -> None:
    prof = P.get("xen-4.17-hvm", xl_endian=Endian.BIG)
    b.xl("big_endian_header", xl.FOREIGN_BYTEORDER, prof.xl(), "an xl header in big-endian order read on x86",
         offset=len(xl.MAGIC), reader="xen-4.22", profile=prof.name)
    prof = P.get("xen-4.17-pv", config=None)
    b.xl("no_config", xl.CONFIG_MISSING, prof.xl(), "a savefile without the domain configuration, restored "
         "without a config file", offset=xl.OPTIONAL_DATA_OFFSET, reader="xen-4.22",
         profile=prof.name)


def examples() -> list[Example]:
    b = _Builder()
    _departures(b)
    _libxc_readers(b)
    _libxl_readers(b)
    _xl_readers(b)
    return b.out


__all__ = ["examples", "BIG_RECORD", "padding_length", "RecordType"]
