"""Hand-written legacy images: valid PV and HVM images of both toolstack widths,
and for every ``legacy.*`` rule one image breaking exactly that rule.

Legacy images do not say everything about themselves, so every example's
``meta`` carries ``width``, ``guest``, ``libxl`` (the toolstack chunk is a
libxl blob), ``qemu`` (an HVM image ends with the qemu record) and ``xl`` (an
xl header precedes it): pass them to ``legacy.validate``/``decode`` (or to
``convert-legacy-stream`` as ``-w``, ``-g``, ``-f``, ``-x``).
"""

from __future__ import annotations

from dataclasses import replace

from .. import legacy as L
from .. import xl
from . import Example

FORMAT = "legacy"


def _meta(stream: L.LegacyStream, **extra) -> dict:
    meta = {"width": stream.width, "guest": L.guest_name(stream.guest),
            "libxl": stream.toolstack() is not None,
            "qemu": stream.qemu is not None, "xl": stream.xl is not None}
    meta.update(extra)
    return meta


def _ex(name: str, stream: L.LegacyStream, rule: str | None, description: str, *,
        data: bytes | None = None, **extra) -> Example:
    return Example(FORMAT, name, L.encode(stream) if data is None else data, rule, description,
                   _meta(stream, **extra))


def _valid() -> list[Example]:
    out = []
    for width in (32, 64):
        for gw in (4, 8):
            s = L.build_pv_stream(width=width, guest_width=gw, vcpus=[0, 1])
            out.append(_ex(f"pv{width}-guest{gw * 8}", s, None,
                           f"PV image from a {width}-bit toolstack, {gw * 8}-bit guest, two vcpus"))
        s = L.build_pv_stream(width=width, vcpus=[0, 2, 5], xsave_area=832,
                              pages=[(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 0x9), (6, 0xF),
                                     (7, 0xD), (8, 0xE), (9, 0)],
                              unmapped=(10, 11), toolstack=L.LibxlToolstack(()))
        out.append(_ex(f"pv{width}-xsave-pagetables", s, None,
                       f"{width}-bit PV image: xcnt/xsave, page-table, XTAB/BROKEN/XALLOC entries, "
                       "sparse vcpus, unmapped PFNs, empty libxl toolstack blob"))
        s = L.build_hvm_stream(width=width, physmap=L.sample_physmap(3))
        out.append(_ex(f"hvm{width}-physmap-qemu", s, None,
                       f"HVM image from a {width}-bit libxl: physmap toolstack blob, qemu record"))
        s = L.build_hvm_stream(width=width, physmap=[L.PhysmapEntry(0xFC000000, 0xFC000000, 0x10000, None),
                                                     L.PhysmapEntry(0xF0000000, 0xF0000000, 0x800000,
                                                                    b"vga.vram")])
        out.append(_ex(f"hvm{width}-physmap-nameless", s, None,
                       f"{width}-bit HVM image with a physmap entry whose namelen is 0 "
                       "(libxl's save wrote it when xenstore had no name)"))
        s = L.build_hvm_stream(width=width, qemu=None, toolstack=None)
        out.append(_ex(f"hvm{width}-libxc-only", s, None,
                       f"{width}-bit HVM image as libxc alone wrote it: no toolstack blob, no qemu record"))
        s = L.build_hvm_stream(width=width, qemu=L.QemuRecord(b"RemusDeviceModelState", b"remus" * 9),
                               params={c: 0x1000 + i for i, c in enumerate(L.HVM_PARAM_CHUNKS)},
                               pages=[(p, 0) for p in range(40)],
                               extra_chunks=(L.MarkerChunk(L.Chunk.ENABLE_VERIFY_MODE),))
        out.append(_ex(f"hvm{width}-all-params-remus", s, None,
                       f"{width}-bit HVM image with every HVM parameter chunk, two batches, verify mode "
                       "and the Remus qemu signature"))
    s = L.build_hvm_stream(width=64, xl=xl.XlHeader.with_config(b'{"c_info": {}}\0', streamv2=False),
                           physmap=L.sample_physmap(1))
    out.append(_ex("hvm64-xl-header", s, None, "64-bit HVM image behind an xl savefile header"))
    return out


def _malformed() -> list[Example]:
    out = []
    hvm = L.build_hvm_stream(width=64, physmap=L.sample_physmap(2))
    hvm32 = L.build_hvm_stream(width=32, physmap=L.sample_physmap(2))
    pv = L.build_pv_stream(width=64, vcpus=[0, 1])
    pv32 = L.build_pv_stream(width=32, guest_width=4)

    def add(name, stream, rule, description, **kw):
        out.append(_ex(name, stream, rule, description, **kw))

    full = L.encode(hvm)
    add("cut-in-page-batch", hvm, L.TRUNCATED, "64-bit HVM image cut inside the page data",
        data=full[:3000])
    add("cut-in-qemu", hvm, L.TRUNCATED, "qemu record length runs past the end", data=full[:-10])
    toolstack_at = full.index(L.CHUNK_TYPE.pack(L.LE, L.Chunk.TOOLSTACK))
    add("toolstack-length-past-end", hvm, L.TRUNCATED,
        "XC_SAVE_ID_TOOLSTACK length claims 2^32-1 octets at the end of the input",
        data=full[:toolstack_at + 4] + b"\xff\xff\xff\xff" + full[toolstack_at + 8:toolstack_at + 40])
    add("short-tsc-chunk", pv32, L.TRUNCATED, "input ends inside XC_SAVE_ID_TSC_INFO",
        data=L.encode(pv32)[:L.encode(pv32).index(L.CHUNK_TYPE.pack(L.LE, L.Chunk.TSC_INFO)) + 12])
    add("trailing-junk", pv, L.TRAILING, "octets after the PV shared info page",
        data=L.encode(pv) + b"junk")
    add("p2m-size-zero", replace(hvm, p2m_size=0), L.P2M_SIZE, "HVM image with p2m_size 0")
    add("no-extended-info", replace(pv, extended_info=replace(pv.extended_info, signature=0x1234)),
        L.EXT_SIGNATURE, "PV image (given as PV) without the extended-info signature")
    ext = pv.extended_info
    add("ext-size-short", replace(pv, extended_info=replace(ext, total_size=L.encode_extended_info(
        ext, 64).__len__() - 12 - 1)), L.EXT_SIZE, "extended-info total size one octet short of its blocks")
    add("ext-unknown-block", replace(pv, extended_info=replace(ext, blocks=ext.blocks + (
        L.ExtInfoBlock(b"abcd", b"\1\2\3\4"),))), L.EXT_BLOCK_ID, "unknown extended-info block 'abcd'")
    add("ext-vcpu-size", replace(pv, extended_info=L.ExtendedInfo((L.ExtInfoBlock(b"vcpu", bytes(100)),))),
        L.EXT_VCPU_SIZE, "vcpu block of 100 octets")
    add("ext-vcpu-missing", replace(pv, extended_info=L.ExtendedInfo((L.ExtInfoBlock(b"extv"),))),
        L.EXT_VCPU_MISSING, "extended-info chunk without a vcpu block")
    add("ext-xcnt-short", replace(pv, extended_info=replace(ext, blocks=ext.blocks + (
        L.ExtInfoBlock(b"xcnt", b"\x10\x00"),))), L.EXT_XCNT_SIZE, "xcnt block of 2 octets")
    add("chunk-type-unknown", replace(hvm, chunks=hvm.chunks[:1] + (L.MarkerChunk(-21),) + hvm.chunks[1:]),
        L.CHUNK_TYPE_RULE, "chunk type -21")
    add("chunk-enable-compression", replace(hvm, chunks=hvm.chunks + (
        L.MarkerChunk(L.Chunk.ENABLE_COMPRESSION),)), L.CHUNK_UNSUPPORTED,
        "XC_SAVE_ID_ENABLE_COMPRESSION (Remus compression)")
    add("hvm-param-in-pv", replace(pv, chunks=pv.chunks + (L.HvmParamChunk(L.Chunk.HVM_IDENT_PT, 0xFEFFC000),)),
        L.CHUNK_HVM_ONLY, "XC_SAVE_ID_HVM_IDENT_PT in a PV image")
    add("hvm-param-pad", replace(hvm, chunks=hvm.chunks + (L.HvmParamChunk(L.Chunk.HVM_VIRIDIAN, 1, pad=7),)),
        L.CHUNK_PAD, "XC_SAVE_ID_HVM_VIRIDIAN with a non-zero pad")
    over = L.PageBatch(tuple(L.pfn_entry(p, L.XTAB) for p in range(L.MAX_BATCH + 1)))
    add("batch-over-max", replace(hvm32, chunks=(over,) + hvm32.chunks), L.BATCH_MAX,
        "page batch of 1025 entries")
    dup = L.build_batches([(1, 0), (2, 0), (1, 0)])[0]
    add("batch-duplicate-pfn", replace(hvm, chunks=(dup,) + hvm.chunks), L.BATCH_DUPLICATE,
        "PFN 1 twice in one batch")
    add("pv-no-page-batch", replace(pv, chunks=tuple(c for c in pv.chunks if not isinstance(c, L.PageBatch))),
        L.BATCH_NONE, "a PV image whose body has no page batch")
    badtype = L.build_batches([(1, 0), (2, 5)])[0]
    add("batch-page-type-5", replace(hvm32, chunks=(badtype,) + hvm32.chunks), L.BATCH_TYPE,
        "page type 5 in bits 31-28")
    high = L.PageBatch(((1 << 32) | 3,), L.pattern_page(3))
    add("batch-high-bits", replace(hvm, chunks=(high,) + hvm.chunks), L.BATCH_HIGH,
        "64-bit PFN entry with bit 32 set")
    add("vcpu-max-id", replace(hvm, chunks=hvm.chunks + (L.VcpuInfo(4096, (1,) * 65),)), L.VCPU_MAX,
        "max_vcpu_id 4096")
    pv_extra_bit = replace(pv, chunks=tuple(L.VcpuInfo(1, (0b111,)) if isinstance(c, L.VcpuInfo) else c
                                            for c in pv.chunks))
    add("vcpu-map-beyond-max", pv_extra_bit, L.VCPU_MAP, "vcpumap bit 2 set with max_vcpu_id 1")
    add("toolstack-short", replace(hvm, chunks=hvm.chunks + (L.ToolstackChunk(b"\1\0\0\0"),)),
        L.TOOLSTACK_SHORT, "libxl toolstack blob of 4 octets")
    add("toolstack-version-2", replace(hvm, chunks=tuple(
        L.ToolstackChunk(replace(c.data, version=2)) if isinstance(c, L.ToolstackChunk) else c
        for c in hvm.chunks)), L.TOOLSTACK_VERSION, "libxl toolstack blob version 2")

    def with_toolstack(stream, ts):
        return replace(stream, chunks=tuple(L.ToolstackChunk(ts) if isinstance(c, L.ToolstackChunk) else c
                                            for c in stream.chunks))

    entries = tuple(L.sample_physmap(1))
    for s, w in ((hvm32, 32), (hvm, 64)):
        add(f"physmap-count-past-end-{w}", with_toolstack(s, L.LibxlToolstack(entries, count=3)),
            L.PHYSMAP_TRUNCATED, f"{w}-bit blob: count 3, one entry")
        add(f"physmap-name-no-nul-{w}", with_toolstack(s, L.LibxlToolstack(
            (replace(entries[0], terminated=False),))), L.PHYSMAP_NUL, f"{w}-bit blob: name without NUL")
        add(f"physmap-trailing-{w}", with_toolstack(s, L.LibxlToolstack(entries, trailing=b"zz")),
            L.PHYSMAP_TRAILING, f"{w}-bit blob: 2 octets after the entries")
    add("unmapped-count-huge", replace(pv, tail=replace(pv.tail, unmapped_count=(1 << 28) + 1)),
        L.UNMAPPED_COUNT, "2^28+1 unmapped PFNs announced")
    pvx = L.build_pv_stream(width=32, xsave_area=64, vcpus=[0])
    add("xsave-size-mismatch", replace(pvx, tail=replace(pvx.tail, vcpus=tuple(
        replace(v, xsave=replace(v.xsave, size=72)) for v in pvx.tail.vcpus))), L.XSAVE_SIZE,
        "vcpu xsave size 72 where xcnt says 64")
    add("hvm-context-empty", replace(hvm, tail=replace(hvm.tail, context=b"")), L.HVM_CONTEXT_EMPTY,
        "HVM tail with a zero-length context")
    add("qemu-signature", replace(hvm, qemu=L.QemuRecord(b"NotAQemuRecordAtAll!!", b"")), L.QEMU_SIG,
        "unknown qemu signature")
    return out


def examples() -> list[Example]:
    return _valid() + _malformed()
