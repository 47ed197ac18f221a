"""Legacy images: codec round trips, width detection, the physmap layouts,
examples, and the reference converter checked record by record."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace

import pytest

from xenstream.reference import legacy as L
from xenstream.reference import legacy_convert, libxc, libxl
from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError, UsageError
from xenstream.reference.examples import legacy as legacy_examples
from xenstream.reference.rules import catalogue
from xenstream.reference.source import Source

WIDTHS = (32, 64)
OPTS = ("width", "guest", "libxl", "qemu", "xl")


def _validate(data: bytes, **opts) -> Checker:
    ck = Checker(verbose=True)
    try:
        L.validate(Source.from_bytes(data), ck, **opts)
    except StreamError:
        pass
    return ck


def _pv(width, gw=8, **kw):
    return L.build_pv_stream(width=width, guest_width=gw, **kw)


# --- round trips -------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("gw", (4, 8))
def test_pv_round_trip(width, gw):
    s = _pv(width, gw, vcpus=[0, 1, 64], xsave_area=64, unmapped=(3, 9),
            pages=[(0, 0), (1, 1), (2, 0xF), (3, 0xD), (4, 0xC), (5, 0xE)],
            toolstack=L.LibxlToolstack(()))
    _round_trips(s)


@pytest.mark.parametrize("width", WIDTHS)
def test_hvm_round_trip(width):
    _round_trips(L.build_hvm_stream(width=width, physmap=L.sample_physmap(4), vcpus=[0, 1, 2, 3]))


def _round_trips(s):
    """``s`` encodes to a stream without findings that decodes to ``s`` and re-encodes the same."""
    data = L.encode(s)
    assert L.decode(data) == s
    assert L.encode(L.decode(data)) == data
    assert _validate(data).findings == []


@pytest.mark.parametrize("width", WIDTHS)
def test_hvm_without_qemu_and_with_xend_qemu(width):
    s = L.build_hvm_stream(width=width, qemu=None)
    assert L.decode(L.encode(s)) == s
    s = L.build_hvm_stream(width=width, qemu=L.QemuRecord(b"QemuDeviceModelRecord", b"to the end" * 50))
    assert L.decode(L.encode(s)) == s


def test_validation_does_not_trust_counts():
    s = L.build_hvm_stream(width=64)
    data = L.encode(s)
    at = data.index(L.CHUNK_TYPE.pack(L.LE, L.Chunk.VCPU_INFO))
    bad = data[:at] + L.CHUNK_TYPE.pack(L.LE, L.Chunk.TOOLSTACK) + b"\xff\xff\xff\xff"
    ck = _validate(bad)
    assert ck.rule_ids() == [L.TRUNCATED]
    assert ck.findings[0].offset == len(bad)


# --- detection ---------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("guest", ("pv", "hvm"))
def test_detect_width_and_guest(width, guest):
    s = _pv(width) if guest == "pv" else L.build_hvm_stream(width=width)
    det = L.detect(L.encode(s)[:64])
    assert (det.width, det.guest, det.ambiguous) == (width, L.guest_type(guest), False)


def test_detect_32bit_hvm_first_chunk_kinds():
    batch_first = L.build_hvm_stream(width=32, tsc=None)
    assert L.detect(L.encode(batch_first)).reason.startswith("octets 4-7 positive")
    verify_first = replace(batch_first, chunks=(L.MarkerChunk(L.Chunk.ENABLE_VERIFY_MODE),) + batch_first.chunks)
    det = L.detect(L.encode(verify_first))
    assert (det.width, det.guest) == (32, L.HVM)


def test_detect_empty_body_is_ambiguous():
    # octets 4-7 are the END chunk: zero, as in a 64-bit image; the spec's test
    # alone says 64-bit, the magic PFN that follows gives the 32-bit image away
    empty = L.LegacyStream(32, "hvm", 16, (), L.HvmTail(0xFEFFF, 0xFEFFE, 0xFEFFD, b"ctx"))
    det = L.detect(L.encode(empty))
    assert (det.width, det.guest, det.ambiguous) == (32, L.HVM, True)
    assert L.decode(L.encode(empty)) == empty
    # a 64-bit image with an empty body: the first chunk is END
    empty64 = replace(empty, width=64)
    det = L.detect(L.encode(empty64))
    assert (det.width, det.ambiguous) == (64, True)
    assert L.decode(L.encode(empty64)) == empty64


def test_detect_behind_xl_header():
    from xenstream.reference import xl
    s = L.build_hvm_stream(width=32, xl=xl.XlHeader.with_config(b"{}\0", streamv2=False))
    det = L.detect(L.encode(s))
    assert (det.width, det.guest, det.xl) == (32, L.HVM, True)
    assert L.decode(L.encode(s)) == s


@pytest.mark.parametrize("width", WIDTHS)
def test_verify_cli_reports_detection(tmp_path, width):
    path = tmp_path / "img"
    path.write_bytes(L.encode(_pv(width)))
    r = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", "legacy", "-i", str(path), "-v"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"detected {width}-bit toolstack, pv guest" in r.stdout + r.stderr


# --- physmap -----------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("namelen", range(0, 17))
def test_physmap_layout_every_name_length(width, namelen):
    """Name lengths 0..16 cover every length modulo 8, with and without a name."""
    name = None if namelen == 0 else bytes(ord("a") + i % 26 for i in range(namelen - 1))
    entry = L.PhysmapEntry(0xF0000000, 0xF1000000, 0x10000, name, padding=b"\xde\xad\xbe\xef")
    blob = L.LibxlToolstack((entry, entry)).encode(width)
    per_entry = 28 + namelen + (4 if width == 64 else 0)
    assert len(blob) == 8 + 2 * per_entry
    # the name starts right after namelen; a 64-bit build leaves the struct's
    # 4 octets of padding after the NUL
    assert blob[8 + 28:8 + 28 + namelen] == (b"" if name is None else name + b"\0")
    if width == 64:
        assert blob[8 + 28 + namelen:8 + per_entry] == b"\xde\xad\xbe\xef"
    decoded = L.decode_toolstack(blob, width)
    expect = entry if width == 64 else replace(entry, padding=b"\0\0\0\0")
    assert decoded.entries == (expect, expect)
    assert decoded.encode(width) == blob if width == 64 else blob


def test_physmap_read_with_the_wrong_width_fails_or_differs():
    entry = L.PhysmapEntry(1, 2, 3, b"vga.vram")
    blob64 = L.LibxlToolstack((entry, entry)).encode(64)
    # read as 32-bit, the second header starts at the first entry's padding
    wrong = L.decode_toolstack(blob64, 32)
    assert wrong.entries[1] != entry and wrong.trailing
    blob32 = L.LibxlToolstack((entry, entry)).encode(32)
    with pytest.raises(StreamError) as e:
        L.decode_toolstack(blob32, 64)
    assert e.value.rule.id == L.PHYSMAP_TRUNCATED


def test_physmap_xenstore_pairs():
    entry = L.PhysmapEntry(0xF0000000, 0xF0000000, 0x800000, b"vga.vram")
    assert entry.xenstore() == [(b"physmap/f0000000/start_addr", b"f0000000"),
                                (b"physmap/f0000000/size", b"800000"),
                                (b"physmap/f0000000/name", b"vga.vram")]
    assert L.PhysmapEntry(16, 1, 2, None).xenstore() == [(b"physmap/10/start_addr", b"1"),
                                                         (b"physmap/10/size", b"2")]


@pytest.mark.parametrize("width", WIDTHS)
def test_physmap_errors(width):
    good = L.LibxlToolstack(tuple(L.sample_physmap(1)))
    with pytest.raises(StreamError) as e:
        L.decode_toolstack(replace(good, count=2).encode(width), width)
    assert e.value.rule.id == L.PHYSMAP_TRUNCATED
    with pytest.raises(StreamError) as e:
        L.decode_toolstack(L.LibxlToolstack((replace(good.entries[0], terminated=False),)).encode(width), width)
    assert e.value.rule.id == L.PHYSMAP_NUL
    with pytest.raises(StreamError) as e:
        L.decode_toolstack(b"\1\0\0", width)
    assert e.value.rule.id == L.TOOLSTACK_SHORT


# --- examples ----------------------------------------------------------------

EXAMPLES = legacy_examples.examples()


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e.case_id)
def test_example_verdict(ex):
    ck = _validate(ex.data, **{k: ex.meta[k] for k in OPTS})
    assert set(ck.rule_ids()) == (set() if ex.rule is None else {ex.rule})
    if ex.rule is None:
        stream = L.decode(ex.data, **{k: ex.meta[k] for k in OPTS})
        assert L.encode(stream) == ex.data


def test_every_legacy_rule_has_a_malformed_example():
    rules = {r for r in catalogue() if r.startswith("legacy.")}
    assert rules == {ex.rule for ex in EXAMPLES if ex.rule}
    kinds = {(ex.meta["width"], ex.meta["guest"]) for ex in EXAMPLES if ex.rule is None}
    assert kinds == {(32, "pv"), (64, "pv"), (32, "hvm"), (64, "hvm")}


# --- conversion --------------------------------------------------------------

def convert(stream: L.LegacyStream, fmt: str = "libxc", **kw) -> bytes:
    out = io.BytesIO()
    legacy_convert.convert(Source.from_bytes(L.encode(stream)), out, fmt=fmt, **kw)
    return out.getvalue()


def _v2_pfn(entry: int) -> int:
    return ((entry & 0xF0000000) << 32) | (entry & 0x0FFFFFFF)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("gw", (4, 8))
def test_convert_pv_record_by_record(width, gw):
    pages = [(0, 0), (1, 1), (2, 0xF), (3, 0x9), (4, 0xD)]
    s = _pv(width, gw, vcpus=[0, 2], xsave_area=64, pages=pages, unmapped=(7,))
    batch = next(c for c in s.chunks if isinstance(c, L.PageBatch))
    # a batch with a bare XTAB entry (unmappable page) and one of bare XTABs only
    holes = L.PageBatch((L.BARE_XTAB, 5, L.BARE_XTAB), L.pattern_page(5))
    only_holes = L.PageBatch((L.BARE_XTAB, L.BARE_XTAB))
    s = replace(s, chunks=s.chunks + (holes, only_holes))
    v2 = libxc.decode(convert(s))
    assert v2.image_header == libxc.ImageHeader.make(3)
    assert v2.domain_header == libxc.DomainHeader(libxc.DomainType.X86_PV, 12, 0, 1)
    vcpu_size = L.vcpu_context_size(gw)
    tail = s.tail
    expected = [
        libxc.X86PvInfo(gw, 3 if gw == 4 else 4),
        libxc.StaticDataEnd(),
        libxc.X86PvP2mFrames(0, s.p2m_size - 1, s.p2m_frames),
        libxc.X86TscInfo(1, 2000000, 123456789, 3),
        libxc.PageData(tuple(_v2_pfn(e) for e in batch.pfns), batch.pages),
        libxc.PageData((5,), L.pattern_page(5)),
    ]
    for v in tail.vcpus:
        assert len(v.context) == vcpu_size
        expected += [libxc.X86PvVcpuBasic(v.vcpu_id, v.context),
                     libxc.X86PvVcpuExtended(v.vcpu_id, v.extended),
                     libxc.X86PvVcpuXsave(v.vcpu_id, v.xsave.data)]
    expected += [libxc.SharedInfo(tail.shared_info), libxc.End()]
    assert list(v2.records) == expected


@pytest.mark.parametrize("width", WIDTHS)
def test_convert_hvm_libxl_record_by_record(width):
    physmap = L.sample_physmap(2) + [L.PhysmapEntry(0xFC000000, 0xFC000000, 0x1000, None)]
    s = L.build_hvm_stream(width=width, physmap=physmap,
                           params={L.Chunk.HVM_IDENT_PT: 0xFEFFC000, L.Chunk.HVM_VIRIDIAN: 1,
                                   L.Chunk.HVM_GENERATION_ID_ADDR: 0xFC00})
    data = convert(s, "libxl")
    stream = libxl.decode(data)
    assert stream.header.legacy and stream.header.endian is libxl.Endian.LITTLE
    items = list(stream.items)
    ctx = items.pop(0)
    assert isinstance(ctx, libxl.LibxcContext)
    assert ctx.domain_header == libxc.DomainHeader(libxc.DomainType.X86_HVM, 12, 0, 1)
    batch = next(c for c in s.chunks if isinstance(c, L.PageBatch))
    pairs = tuple(kv for e in physmap for kv in e.xenstore())
    assert items == [
        libxc.StaticDataEnd(),
        libxc.X86TscInfo(0, 2400000, 0, 0),
        libxc.PageData(tuple(_v2_pfn(e) for e in batch.pfns), batch.pages),
        libxc.HvmParams(((12, 0xFEFFC000), (9, 1), (34, 0xFC00))),
        libxc.HvmParams(((5, 0xFEFFF), (6, 0xFEFFE), (1, 0xFEFFD))),
        libxc.HvmContext(s.tail.context),
        libxc.End(),
        libxl.EmulatorXenstoreData(libxl.EmulatorId.UNKNOWN, 0, pairs),
        libxl.EmulatorContext(libxl.EmulatorId.UNKNOWN, 0, s.qemu.data),
        libxl.End(),
    ]
    assert (b"physmap/fc000000/name", b"") not in pairs


@pytest.mark.parametrize("width", WIDTHS)
def test_convert_hvm_libxc_qemu_refused_copied_or_skipped(width):
    s = L.build_hvm_stream(width=width, physmap=L.sample_physmap(1))
    with pytest.raises(UsageError, match="-f libxl.*--skip-qemu.*--append-qemu"):
        convert(s)
    with_qemu = convert(s, qemu="append")
    assert with_qemu.endswith(L.encode_qemu(s.qemu))
    skipped = convert(s, qemu="skip")
    assert with_qemu == skipped + L.encode_qemu(s.qemu)
    libxc.decode(skipped)
    no_qemu = L.build_hvm_stream(width=width, qemu=None, toolstack=None)
    libxc.decode(convert(no_qemu))  # nothing to refuse


@pytest.mark.parametrize("signature", [b"DeviceModelRecord0002", b"RemusDeviceModelState"])
def test_convert_legacy_defaults_give_a_stream_verify_accepts_or_name_the_option(tmp_path, signature):
    """A qemu-tailed (or Remus) HVM image with the default options: refused with
    a message naming the options, never converted into something verify refuses."""
    s = L.build_hvm_stream(width=64, qemu=L.QemuRecord(signature, b"remus" * 9))
    img = tmp_path / "hvm.img"
    img.write_bytes(L.encode(s))
    out = tmp_path / "out"

    def xs(*argv):
        return subprocess.run([sys.executable, "-m", "xenstream", *argv], capture_output=True,
                              text=True)

    r = xs("convert-legacy", "-i", str(img), "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert "--skip-qemu" in r.stderr and "-f libxl" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for options, fmt in ((["-f", "libxl"], "libxl"), (["--skip-qemu"], "libxc")):
        assert xs("convert-legacy", "-i", str(img), "-o", str(out), *options).returncode == 0
        v = xs("verify", "-f", fmt, "-i", str(out))
        assert v.returncode == 0, v.stderr


def test_convert_pv_without_vcpu_info_restores_vcpu0():
    s = _pv(64)
    s = replace(s, chunks=tuple(c for c in s.chunks if not isinstance(c, L.VcpuInfo)))
    records = libxc.decode(convert(s)).records
    assert [r.vcpu_id for r in records if isinstance(r, libxc.X86PvVcpuBasic)] == [0]


def test_convert_later_vcpu_info_replaces_earlier():
    s = _pv(32, vcpus=[0, 1])
    s = replace(s, chunks=(L.VcpuInfo.make([0, 1, 2]),) + s.chunks)
    records = libxc.decode(convert(s)).records
    assert [r.vcpu_id for r in records if isinstance(r, libxc.X86PvVcpuBasic)] == [0, 1]


@pytest.mark.parametrize("width", WIDTHS)
def test_converted_streams_verify(tmp_path, width):
    for name, s, fmt in (("pv", _pv(width, xsave_area=64), "libxl"),
                         ("hvm", L.build_hvm_stream(width=width, physmap=L.sample_physmap(2)), "libxl"),
                         ("pvc", _pv(width, 4), "libxc")):
        src, out = tmp_path / f"{name}.legacy", tmp_path / f"{name}.v2"
        src.write_bytes(L.encode(s))
        r = subprocess.run([sys.executable, "-m", "xenstream", "convert-legacy", "-i", str(src),
                            "-o", str(out), "-w", str(width), "-g", L.guest_name(s.guest), "-f", fmt],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", fmt, "-i", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.expected == "reject"], ids=lambda e: e.case_id)
def test_convert_bad_input_exit_1_without_traceback(tmp_path, ex):
    src = tmp_path / "in"
    src.write_bytes(ex.data)
    args = ["-i", str(src), "-o", str(tmp_path / "out"), "-w", str(ex.meta["width"]), "-g", ex.meta["guest"],
            "-f", "libxl" if ex.meta["libxl"] else "libxc"]
    if ex.meta["xl"]:
        args.append("-x")
    r = subprocess.run([sys.executable, "-m", "xenstream", "convert-legacy", *args],
                       capture_output=True, text=True)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert ex.rule in r.stderr and "offset" in r.stderr


def test_reading_streams_in_bounded_memory(tmp_path):
    """The reader yields each part as it reads it: dumping, validating and converting an image
    of 20000 page batches (one dump item each) allocates what one part needs, not what the
    image holds (a dump that gathered its items first peaked at 6 MiB here, this one below 1)."""
    import tracemalloc

    n = 20_000
    pages = [(pfn, L.XTAB) for pfn in range(n)]   # XTAB entries carry no page data: a small file
    s = replace(L.build_pv_stream(p2m_size=n), chunks=L.build_batches(pages, batch=1))
    path = tmp_path / "many-batches.legacy"
    path.write_bytes(L.encode(s))
    del s, pages

    def peak(run) -> int:
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def dump():
        src = Source.open(str(path))
        try:
            assert sum(1 for item in L.dump(src, Checker()) if item["kind"] == "page batch") == n
        finally:
            src.close()

    def convert():
        src = Source.open(str(path))
        try:
            legacy_convert.convert(src, _Sink(), fmt="libxc")
        finally:
            src.close()

    limit = 2 << 20
    assert peak(dump) < limit
    assert peak(convert) < limit


class _Sink:
    """An output that counts what it is given and keeps nothing."""

    def __init__(self):
        self.octets = 0

    def write(self, data) -> int:
        self.octets += len(data)
        return len(data)
