"""Our converter against Xen's own ``convert-legacy-stream`` (Debian's
xen-utils-4.17), record by record.

Skipped only when the package cannot be had: the tool is looked for in
``$XEN_TOOLS_DIR`` or ``.cache/xen-tools`` and, failing that, fetched with
``scripts/fetch-xen-tools``.  Where the two differ, docs/findings.md says which
is right and why; the divergence tests pin the behaviour described there.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from xenstream.reference import legacy as L
from xenstream.reference import legacy_convert, libxc, libxl, xl
from xenstream.reference.errors import StreamError
from xenstream.reference.examples import legacy as legacy_examples
from xenstream.reference.source import Source

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def xen_convert() -> Path:
    tool_dir = Path(os.environ.get("XEN_TOOLS_DIR") or ROOT / ".cache" / "xen-tools")
    tool = tool_dir / "convert-legacy-stream"
    if not tool.exists():
        script = ROOT / "scripts" / "fetch-xen-tools"
        if not script.exists():
            pytest.skip("scripts/fetch-xen-tools is missing")
        r = subprocess.run([sys.executable, str(script), "--release", "4.17", str(tool_dir)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not tool.exists():
            pytest.skip(f"xen-utils could not be fetched: {r.stderr.strip()[-300:]}")
    return tool


def run_xen(tool: Path, tmp_path: Path, stream: L.LegacyStream, fmt: str, *extra: str):
    src, out = tmp_path / "xen.in", tmp_path / "xen.out"
    src.write_bytes(L.encode(stream))
    r = subprocess.run([str(tool), "-i", str(src), "-o", str(out), "-w", str(stream.width),
                        "-g", L.guest_name(stream.guest), "-f", fmt, *extra], capture_output=True, text=True, timeout=120)
    return r.returncode, out.read_bytes() if out.exists() else b"", r.stderr


def run_ours(stream: L.LegacyStream, fmt: str, skip_qemu: bool = False) -> bytes:
    out = io.BytesIO()
    legacy_convert.convert(Source.from_bytes(L.encode(stream)), out, width=stream.width, guest=stream.guest,
                           fmt=fmt, qemu=not skip_qemu, xl_header=stream.xl is not None)
    return out.getvalue()


def records(data: bytes, fmt: str) -> list:
    if fmt == "libxl":
        s = libxl.decode(data)
        return [s.header] + list(s.items)
    s = libxc.decode(data)
    return [s.image_header, s.domain_header] + list(s.records)


def _cases():
    out = []
    for ex in legacy_examples.examples():
        if ex.rule is not None or ex.meta["xl"]:
            continue
        stream = L.decode(ex.data, **{k: ex.meta[k] for k in ("width", "guest", "libxl", "qemu", "xl")})
        if stream.qemu is not None and stream.qemu.signature != b"DeviceModelRecord0002":
            continue  # see findings: Xen's converter refuses the other signatures
        if any(isinstance(c, L.ToolstackChunk) and isinstance(c.data, L.LibxlToolstack)
               and any(e.name is None for e in c.data.entries) for c in stream.chunks):
            continue  # see findings: nameless physmap entries
        fmts = ["libxc"] + (["libxl"] if stream.pv or stream.qemu is not None else [])
        for fmt in fmts:
            out.append(pytest.param(stream, fmt, id=f"{ex.name}-{fmt}"))
    return out


@pytest.mark.parametrize("stream,fmt", _cases())
def test_same_records_as_xen(xen_convert, tmp_path, stream, fmt):
    extra = ("--skip-qemu",) if fmt == "libxc" and not stream.pv else ()
    rc, theirs, err = run_xen(xen_convert, tmp_path, stream, fmt, *extra)
    assert rc == 0, err
    ours = run_ours(stream, fmt, skip_qemu=bool(extra))
    assert records(ours, fmt) == records(theirs, fmt)
    assert ours == theirs


def test_xl_header_refused_by_xen(xen_convert, tmp_path):
    """findings: ``-x`` compares bytes with a str and never matches."""
    s = L.build_hvm_stream(width=64, xl=xl.XlHeader.with_config(b"{}\0", streamv2=False))
    rc, _, err = run_xen(xen_convert, tmp_path, s, "libxl", "-x")
    assert rc == 1 and "No xl header" in err
    data = run_ours(s, "libxl")
    header = xl.XlHeader.with_config(b"{}\0", streamv2=True)
    assert data.startswith(header.encode())
    assert xl.decode(data).header.streamv2


def test_nameless_physmap_entry(xen_convert, tmp_path):
    """findings: namelen 0 is what libxl's save wrote for an entry without a name."""
    s = L.build_hvm_stream(width=64, physmap=[L.PhysmapEntry(0xFC000000, 0xFC000000, 0x1000, None)])
    rc, _, err = run_xen(xen_convert, tmp_path, s, "libxl")
    assert rc == 1 and "No physmap info name" in err
    items = libxl.decode(run_ours(s, "libxl")).items
    xsd = [i for i in items if isinstance(i, libxl.EmulatorXenstoreData)]
    assert xsd[0].pairs == ((b"physmap/fc000000/start_addr", b"fc000000"), (b"physmap/fc000000/size", b"1000"))


def test_batch_of_bare_xtab_entries(xen_convert, tmp_path):
    """findings: Xen's converter writes a PAGE_DATA record with count 0."""
    base = L.build_hvm_stream(width=32)
    s = replace(base, chunks=(L.PageBatch((L.BARE_XTAB,) * 3),) + base.chunks)
    rc, theirs, err = run_xen(xen_convert, tmp_path, s, "libxl")
    assert rc == 0, err
    with pytest.raises(Exception) as e:
        libxl.decode(theirs)
    assert getattr(e.value, "rule", None) is not None and e.value.rule.id.startswith("libxc.page_data")
    libxl.decode(run_ours(s, "libxl"))


def test_pv_without_vcpu_info(xen_convert, tmp_path):
    """findings: legacy restore defaults to vcpu 0 online; Xen's converter to none."""
    base = L.build_pv_stream(width=64)
    s = replace(base, chunks=tuple(c for c in base.chunks if not isinstance(c, L.VcpuInfo)))
    rc, theirs, err = run_xen(xen_convert, tmp_path, s, "libxc")
    assert rc == 0, err
    # no vcpu records, and the vcpu 0 context taken for the shared info page
    with pytest.raises(StreamError) as e:
        libxc.decode(theirs)
    assert e.value.rule.id == "libxc.pv.required_record"
    assert s.tail.vcpus[0].context[:4096] in theirs and s.tail.shared_info not in theirs
    ours = libxc.decode(run_ours(s, "libxc")).records
    assert [r.vcpu_id for r in ours if isinstance(r, libxc.X86PvVcpuBasic)] == [0]
    assert next(r for r in ours if isinstance(r, libxc.SharedInfo)).data == s.tail.shared_info


@pytest.mark.parametrize("sig", [b"RemusDeviceModelState", b"QemuDeviceModelRecord"])
def test_other_qemu_signatures(xen_convert, tmp_path, sig):
    """findings: legacy restore accepted three signatures; Xen's converter one."""
    s = L.build_hvm_stream(width=64, qemu=L.QemuRecord(sig, b"qemu state" * 7))
    rc, _, err = run_xen(xen_convert, tmp_path, s, "libxl")
    assert rc == 2 and "Please fix me" in err
    items = libxl.decode(run_ours(s, "libxl")).items
    assert [i.context for i in items if isinstance(i, libxl.EmulatorContext)] == [s.qemu.data]


def test_vcpumap_bits_above_max_vcpu_id(xen_convert, tmp_path):
    """findings: restore reads vcpus 0..max_vcpu_id only."""
    base = L.build_pv_stream(width=64, vcpus=[0, 1])
    s = replace(base, chunks=tuple(L.VcpuInfo(1, (0b111,)) if isinstance(c, L.VcpuInfo) else c
                                   for c in base.chunks))
    rc, _, err = run_xen(xen_convert, tmp_path, s, "libxc")
    assert rc == 1 and "Stream truncated" in err
    ours = libxc.decode(run_ours(s, "libxc")).records
    assert [r.vcpu_id for r in ours if isinstance(r, libxc.X86PvVcpuBasic)] == [0, 1]


def test_repeated_vcpu_info(xen_convert, tmp_path):
    """findings: a later VCPU_INFO replaces the map; Xen's converter appends."""
    base = L.build_pv_stream(width=32, vcpus=[0, 1])
    s = replace(base, chunks=(L.VcpuInfo.make([0, 1]),) + base.chunks)
    rc, _, err = run_xen(xen_convert, tmp_path, s, "libxc")
    assert rc == 1 and "Stream truncated" in err
    assert libxc.decode(run_ours(s, "libxc")).records


def test_bad_input_exit_codes(xen_convert, tmp_path):
    """Both refuse a duplicate PFN and an oversized batch with exit code 1."""
    for ex in legacy_examples.examples():
        if ex.rule not in (L.BATCH_DUPLICATE, L.BATCH_MAX):
            continue
        src, out = tmp_path / "in", tmp_path / "out"
        src.write_bytes(ex.data)
        r = subprocess.run([str(xen_convert), "-i", str(src), "-o", str(out), "-w", str(ex.meta["width"]),
                            "-g", ex.meta["guest"], "-f", "libxl"], capture_output=True, text=True)
        assert r.returncode == 1, (ex.name, r.stderr)
