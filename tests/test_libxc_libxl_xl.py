"""Codec-level properties of the libxc, libxl and xl readers that examples alone do not show."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc

import pytest

from xenstream.reference import build, libxc, libxl, xl
from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError
from xenstream.reference.examples import all_examples
from xenstream.reference.formats import validate
from xenstream.reference.framing import RECORD_HEADER, encode_record
from xenstream.reference.layout import Endian
from xenstream.reference.libxc import DomainType, RecordType
from xenstream.reference.rules import Role
from xenstream.reference.source import Source


def test_layout_sizes_match_the_spec_diagrams():
    # Sizes in octets as drawn in libxc-migration-stream.pandoc / libxl-migration-stream.pandoc.
    assert libxc.IMAGE_HEADER.size == 24
    assert libxc.DOMAIN_HEADER.size == 16
    assert RECORD_HEADER.size == 8
    assert libxc.PageData.LAYOUT.size == 8 and libxc.PageData.LAYOUT.tail[0].item_size == 8
    assert libxc.X86PvInfo.LAYOUT.size == 8
    assert libxc.X86PvP2mFrames.LAYOUT.size == 8
    assert libxc.X86PvVcpu.LAYOUT.size == 8
    assert libxc.X86TscInfo.LAYOUT.size == 24
    assert libxc.HvmParams.LAYOUT.size == 8 and libxc.HVM_PARAMS_ENTRY.size == 16
    assert libxc.CPUID_LEAF.size == 24 and libxc.MSR_ENTRY.size == 16
    assert libxl.HEADER.size == 16
    assert libxl.EMULATOR_HEADER.size == 8
    assert libxl.CheckpointState.LAYOUT.size == 8
    assert len(xl.MAGIC) == 32 and xl.OPTIONAL_DATA_OFFSET == 48


def _record_types(example):
    value = {"libxc": libxc, "libxl": libxl, "xl": xl}[example.format].decode(example.data)
    if example.format == "xl":
        value = value.body
    items = value.records if example.format == "libxc" else value.items
    return {(item.layer, item.type) for item in items}


def test_every_record_type_has_a_valid_example():
    seen = set()
    for e in all_examples():
        if e.format in ("libxc", "libxl", "xl") and e.rule is None:
            seen |= _record_types(e)
    # TOOLSTACK and CHECKPOINT_DIRTY_PFN_LIST only appear in `either` examples (see their rules).
    wanted = {("libxc", int(t)) for t in RecordType
              if t not in (RecordType.TOOLSTACK, RecordType.CHECKPOINT_DIRTY_PFN_LIST)}
    wanted |= {("libxl", int(t)) for t in libxl.RecordType if t != libxl.RecordType.CHECKPOINT_STATE}
    assert wanted <= seen, sorted(wanted - seen)


@pytest.mark.parametrize("fmt,stream", [
    ("libxc", libxc.encode(build.libxc_stream(DomainType.X86_PV, pages=3, batch=2))),
    ("libxl", libxl.encode(build.libxl_stream(DomainType.X86_HVM, pages=2, checkpoints=1))),
    ("xl", xl.encode(build.xl_stream(DomainType.X86_HVM, pages=1))),
], ids=["libxc", "libxl", "xl"])
def test_every_strict_prefix_is_refused_with_a_truncation_rule(fmt, stream):
    allowed = {f"{fmt}.stream.truncated", f"{fmt}.stream.end_missing", "libxc.stream.truncated",
               "libxc.stream.end_missing", "libxl.stream.truncated", "libxl.stream.end_missing"}
    # every prefix through the headers and first records, then a stride through the page data
    cuts = sorted(set(range(min(len(stream), 600))) | set(range(600, len(stream), 37)))
    for n in cuts:
        checker = validate(Source.from_bytes(stream[:n]), fmt, Checker(Role.RESTORE))
        assert not checker.accepted, n
        refused = checker.first_refused()
        assert refused.rule.id in allowed, (n, refused.describe())
        with pytest.raises(StreamError):
            {"libxc": libxc, "libxl": libxl, "xl": xl}[fmt].decode(stream[:n])


def test_hostile_body_length_is_truncation_not_allocation():
    good = libxc.encode(build.libxc_stream(version=2, pages=1))
    headers = good[:40]
    hostile = headers + (0x80000001).to_bytes(4, "little") + (0xFFFFFFF0).to_bytes(4, "little") + b"x" * 100
    tracemalloc.start()
    try:
        with pytest.raises(StreamError) as info:
            libxc.decode(hostile)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.rule.id == "libxc.stream.truncated"
    assert info.value.offset == len(hostile)
    assert peak < 4 << 20


def test_hostile_page_count_is_checked_against_the_body():
    good = build.libxc_stream(version=2, pages=1)
    body = (0xFFFFFFFF).to_bytes(4, "little") + bytes(4) + bytes(8)
    rec = encode_record(RecordType.PAGE_DATA, body, Endian.LITTLE)
    data = libxc.encode(good)[:40] + rec + libxc.encode_records([libxc.End()], Endian.LITTLE)
    checker = validate(Source.from_bytes(data), "libxc", Checker())
    assert checker.rule_ids()[0] == "libxc.page_data.length_short"


def test_big_endian_stream_decodes_on_any_host():
    s = build.libxl_stream(DomainType.X86_PV, endian=Endian.BIG, checkpoints=1)
    data = libxl.encode(s)
    assert libxl.decode(data) == s
    little = libxl.encode(build.libxl_stream(DomainType.X86_PV, checkpoints=1))
    assert data != little and len(data) == len(little)


def _pipe_source(data: bytes, chunk: int = 7) -> Source:
    r, w = os.pipe()

    def writer():
        try:
            with open(w, "wb", buffering=0) as f:
                for i in range(0, len(data), chunk):
                    f.write(data[i:i + chunk])
        except BrokenPipeError:  # the reader stopped early; that is its right
            pass

    threading.Thread(target=writer, daemon=True).start()
    return Source(open(r, "rb", buffering=0))


@pytest.mark.parametrize("example", [e for e in all_examples() if e.format in ("libxc", "libxl", "xl")][::7],
                         ids=lambda e: f"{e.format}/{e.name}")
def test_verdict_does_not_depend_on_delivery(example):
    direct = validate(Source.from_bytes(example.data), example.format, Checker())
    piped = validate(_pipe_source(example.data), example.format, Checker())
    assert [(f.rule.id, f.offset) for f in piped.findings] == [(f.rule.id, f.offset) for f in direct.findings]


def test_large_stream_validates_in_bounded_memory(tmp_path):
    # 64 MiB of PAGE_DATA through a file: the validator skips page contents.
    s = build.libxc_stream(pages=16384, batch=1024)
    path = tmp_path / "big.xc"
    path.write_bytes(libxc.encode(s))
    tracemalloc.start()
    try:
        src = Source.open(str(path))
        checker = validate(src, "libxc", Checker())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checker.accepted
    assert peak < 8 << 20


def test_source_skip_over_pipe_and_file_agree(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "f"
    path.write_bytes(data)
    for src in (Source.open(str(path)), _pipe_source(data, 4096), Source(io.BytesIO(data))):
        assert src.read_exact(3, "x") == data[:3]
        src.skip(700_000, "x")
        assert src.offset == 700_003
        assert src.read_exact(5, "x") == data[700_003:700_008]
        with pytest.raises(Exception) as info:
            src.skip(len(data), "tail")
        assert type(info.value).__name__ == "Truncated"
        assert info.value.end == len(data)


@pytest.mark.skipif(not hasattr(os, "splice"), reason="no splice(2) on this system")
def test_pipe_skip_splices_and_falls_back_to_reading(tmp_path):
    # An unbuffered pipe's skipped octets go to /dev/null by splice(2) (never copied into
    # the process); where splicing is refused the same skip reads and discards them.
    data = bytes(range(256)) * 5000
    src = _pipe_source(data, 65536)
    assert src._pipe is not None
    src.skip(300_001, "x")
    assert src.read_exact(4, "x") == data[300_001:300_005]
    folder = os.open(tmp_path, os.O_RDONLY)  # splice(2) refuses a folder
    src._pipe = folder
    try:
        src.skip(300_000, "x")
        assert src._pipe is None
        assert src.read_exact(4, "x") == data[600_005:600_009]
    finally:
        os.close(folder)
        src.close()
    # buffered: the buffer may hold octets the descriptor no longer has, so nothing spliced
    r, w = os.pipe()
    os.close(w)
    with open(r, "rb") as f:
        assert Source(f)._pipe is None


def test_libxl_checkpoint_resumes_libxc():
    s = build.libxl_stream(DomainType.X86_HVM, checkpoints=2)
    value = libxl.decode(libxl.encode(s))
    kinds = [type(i).__name__ for i in value.items]
    assert kinds.count("CheckpointEnd") == 2
    assert kinds.index("CheckpointEnd") > kinds.index("Checkpoint")
    assert kinds[-1] == "End"


def test_decode_accepts_writer_findings_in_restore_role_only():
    data = bytearray(libxc.encode(build.libxc_stream()))
    data[16:18] = (2).to_bytes(2, "big")  # reserved options bit
    assert libxc.decode(bytes(data)).image_header.options == 2
    with pytest.raises(StreamError) as info:
        libxc.decode(bytes(data), role=Role.STRICT)
    assert info.value.rule.id == "libxc.image_header.options_reserved"


def test_libxl_dump_gives_every_record_of_both_layers_with_its_offset():
    s = build.libxl_stream(DomainType.X86_HVM, checkpoints=1)
    data = libxl.encode(s)
    items = list(libxl.dump(Source.from_bytes(data), Checker()))
    records = [i for i in items if i["kind"] == "record"]
    assert [r["offset"] for r in records] == build.libxl_item_offsets(s)[:-1]
    assert [(r["layer"], r["type_value"]) for r in records] == [(i.layer, i.type) for i in s.items]
    image = next(i for i in items if i["kind"] == "image header")
    assert data[image["offset"]:image["offset"] + 8] == b"\xff" * 8
