"""Hand-written libxc examples: valid streams of every record type, and one or
more malformed streams for every ``libxc.*`` rule, each with the offset the
reference must report."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from .. import build, libxc, xen_abi
from ..build import edit as _edit, find as _find, patch as _patch
from ..framing import RawRecord, encode_record
from ..layout import Endian
from ..libxc import DomainType, PageType, RecordType
from . import Example, StreamExamples

FORMAT = "libxc"
HVM, PV = DomainType.X86_HVM, DomainType.X86_PV
HEADERS = libxc.HEADERS_SIZE


#: A record of any type and body, for framing that typed values cannot express.
Raw = partial(RawRecord, layer=libxc.LAYER)


def _meta(stream: libxc.LibxcStream, **extra) -> dict:
    return {"version": stream.image_header.version, "byteorder": stream.endian.value,
            "guest": "pv" if stream.domain_header.type == PV else "hvm", **extra}


def examples() -> list[Example]:
    b = StreamExamples(FORMAT, libxc.encode, build.record_offsets, _meta)
    hvm = build.libxc_stream(HVM)
    pv = build.libxc_stream(PV)
    hvm2 = build.libxc_stream(HVM, version=2)
    pv2 = build.libxc_stream(PV, version=2)
    hvm_bytes = libxc.encode(hvm)

    # -- valid ---------------------------------------------------------------
    b.valid("hvm_v3", hvm, "typical x86 HVM stream, version 3")
    b.valid("hvm_v2", hvm2, "typical x86 HVM stream, version 2 (STATIC_DATA_END inferred)")
    b.valid("pv_v3", pv, "typical x86 PV stream, version 3, every PV record type")
    b.valid("pv_v2", pv2, "typical x86 PV stream, version 2")
    pv32 = build.libxc_stream(PV, width=4, p2m_size=1030)
    b.valid("pv_32bit_guest", pv32, "32-bit PAE PV guest: 1024 p2m entries per frame, 3 page-table "
            "levels, a p2m of 1030 pfns in two frames (the pfns above those sent are ballooned out)")
    b.valid("hvm_checkpoints", build.libxc_stream(HVM, checkpoints=2),
            "checkpointed stream: CHECKPOINT records, then more records, then END")
    b.valid("pv_checkpoints", build.libxc_stream(PV, checkpoints=1), "checkpointed PV stream")
    b.valid("optional_record", build.libxc_stream(HVM, optional=True),
            "an unknown optional record (bit 31 set) is ignored by every reader")
    b.valid("pv_two_vcpus", build.libxc_stream(PV, vcpus=2), "PV guest with two vcpus")
    k = _find(hvm, libxc.X86TscInfo)
    b.valid("verify_record", _edit(hvm, k, libxc.Verify(), *build.page_batches(2), hvm.records[k], drop=1),
            "VERIFY followed by memory records sent again for debugging")
    types = [PageType.NOTAB, PageType.XTAB, PageType.BROKEN, PageType.XALLOC, PageType.NOTAB]
    k = _find(hvm, libxc.PageData)
    b.valid("page_types_without_data", _edit(hvm, k, build.page_data(range(100, 105), types)),
            "XTAB, BROKEN and XALLOC pfns carry no page data")
    # empty page tables of every type (no present entries), pinned and not, in
    # a 64-bit guest with room for them: each validates and pins in Xen
    pt_types = [PageType.L1TAB, PageType.L2TAB, PageType.L3TAB, PageType.L4TAB, PageType.L1TAB_PIN,
                PageType.L2TAB_PIN, PageType.L3TAB_PIN, PageType.L4TAB_PIN]
    roomy = build.libxc_stream(PV, pages=xen_abi.pv_min_pages(8) + 8)
    spare = list(range(xen_abi.pv_min_pages(8) + 8 - 8, xen_abi.pv_min_pages(8) + 8))
    k = _find(roomy, libxc.PageData)
    tables = libxc.PageData(tuple(libxc.pfn_entry(p, t) for p, t in zip(spare, pt_types)),
                            bytes(4096 * len(spare)))
    b.valid("page_types_pagetables", _edit(roomy, k, tables, drop=0),
            "PV page-table page types, pinned and unpinned, all carry page data (empty tables)")
    k = _find(hvm, libxc.PageData)
    b.valid("page_data_all_xtab", _edit(hvm, k, build.page_data(range(200, 203), [PageType.XTAB] * 3),
                                        hvm.records[k]),
            "a PAGE_DATA record with no page data at all (every pfn XTAB)")
    odd = Raw(0x80000123, b"c" * 61)
    b.valid("hvm_padding", _edit(hvm, _find(hvm, libxc.HvmContext), odd, drop=0),
            "an optional record of 61 octets: 3 octets of zero padding")

    # -- stream framing ------------------------------------------------------
    cut = HEADERS + 8 + 20
    b.bad("cut_in_record", libxc.STREAM_TRUNCATED, hvm, "input ends inside the first record's body",
          data=hvm_bytes[:cut], offset=cut)
    b.bad("cut_in_image_header", libxc.STREAM_TRUNCATED, hvm, "input ends inside the image header",
          data=hvm_bytes[:10], offset=10)
    b.bad("cut_in_record_header", libxc.STREAM_TRUNCATED, hvm, "input ends inside a record header",
          data=hvm_bytes[:HEADERS + 3], offset=HEADERS + 3)
    offs = build.record_offsets(hvm)
    b.bad("no_end", libxc.END_MISSING, hvm, "input ends after the last record, without END",
          data=hvm_bytes[:offs[-2]], offset=offs[-2])
    b.bad("data_after_end", libxc.TRAILING_DATA, hvm, "eight octets follow END",
          data=hvm_bytes + bytes(8), offset=len(hvm_bytes))
    b.bad("second_end", libxc.TRAILING_DATA, hvm, "a second END record follows END",
          data=hvm_bytes + encode_record(0, b"", Endian.LITTLE), offset=len(hvm_bytes))

    # -- image header --------------------------------------------------------
    b.bad("marker_zero_octet", libxc.MARKER_RULE, hvm, "first octet of the marker is zero",
          data=_patch(hvm_bytes, 0, b"\0"), offset=0)
    b.bad("legacy_64bit_image", libxc.MARKER_RULE, hvm, "a legacy image (p2m_size first) read as v2",
          data=(0x40000).to_bytes(8, "little") + hvm_bytes[8:], offset=0)
    b.bad("id_wrong", libxc.ID_RULE, hvm, "id is \"XENG\"", data=_patch(hvm_bytes, 8, b"XENG"), offset=8)
    b.bad("version_4", libxc.VERSION_RULE, hvm, "version 4 is not defined",
          data=_patch(hvm_bytes, 12, (4).to_bytes(4, "big")), offset=12)
    b.bad("version_1", libxc.VERSION_RULE, hvm, "version 1 is not defined",
          data=_patch(hvm_bytes, 12, (1).to_bytes(4, "big")), offset=12)
    b.bad("options_bit1", libxc.OPTIONS_RESERVED, hvm, "reserved options bit 1 set",
          data=_patch(hvm_bytes, 16, (2).to_bytes(2, "big")), offset=16)
    b.bad("header_reserved", libxc.IMAGE_RESERVED, hvm, "reserved octets of the image header set",
          data=_patch(hvm_bytes, 20, b"\x01"), offset=18)
    be = build.libxc_stream(HVM, endian=Endian.BIG)
    b.bad("big_endian_hvm", libxc.ENDIAN_X86, be, "a big-endian image of an x86 HVM guest", offset=16)
    b.bad("big_endian_pv", libxc.ENDIAN_X86, build.libxc_stream(PV, endian=Endian.BIG, checkpoints=1),
          "a big-endian checkpointed image of an x86 PV guest", offset=16)

    # -- domain header -------------------------------------------------------
    b.bad("domain_type_3", libxc.DOMAIN_TYPE, hvm, "domain type 3 is reserved",
          data=_patch(hvm_bytes, 24, (3).to_bytes(4, "little")), offset=24)
    b.bad("domain_type_0", libxc.DOMAIN_TYPE, hvm, "domain type 0 is reserved",
          data=_patch(hvm_bytes, 24, (0).to_bytes(4, "little")), offset=24)
    b.bad("domain_reserved", libxc.DOMAIN_RESERVED, hvm, "reserved field of the domain header set",
          data=_patch(hvm_bytes, 30, b"\x01"), offset=30)
    big_pages = libxc.LibxcStream(hvm.image_header, libxc.DomainHeader(HVM, page_shift=13), tuple(
        build.page_data(range(4), page_size=8192) if isinstance(r, libxc.PageData) else r
        for r in hvm.records))
    b.bad("page_shift_13", libxc.PAGE_SHIFT, big_pages, "8 KiB pages for an x86 guest, consistently",
          offset=28)

    # -- records ---------------------------------------------------------------
    k = _find(hvm, libxc.HvmContext)
    odd = _edit(hvm, k, Raw(0x80000123, b"c" * 61), drop=0)
    at = build.record_offsets(odd)[k] + 8 + 61
    b.bad("padding_nonzero", libxc.PADDING, odd, "a padding octet after a 61-octet optional record is 0x01",
          data=_patch(libxc.encode(odd), at + 1, b"\x01"), offset=at + 1)
    k = _find(hvm, libxc.PageData)
    b.bad("unknown_mandatory", libxc.UNKNOWN_MANDATORY, _edit(hvm, k, Raw(0x13, b"x" * 8), drop=0),
          "record type 0x13, the first reserved mandatory type", at=k)
    b.bad("unknown_mandatory_high", libxc.UNKNOWN_MANDATORY, _edit(hvm, k, Raw(0x7FFFFFFF, b""), drop=0),
          "record type 0x7FFFFFFF, the last reserved mandatory type", at=k)
    k = _find(hvm2, libxc.PageData)
    b.bad("cpuid_policy_in_v2", libxc.RECORD_VERSION,
          _edit(hvm2, k, libxc.X86CpuidPolicy(build.CPUID_LEAVES), drop=0),
          "X86_CPUID_POLICY in a version 2 stream", at=k)
    b.bad("static_data_end_in_v2", libxc.RECORD_VERSION, _edit(hvm2, k, libxc.StaticDataEnd(), drop=0),
          "STATIC_DATA_END in a version 2 stream", at=k)
    k = _find(hvm, libxc.X86TscInfo)
    b.bad("shared_info_in_hvm", libxc.GUEST_TYPE,
          _edit(hvm, k, libxc.SharedInfo(build.page_bytes(1)), drop=0),
          "SHARED_INFO in an x86 HVM stream", at=k)
    b.bad("pv_vcpu_in_hvm", libxc.GUEST_TYPE,
          _edit(hvm, k, libxc.X86PvVcpuBasic(0, b"v" * 8), drop=0),
          "X86_PV_VCPU_BASIC in an x86 HVM stream", at=k)
    k = _find(pv, libxc.X86TscInfo)
    b.bad("hvm_params_in_pv", libxc.GUEST_TYPE, _edit(pv, k, libxc.HvmParams(((1, 2),)), drop=0),
          "HVM_PARAMS in an x86 PV stream", at=k)
    k = _find(hvm, libxc.HvmContext)
    b.bad("empty_hvm_context", libxc.EMPTY_CONTENT, _edit(hvm, k, libxc.HvmContext(b"")),
          "HVM_CONTEXT with no content (Errata 1)", at=k, plus=4)
    k = _find(hvm, libxc.HvmParams)
    b.bad("empty_hvm_params", libxc.EMPTY_CONTENT, _edit(hvm, k, libxc.HvmParams(())),
          "HVM_PARAMS with count 0 (Errata 1)", at=k, plus=8)
    k = _find(pv, libxc.X86PvVcpuXsave)
    b.bad("empty_vcpu_xsave", libxc.EMPTY_CONTENT, _edit(pv, k, libxc.X86PvVcpuXsave(0, b"")),
          "X86_PV_VCPU_XSAVE with no context (Errata 1)", at=k, plus=4)
    k = _find(hvm, libxc.X86MsrPolicy)
    b.bad("empty_msr_policy", libxc.EMPTY_CONTENT, _edit(hvm, k, libxc.X86MsrPolicy(())),
          "X86_MSR_POLICY with no entries", at=k, plus=4)
    k = len(hvm.records) - 1
    b.bad("end_with_body", libxc.END_LENGTH, _edit(hvm, k, Raw(RecordType.END, bytes(8))),
          "END with an 8-octet body", at=k, plus=4)

    # -- PAGE_DATA -----------------------------------------------------------------
    k = _find(hvm, libxc.PageData)
    b.bad("page_data_no_header", libxc.PD_SHORT, _edit(hvm, k, Raw(RecordType.PAGE_DATA, b"\1\0\0\0")),
          "PAGE_DATA body of 4 octets", at=k, plus=4)
    short = (100).to_bytes(4, "little") + bytes(4) + libxc.pfn_entry(0).to_bytes(8, "little")
    b.bad("page_data_count_too_big", libxc.PD_SHORT, _edit(hvm, k, Raw(RecordType.PAGE_DATA, short)),
          "count 100 but one pfn entry in the body", at=k, plus=4)
    b.bad("page_data_count_zero", libxc.PD_COUNT, _edit(hvm, k, libxc.PageData(())),
          "PAGE_DATA with count 0", at=k, plus=8)
    b.bad("page_data_reserved", libxc.PD_RESERVED, _edit(hvm, k, replace(hvm.records[k], reserved=1)),
          "reserved field after count set", at=k, plus=12)
    rec = hvm.records[k]
    pfns = list(rec.pfns)
    pfns[2] |= 1 << libxc.PFN_RESERVED_BITS[0]
    b.bad("pfn_bit52", libxc.PD_PFN_RESERVED, _edit(hvm, k, replace(rec, pfns=tuple(pfns))),
          "pfn[2] has reserved bit 52 set", at=k, plus=16 + 16)
    pfns = list(rec.pfns)
    pfns[3] |= 1 << libxc.PFN_RESERVED_BITS[-1]
    b.bad("pfn_bit59", libxc.PD_PFN_RESERVED, _edit(hvm, k, replace(rec, pfns=tuple(pfns))),
          "pfn[3] has reserved bit 59 set", at=k, plus=16 + 24)
    for t in (5, 8):
        b.bad(f"page_type_{t}", libxc.PD_PAGE_TYPE,
              _edit(hvm, k, libxc.PageData((libxc.pfn_entry(50), libxc.pfn_entry(51, t)), build.page_bytes(50))),
              f"pfn[1] has reserved page type {t}", at=k, plus=16 + 8)
    b.bad("page_data_missing_page", libxc.PD_PAGE_COUNT, _edit(hvm, k, replace(rec, pages=rec.pages[:-4096])),
          "four NOTAB pfns but three pages of data", at=k, plus=16 + 32)
    b.bad("page_data_extra_page", libxc.PD_PAGE_COUNT, _edit(hvm, k, replace(rec, pages=rec.pages + bytes(4096))),
          "four NOTAB pfns but five pages of data", at=k, plus=16 + 32)
    xtab = libxc.PageData((libxc.pfn_entry(9, PageType.XTAB),), build.page_bytes(9))
    b.bad("page_data_for_xtab", libxc.PD_PAGE_COUNT, _edit(hvm, k, xtab),
          "page data sent for an XTAB pfn", at=k, plus=16 + 8)

    # -- X86_PV_INFO ------------------------------------------------------------------
    k = _find(pv, libxc.X86PvInfo)
    b.bad("pv_info_short", libxc.PVI_LENGTH, _edit(pv, k, Raw(RecordType.X86_PV_INFO, b"\x08\x04\0\0")),
          "X86_PV_INFO body of 4 octets", at=k, plus=4)
    b.bad("pv_info_width_2", libxc.PVI_WIDTH, _edit(pv, k, libxc.X86PvInfo(2, 4)),
          "guest_width 2", at=k, plus=8)
    b.bad("pv_info_levels_2", libxc.PVI_LEVELS, _edit(pv, k, libxc.X86PvInfo(8, 2)),
          "pt_levels 2", at=k, plus=9)
    b.bad("pv_info_reserved", libxc.PVI_RESERVED, _edit(pv, k, libxc.X86PvInfo(8, 4, 1)),
          "reserved field of X86_PV_INFO set", at=k, plus=10)

    # -- X86_PV_P2M_FRAMES -------------------------------------------------------------
    k = _find(pv, libxc.X86PvP2mFrames)
    b.bad("p2m_frames_short", libxc.P2M_LENGTH, _edit(pv, k, Raw(RecordType.X86_PV_P2M_FRAMES, bytes(12))),
          "X86_PV_P2M_FRAMES body of 12 octets", at=k, plus=4)
    b.bad("p2m_frames_range", libxc.P2M_RANGE, _edit(pv, k, libxc.X86PvP2mFrames(10, 5, (1,))),
          "p2m_end_pfn below p2m_start_pfn", at=k, plus=12)
    b.bad("p2m_frames_extra_frame", libxc.P2M_FRAME_COUNT, _edit(pv, k, libxc.X86PvP2mFrames(0, 7, (1, 2))),
          "pfns 0-7 fit in one p2m frame but two are listed", at=k, plus=16)
    b.bad("p2m_frames_width_mismatch", libxc.P2M_FRAME_COUNT,
          _edit(build.libxc_stream(PV, p2m_size=1030), k, build.p2m_frames(1030, guest_width=4)),
          "a 64-bit guest's p2m frames counted as for a 32-bit guest", at=k, plus=16)

    # -- VCPU records -------------------------------------------------------------------
    k = _find(pv, libxc.X86PvVcpuBasic)
    b.bad("vcpu_short", libxc.VCPU_LENGTH, _edit(pv, k, Raw(RecordType.X86_PV_VCPU_BASIC, bytes(4))),
          "X86_PV_VCPU_BASIC body shorter than its header", at=k, plus=4)
    b.bad("vcpu_reserved", libxc.VCPU_RESERVED, _edit(pv, k, replace(pv.records[k], reserved=7)),
          "reserved field of X86_PV_VCPU_BASIC set", at=k, plus=12)
    k = _find(pv, libxc.X86PvVcpuMsrs)
    b.bad("vcpu_msrs_reserved", libxc.VCPU_RESERVED, _edit(pv, k, replace(pv.records[k], reserved=1)),
          "reserved field of X86_PV_VCPU_MSRS set", at=k, plus=12)

    # -- fixed-size and blob records ----------------------------------------------------------
    k = _find(pv, libxc.SharedInfo)
    b.bad("shared_info_short", libxc.SHINFO_LENGTH, _edit(pv, k, libxc.SharedInfo(bytes(100))),
          "SHARED_INFO of 100 octets", at=k, plus=4)
    k = _find(hvm, libxc.X86TscInfo)
    b.bad("tsc_info_short", libxc.TSC_LENGTH, _edit(hvm, k, Raw(RecordType.X86_TSC_INFO, bytes(16))),
          "X86_TSC_INFO body of 16 octets", at=k, plus=4)
    b.bad("tsc_info_reserved", libxc.TSC_RESERVED, _edit(hvm, k, replace(hvm.records[k], reserved=1)),
          "reserved field of X86_TSC_INFO set", at=k, plus=28)
    k = _find(hvm, libxc.HvmParams)
    three = libxc.HvmParams(build.HVM_PARAMS).encode_body(Endian.LITTLE)
    b.bad("hvm_params_count_mismatch", libxc.HVMP_LENGTH,
          _edit(hvm, k, Raw(RecordType.HVM_PARAMS, three[:-16])),
          "count 3 but two index/value pairs", at=k, plus=4)
    b.bad("hvm_params_short", libxc.HVMP_LENGTH, _edit(hvm, k, Raw(RecordType.HVM_PARAMS, bytes(4))),
          "HVM_PARAMS body of 4 octets", at=k, plus=4)
    b.bad("hvm_params_reserved", libxc.HVMP_RESERVED, _edit(hvm, k, replace(hvm.records[k], reserved=1)),
          "reserved field of HVM_PARAMS set", at=k, plus=12)
    k = _find(hvm, libxc.X86TscInfo)
    b.bad("toolstack_record", libxc.TOOLSTACK_DEPRECATED,
          _edit(hvm, k, libxc.Toolstack(b"toolstack blob"), drop=0),
          "the deprecated TOOLSTACK record", at=k)
    b.bad("verify_with_body", libxc.VERIFY_LENGTH, _edit(hvm, k, Raw(RecordType.VERIFY, bytes(8)), drop=0),
          "VERIFY with an 8-octet body", at=k, plus=4)
    b.bad("checkpoint_with_body", libxc.CHECKPOINT_LENGTH,
          _edit(hvm, k, Raw(RecordType.CHECKPOINT, bytes(8)), drop=0),
          "CHECKPOINT with an 8-octet body", at=k, plus=4)
    b.bad("dirty_pfn_list_odd", libxc.DIRTY_LENGTH,
          _edit(hvm, k, Raw(RecordType.CHECKPOINT_DIRTY_PFN_LIST, bytes(12)), drop=0),
          "CHECKPOINT_DIRTY_PFN_LIST body of 12 octets", at=k, plus=4)
    b.bad("dirty_pfn_list", libxc.DIRTY_DIRECTION,
          _edit(hvm, k, libxc.CheckpointDirtyPfnList((1, 2)), drop=0),
          "a back-channel CHECKPOINT_DIRTY_PFN_LIST in a saved stream", at=k)

    # -- STATIC_DATA_END and policies ---------------------------------------------------------
    k = _find(hvm, libxc.StaticDataEnd)
    b.bad("static_data_end_body", libxc.SDE_LENGTH, _edit(hvm, k, Raw(RecordType.STATIC_DATA_END, bytes(8))),
          "STATIC_DATA_END with an 8-octet body", at=k, plus=4)
    no_sde = _edit(hvm, k)
    b.bad("static_data_end_missing", libxc.SDE_MISSING, no_sde,
          "version 3 stream without STATIC_DATA_END: PAGE_DATA comes first", at=k)
    static_only = libxc.LibxcStream(hvm.image_header, hvm.domain_header,
                                    (libxc.X86CpuidPolicy(build.CPUID_LEAVES), libxc.End()))
    b.bad("static_data_end_missing_at_end", libxc.SDE_MISSING, static_only,
          "version 3 stream that ends without STATIC_DATA_END", at=1)
    b.bad("static_data_end_twice", libxc.SDE_REPEATED, _edit(hvm, k, libxc.StaticDataEnd(), drop=0),
          "two STATIC_DATA_END records", at=k + 1)
    b.bad("cpuid_policy_after_static_end", libxc.STATIC_AFTER_END,
          _edit(hvm, k + 1, libxc.X86CpuidPolicy(build.CPUID_LEAVES), drop=0),
          "X86_CPUID_POLICY after STATIC_DATA_END", at=k + 1)
    k = _find(hvm, libxc.X86CpuidPolicy)
    b.bad("cpuid_policy_partial_leaf", libxc.CPUID_LENGTH,
          _edit(hvm, k, Raw(RecordType.X86_CPUID_POLICY, bytes(25))),
          "X86_CPUID_POLICY body of 25 octets", at=k, plus=4)
    k = _find(hvm, libxc.X86MsrPolicy)
    b.bad("msr_policy_partial_entry", libxc.MSR_LENGTH,
          _edit(hvm, k, Raw(RecordType.X86_MSR_POLICY, bytes(20))),
          "X86_MSR_POLICY body of 20 octets", at=k, plus=4)

    # -- PV and HVM ordering --------------------------------------------------------------------
    i, j = _find(pv2, libxc.X86PvInfo), _find(pv2, libxc.X86PvP2mFrames)
    recs = list(pv2.records)
    recs.insert(j + 1, recs.pop(i))
    swapped = replace(pv2, records=tuple(recs))
    b.bad("pv_p2m_before_info", libxc.PV_INFO_FIRST, swapped, "X86_PV_P2M_FRAMES before X86_PV_INFO",
          at=j - 1)
    j = _find(pv, libxc.X86PvP2mFrames)
    recs = list(pv.records)
    p2m = recs.pop(j)
    recs.insert(j + 1, p2m)
    b.bad("pv_page_data_before_p2m", libxc.PV_P2M_FIRST, replace(pv, records=tuple(recs)),
          "PAGE_DATA before X86_PV_P2M_FRAMES", at=j)
    first_vcpu = _find(pv, libxc.X86PvVcpuBasic)
    recs = list(pv.records)
    vcpus = recs[first_vcpu:first_vcpu + 4]
    del recs[first_vcpu:first_vcpu + 4]
    first_page = _find(pv, libxc.PageData)
    recs[first_page:first_page] = vcpus
    b.bad("pv_vcpu_before_page_data", libxc.PV_PAGES_FIRST, replace(pv, records=tuple(recs)),
          "VCPU records before any PAGE_DATA", at=first_page)
    recs = [r for r in pv.records if not isinstance(r, libxc.X86PvVcpu)]
    no_vcpu = replace(pv, records=tuple(recs))
    b.bad("pv_without_vcpus", libxc.PV_REQUIRED, no_vcpu, "x86 PV stream without VCPU records",
          at=len(recs) - 1)
    i, j = _find(hvm, libxc.HvmParams), _find(hvm, libxc.HvmContext)
    recs = list(hvm.records)
    recs[i], recs[j] = recs[j], recs[i]
    b.bad("hvm_context_before_params", libxc.HVM_PARAMS_FIRST, replace(hvm, records=tuple(recs)),
          "HVM_CONTEXT before HVM_PARAMS", at=i)
    return b.out
