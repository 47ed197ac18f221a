"""Legacy (pre-v2) libxc/libxl images from 32- and 64-bit toolstacks: a
constructive builder (PV and HVM, libxl physmap toolstack blob, qemu tail,
optional xl header) and one-rule mutations.  The reference tells the width
and guest type from the first octets, so every image here is built to be
detected as what it is."""

from __future__ import annotations

from dataclasses import replace

from xenstream.reference import legacy as G
from xenstream.reference import xl as XL

from ._draw import Draw, pattern, pick
from ._registry import mutation, valid_builder

FORMAT = "legacy"
PV_TYPES = (0, 0, 1, 2, 3, 4, 9, 10, 11, 12, 0xD, 0xE, 0xF)
HVM_TYPES = (0, 0, 0xF, 0xD, 0xE)
NAME_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789._-"


def physmap_entry(d: Draw, i: int, name_len: int | None = None) -> G.PhysmapEntry:
    n = d.int(0, 20) if name_len is None else name_len
    name = None if n == 0 and d.bool() else d.bytes(n, n, NAME_ALPHABET)
    base = 0xF0000000 + i * 0x1000000
    return G.PhysmapEntry(base, base, d.choice([0x800000, 0x10000, d.int(1, 1 << 30)]), name,
                          d.bytes(4, 4) if d.bool() else b"\0\0\0\0")


def build(d: Draw, *, width=None, guest=None, pages=None, physmap=None, qemu=None, xl=None,
          records=None) -> G.LegacyStream:
    width = pick(d, width, lambda: d.choice([64, 32]))
    guest = pick(d, guest, lambda: d.choice(["hvm", "pv"]))
    npages = pick(d, pages, lambda: d.int(1, 6))
    first = d.int(0, 40)
    types = PV_TYPES if guest == "pv" else HVM_TYPES
    page_list = [(first + k, d.choice(types) if d.bool() else 0) for k in range(npages)]
    p2m_size = first + npages + d.int(0, 8)
    tsc = G.TscInfo(d.int(0, 3), d.int(0, 1 << 40), d.int(0, 4_000_000), d.int(0, 9)) if d.bool() else None
    want_xl = pick(d, xl, lambda: d.int(0, 3) == 0)
    xl_header = None
    if want_xl:
        config = d.choice([None, b'{"c_info": {}}\0', b'name="g"\n'])
        xl_header = XL.XlHeader.with_config(config, json_config=config is not None and config[:1] == b"{",
                                            streamv2=False)
    extra = (G.MarkerChunk(G.Chunk.ENABLE_VERIFY_MODE),) if d.int(0, 3) == 0 else ()
    if guest == "pv":
        vcpus = d.sample(range(4), 1, 3) or [0]
        ts = G.LibxlToolstack(()) if d.bool() else None
        return G.build_pv_stream(width=width, guest_width=d.choice([8, 4]), p2m_size=p2m_size, pages=page_list,
                                 vcpus=vcpus, xsave_area=d.choice([0, 64, 832]), extended=d.bool(), tsc=tsc,
                                 unmapped=tuple(range(p2m_size, p2m_size + d.int(0, 2))), toolstack=ts,
                                 extra_chunks=extra, last_checkpoint=d.bool(), xl=xl_header)
    nphys = pick(d, physmap, lambda: d.int(0, 3))
    if nphys is True:
        nphys = d.int(1, 3)
    phys = [physmap_entry(d, i) for i in range(nphys or 0)] if nphys is not False and (
        nphys or d.bool()) else None
    params = {c: d.int(0, 1 << 32) for c in d.sample(sorted(G.HVM_PARAM_CHUNKS), 0, 4)}
    want_qemu = pick(d, qemu, lambda: d.int(0, 3) != 0)
    q = None
    if want_qemu:
        sig = d.choice(G.QEMU_SIGNATURES)
        q = G.QemuRecord(sig, pattern(len(sig), d.int(0, 64)))
    return G.build_hvm_stream(width=width, p2m_size=p2m_size, pages=page_list,
                              vcpus=d.sample(range(4), 1, 2) or [0], params=params, tsc=tsc, physmap=phys,
                              magic=(d.int(0, 1 << 20), d.int(0, 1 << 20), d.int(0, 1 << 20)),
                              context=pattern(7, d.int(1, 64)), qemu=q, extra_chunks=extra,
                              last_checkpoint=d.bool(), xl=xl_header)


def describe(s: G.LegacyStream) -> str:
    parts = [f"legacy {s.width}-bit {G.guest_name(s.guest).upper()} image"]
    if s.toolstack() is not None:
        parts.append(f"libxl toolstack blob ({len(s.toolstack().entries)} physmap entries)")
    if s.qemu is not None:
        parts.append(f"qemu record {s.qemu.signature.decode()}")
    if s.xl is not None:
        parts.append("behind an xl header")
    return ", ".join(parts)


@valid_builder(FORMAT)
def valid(d: Draw, **opts):
    s = build(d, **opts)
    return G.encode(s), "valid " + describe(s)


def enc(s) -> bytes:
    return G.encode(s)


def add_chunk(d: Draw, s: G.LegacyStream, chunk) -> G.LegacyStream:
    """``chunk`` somewhere after the first chunk (the first octets tell the width)."""
    chunks = list(s.chunks)
    chunks.insert(d.int(1, len(chunks)), chunk)
    return replace(s, chunks=tuple(chunks))


def with_toolstack(s: G.LegacyStream, ts) -> G.LegacyStream:
    chunks = tuple(c for c in s.chunks if not isinstance(c, G.ToolstackChunk))
    last = [i for i, c in enumerate(chunks) if isinstance(c, G.MarkerChunk)]
    at = last[-1] if last and chunks[last[-1]].type == G.Chunk.LAST_CHECKPOINT else len(chunks)
    return replace(s, chunks=chunks[:at] + (G.ToolstackChunk(ts),) + chunks[at:])


# --------------------------------------------------------------------------
# padding, reserved
# --------------------------------------------------------------------------


@mutation(FORMAT, "padding", G.CHUNK_PAD)
def _param_pad(d: Draw):
    s = build(d, guest="hvm")
    c = d.choice(sorted(G.HVM_PARAM_CHUNKS))
    pad = d.int(1, 0xFFFFFFFF)
    s = add_chunk(d, s, G.HvmParamChunk(c, d.int(0, 1 << 32), pad))
    return enc(s), f"{G.CHUNK_NAMES[c]} with pad 0x{pad:08x}"


@mutation(FORMAT, "reserved", G.BATCH_HIGH)
def _batch_high_bits(d: Draw):
    s = build(d, width=64)
    i = d.choice([i for i, c in enumerate(s.chunks) if isinstance(c, G.PageBatch)])
    batch = s.chunks[i]
    j = d.int(0, len(batch.pfns) - 1)
    bits = d.int(1, 0xFFFFFFFF) << 32
    pfns = list(batch.pfns)
    pfns[j] |= bits
    chunks = list(s.chunks)
    chunks[i] = replace(batch, pfns=tuple(pfns))
    return enc(replace(s, chunks=tuple(chunks))), f"64-bit pfn entry {j} has bits 63-32 set (0x{bits:x})"


@mutation(FORMAT, "reserved", G.VCPU_MAP)
def _vcpu_map(d: Draw):
    s = build(d)
    i = next(i for i, c in enumerate(s.chunks) if isinstance(c, G.VcpuInfo))
    info = s.chunks[i]
    top = info.max_vcpu_id
    extra = 1 << d.int(top % 64 + 1, 63) if top % 64 != 63 else 0
    if not extra:
        return _vcpu_map(d)
    chunks = list(s.chunks)
    chunks[i] = G.VcpuInfo(top, info.vcpumap[:-1] + (info.vcpumap[-1] | extra,))
    return enc(replace(s, chunks=tuple(chunks))), f"vcpumap bit above max_vcpu_id {top} set"


# --------------------------------------------------------------------------
# width: the physmap entry of 32- and 64-bit builds
# --------------------------------------------------------------------------


@mutation(FORMAT, "width", G.PHYSMAP_TRUNCATED, "physmap_64bit_without_padding")
def _physmap_missing_padding(d: Draw):
    s = build(d, guest="hvm", width=64, physmap=False)
    entries = [physmap_entry(d, i) for i in range(d.int(0, 2))]
    last = physmap_entry(d, 9, d.int(1, 16))
    blob = G.LibxlToolstack(tuple(entries + [last])).encode(64)[:-4]
    s = with_toolstack(s, blob)
    return enc(s), (f"64-bit image whose last physmap entry (name of {last.namelen} octets, "
                    f"{(28 + last.namelen) % 8} mod 8) lacks the 4 octets of struct padding")


@mutation(FORMAT, "width", G.PHYSMAP_TRAILING, "physmap_32bit_with_padding")
def _physmap_extra_padding(d: Draw):
    s = build(d, guest="hvm", width=32, physmap=False)
    entries = [physmap_entry(d, i) for i in range(d.int(0, 2))]
    last = physmap_entry(d, 9, d.int(1, 16))
    blob = G.LibxlToolstack(tuple(entries + [last])).encode(32) + d.bytes(4, 4)
    s = with_toolstack(s, blob)
    return enc(s), (f"32-bit image whose last physmap entry (name of {last.namelen} octets) is followed "
                    "by 4 octets of 64-bit struct padding")


# --------------------------------------------------------------------------
# strings
# --------------------------------------------------------------------------


@mutation(FORMAT, "strings", G.PHYSMAP_NUL)
def _physmap_name_nul(d: Draw):
    s = build(d, guest="hvm", physmap=False)
    entries = [physmap_entry(d, i, d.int(1, 12)) for i in range(d.int(1, 3))]
    k = d.int(0, len(entries) - 1)
    entries[k] = replace(entries[k], terminated=False)
    s = with_toolstack(s, G.LibxlToolstack(tuple(entries)))
    return enc(s), f"physmap entry {k}'s name has no NUL terminator"


@mutation(FORMAT, "strings", G.TOOLSTACK_SHORT)
def _toolstack_short(d: Draw):
    s = build(d, guest="hvm", physmap=False)
    s = with_toolstack(s, b"\1\0\0\0" + d.bytes(0, 3))
    return enc(s), "libxl toolstack blob shorter than its version and count"


# --------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------


@mutation(FORMAT, "framing", G.TRUNCATED)
def _truncated(d: Draw):
    s = build(d)
    data = enc(s)
    end = len(data)
    if s.guest is G.HVM and s.qemu is not None:
        qlen = len(G.encode_qemu(s.qemu))
        if s.qemu.signature in G.QEMU_HAS_LENGTH and not G.QEMU_HAS_LENGTH[s.qemu.signature]:
            end -= qlen  # the xend-era record runs to EOF: cut before it
        elif d.bool():
            cut = d.int(end - qlen + 1, end - 1) if len(s.qemu.data) or True else end - 1
            return data[:cut], f"input cut at {cut}, inside the qemu record"
        else:
            end -= qlen
    elif s.guest is G.HVM:
        pass
    start = 16 + (len(s.xl.encode()) if s.xl is not None else 0)
    cut = d.int(start, end - 1)
    return data[:cut], f"input of {len(data)} octets cut at {cut}"


@mutation(FORMAT, "framing", G.TRAILING)
def _trailing(d: Draw):
    s = build(d, guest="pv")
    return enc(s) + d.bytes(1, 16), "octets follow the PV shared info page"


@mutation(FORMAT, "framing", G.CHUNK_TYPE_RULE)
def _chunk_type(d: Draw):
    s = build(d)
    t = d.choice([-21, d.int(-0x80000000, -21)])
    return enc(add_chunk(d, s, G.MarkerChunk(t))), f"chunk type {t}"


@mutation(FORMAT, "framing", G.CHUNK_UNSUPPORTED)
def _chunk_unsupported(d: Draw):
    s = build(d)
    t = d.choice(sorted(G.UNSUPPORTED_CHUNKS))
    return enc(add_chunk(d, s, G.MarkerChunk(t))), f"{G.CHUNK_NAMES[t]} has no v2 counterpart"


@mutation(FORMAT, "framing", G.BATCH_MAX)
def _batch_max(d: Draw):
    s = build(d)
    n = G.MAX_BATCH + d.int(1, 8)
    over = G.PageBatch(tuple(G.pfn_entry(p, G.XTAB) for p in range(n)))
    return enc(add_chunk(d, s, over)), f"page batch of {n} entries"


@mutation(FORMAT, "framing", G.EXT_SIZE)
def _ext_size(d: Draw):
    s = build(d, guest="pv")
    ext = s.extended_info
    real = len(G.encode_extended_info(ext, s.width)) - G.ULONG[s.width].size - 4
    total = real - d.int(1, 7)  # the last block header still starts inside the total
    return enc(replace(s, extended_info=replace(ext, total_size=total))), \
        f"extended-info total size {total}, its blocks take {real}"


@mutation(FORMAT, "framing", G.PHYSMAP_TRUNCATED, "physmap_count_past_end")
def _physmap_count(d: Draw):
    s = build(d, guest="hvm", physmap=False)
    entries = tuple(physmap_entry(d, i) for i in range(d.int(0, 2)))
    count = len(entries) + d.int(1, 3)
    s = with_toolstack(s, G.LibxlToolstack(entries, count=count))
    return enc(s), f"physmap count {count} with {len(entries)} entries"


# --------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------


@mutation(FORMAT, "semantics", G.P2M_SIZE)
def _p2m_size(d: Draw):
    s = build(d, guest="hvm")
    value = d.choice([0, d.int(G.MAX_P2M_SIZE + 1, 0xFFFFFFFF)])
    return enc(replace(s, p2m_size=value)), f"p2m_size 0x{value:x}"


@mutation(FORMAT, "semantics", G.EXT_BLOCK_ID)
def _ext_block_id(d: Draw):
    s = build(d, guest="pv")
    ident = d.choice([b"abcd", b"VCPU", b"xsav", b"\0\0\0\0"])
    ext = s.extended_info
    blocks = ext.blocks + (G.ExtInfoBlock(ident, d.bytes(0, 8)),)
    return enc(replace(s, extended_info=replace(ext, blocks=blocks))), f"unknown extended-info block {ident!r}"


@mutation(FORMAT, "semantics", G.EXT_VCPU_SIZE)
def _ext_vcpu_size(d: Draw):
    s = build(d, guest="pv")
    size = d.choice([100, 0, 0xAF0 + 8, 0x1430 - 8])
    ext = s.extended_info
    blocks = (G.ExtInfoBlock(b"vcpu", bytes(size)),) + ext.blocks[1:]
    return enc(replace(s, extended_info=replace(ext, blocks=blocks))), f"vcpu block of {size} octets"


@mutation(FORMAT, "semantics", G.EXT_VCPU_MISSING)
def _ext_vcpu_missing(d: Draw):
    s = build(d, guest="pv")
    return enc(replace(s, extended_info=G.ExtendedInfo((G.ExtInfoBlock(b"extv"),)))), \
        "extended-info chunk without a vcpu block"


@mutation(FORMAT, "semantics", G.EXT_XCNT_SIZE)
def _ext_xcnt(d: Draw):
    s = build(d, guest="pv")
    ext = s.extended_info
    blocks = tuple(b for b in ext.blocks if b.id != b"xcnt")
    bad = d.choice([d.bytes(0, 3), (d.int(0, 15)).to_bytes(4, "little")])
    blocks += (G.ExtInfoBlock(b"xcnt", bad),)
    return enc(replace(s, extended_info=replace(ext, blocks=blocks))), f"xcnt block {bad.hex()}"


@mutation(FORMAT, "semantics", G.CHUNK_HVM_ONLY)
def _hvm_param_in_pv(d: Draw):
    s = build(d, guest="pv")
    c = d.choice(sorted(G.HVM_PARAM_CHUNKS))
    return enc(add_chunk(d, s, G.HvmParamChunk(c, d.int(0, 1 << 32)))), f"{G.CHUNK_NAMES[c]} in a PV image"


@mutation(FORMAT, "semantics", G.BATCH_DUPLICATE)
def _batch_duplicate(d: Draw):
    s = build(d)
    pfn = d.int(1, 100)
    others = [(pfn + 1 + k, 0) for k in range(d.int(0, 3))]
    entries = others + [(pfn, 0)]
    entries.insert(d.int(0, len(others)), (pfn, d.choice([0, 0xF])))
    dup = G.build_batches(entries)[0]
    return enc(add_chunk(d, s, dup)), f"pfn {pfn} twice in one batch"


@mutation(FORMAT, "semantics", G.BATCH_TYPE)
def _batch_type(d: Draw):
    s = build(d)
    t = d.int(5, 8)
    entries = [(200 + k, 0) for k in range(d.int(0, 3))]
    entries.insert(d.int(0, len(entries)), (300, t))
    batch = G.build_batches(entries)[0]
    return enc(add_chunk(d, s, batch)), f"page type {t} in bits 31-28"


@mutation(FORMAT, "semantics", G.VCPU_MAX)
def _vcpu_max(d: Draw):
    s = build(d, guest="hvm")
    top = d.choice([4096, d.int(4096, 70000), -1, -d.int(2, 1000)])
    words = max(top, 0) // 64 + 1
    return enc(add_chunk(d, s, G.VcpuInfo(top, (1,) * words))), f"max_vcpu_id {top}"


@mutation(FORMAT, "semantics", G.UNMAPPED_COUNT)
def _unmapped(d: Draw):
    s = build(d, guest="pv")
    n = (1 << 28) + d.int(1, 1000)
    return enc(replace(s, tail=replace(s.tail, unmapped_count=n))), f"{n} unmapped PFNs announced"


@mutation(FORMAT, "semantics", G.XSAVE_SIZE)
def _xsave_size(d: Draw):
    s = build(d, guest="pv")
    if not s.extended_info.xsave_size:
        s = G.build_pv_stream(width=s.width, xsave_area=64, vcpus=[0], p2m_size=s.p2m_size)
    area = s.extended_info.xsave_size - 16
    size = area + d.choice([8, -8, 1, 64])
    vcpus = list(s.tail.vcpus)
    k = d.int(0, len(vcpus) - 1)
    vcpus[k] = replace(vcpus[k], xsave=replace(vcpus[k].xsave, size=size))
    return enc(replace(s, tail=replace(s.tail, vcpus=tuple(vcpus)))), \
        f"vcpu {vcpus[k].vcpu_id} xsave size {size} where xcnt says {area}"


@mutation(FORMAT, "semantics", G.HVM_CONTEXT_EMPTY)
def _hvm_context_empty(d: Draw):
    s = build(d, guest="hvm")
    return enc(replace(s, tail=replace(s.tail, context=b""))), "HVM tail with an empty context"


@mutation(FORMAT, "semantics", G.QEMU_SIG)
def _qemu_sig(d: Draw):
    s = build(d, guest="hvm")
    sig = d.choice([b"NotAQemuRecordAtAll!!", b"DeviceModelRecord0001", d.bytes(21, 21)])
    if sig in G.QEMU_HAS_LENGTH:
        sig = b"X" + sig[1:]
    return enc(replace(s, qemu=G.QemuRecord(sig, d.bytes(0, 8)))), f"qemu signature {sig!r}"



@mutation(FORMAT, "semantics", getattr(G, "BATCH_NONE", "legacy.page_batch.none"))
def _no_page_batch(d: Draw):
    s = build(d, guest="pv")
    chunks = tuple(c for c in s.chunks if not isinstance(c, G.PageBatch))
    return enc(replace(s, chunks=chunks)), "a PV image whose body has no page batch"


# -- rules out of reach ---------------------------------------------------------------------
#: Rules no stream can break while the reader detects width and guest type itself
#: (``xenstream verify -f legacy`` and the property tests pass no options).
UNREACHABLE = {
    G.EXT_SIGNATURE: "a PV image is told apart from an HVM one only by the extended-info signature, "
                     "so an image without it is read as HVM (reachable only with guest=pv given)",
    G.TOOLSTACK_VERSION: "a toolstack blob whose version is not 1 does not look like a libxl blob and is "
                         "kept opaque (reachable only with libxl=True given)",
}
