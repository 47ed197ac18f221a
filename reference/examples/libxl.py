"""Hand-written libxl examples: valid streams of every record type, and one or
more malformed streams for every ``libxl.*`` rule, with the offset the
reference must report."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from .. import build, libxc, libxl
from ..build import edit as _edit, find as _find, patch as _patch
from ..framing import RawRecord
from ..layout import Endian
from ..libxc import DomainType
from ..libxl import EmulatorId, RecordType
from . import Example, StreamExamples

FORMAT = "libxl"
HVM, PV = DomainType.X86_HVM, DomainType.X86_PV


#: A record of any type and body, for framing that typed values cannot express.
Raw = partial(RawRecord, layer=libxl.LAYER)


def _meta(stream: libxl.LibxlStream, **extra) -> dict:
    xc = next((i for i in stream.items if isinstance(i, libxl.LibxcContext) and i.image_header), None)
    meta = {"byteorder": stream.header.endian.value}
    if xc is not None:
        meta.update(version=xc.image_header.version,
                    guest="pv" if xc.domain_header.type == PV else "hvm")
    return {**meta, **extra}


def examples() -> list[Example]:
    b = StreamExamples(FORMAT, libxl.encode, build.libxl_item_offsets, _meta)
    hvm = build.libxl_stream(HVM)
    pv = build.libxl_stream(PV)
    cp = build.libxl_stream(HVM, checkpoints=2)
    data = libxl.encode(hvm)

    b.valid("hvm", hvm, "libxl stream of an HVM guest: LIBXC_CONTEXT, libxc v3, emulator records, END")
    b.valid("pv", pv, "libxl stream of a PV guest: no emulator records")
    b.valid("hvm_libxc_v2", build.libxl_stream(HVM, version=2), "libxl stream wrapping a libxc v2 stream")
    b.valid("checkpointed", cp, "checkpointed stream: libxc CHECKPOINT, emulator records, CHECKPOINT_END, "
            "libxc resumes")
    b.valid("pv_checkpointed", build.libxl_stream(PV, checkpoints=1), "checkpointed PV stream")
    b.valid("optional_records", build.libxl_stream(HVM, optional=True),
            "unknown optional records in both layers are ignored")
    b.valid("legacy_converted", build.libxl_stream(HVM, legacy=True),
            "legacy bit set, emulator_id 0 (Unknown) as the converter writes")
    b.valid("qemu_traditional", build.libxl_stream(HVM, emulator=EmulatorId.QEMU_TRADITIONAL),
            "emulator records of qemu-traditional")
    b.valid("xenstore_data_empty_value", _edit(hvm, _find(hvm, libxl.EmulatorXenstoreData),
                                               libxl.EmulatorXenstoreData(2, 0, ((b"a/b", b""),))),
            "an EMULATOR_XENSTORE_DATA pair with an empty value")
    b.valid("xenstore_data_no_pairs", _edit(hvm, _find(hvm, libxl.EmulatorXenstoreData),
                                            libxl.EmulatorXenstoreData(2, 0, ())),
            "EMULATOR_XENSTORE_DATA with no pairs")

    # framing
    offs = build.libxl_item_offsets(hvm)
    end_at = offs[-2]
    cut = offs[_find(hvm, libxl.EmulatorContext)] + 12
    b.bad("cut_in_emulator_context", libxl.STREAM_TRUNCATED, hvm, "input ends inside EMULATOR_CONTEXT",
          data=data[:cut], offset=cut)
    b.bad("cut_in_header", libxl.STREAM_TRUNCATED, hvm, "input ends inside the libxl header",
          data=data[:9], offset=9)
    cut = offs[_find(hvm, libxc.PageData)] + 100
    b.bad("cut_in_libxc", libxc.STREAM_TRUNCATED, hvm, "input ends inside the embedded libxc stream",
          data=data[:cut], offset=cut)
    b.bad("no_end", libxl.END_MISSING, hvm, "input ends without the libxl END", data=data[:end_at],
          offset=end_at)
    b.bad("data_after_end", libxl.TRAILING_DATA, hvm, "eight octets after END", data=data + bytes(8),
          offset=len(data))
    b.bad("ident_wrong", libxl.IDENT_RULE, hvm, "ident \"LibxlFmu\"", data=_patch(data, 7, b"u"), offset=0)
    b.bad("version_3", libxl.VERSION_RULE, hvm, "version 3", data=_patch(data, 8, (3).to_bytes(4, "big")),
          offset=8)
    b.bad("version_1", libxl.VERSION_RULE, hvm, "version 1", data=_patch(data, 8, (1).to_bytes(4, "big")),
          offset=8)
    b.bad("options_bit2", libxl.OPTIONS_RESERVED, hvm, "reserved options bit 2",
          data=_patch(data, 12, (4).to_bytes(4, "big")), offset=12)
    b.bad("big_endian", libxl.ENDIANNESS, build.libxl_stream(HVM, endian=Endian.BIG, libxc_endian=Endian.LITTLE),
          "big-endian libxl layer around a little-endian libxc stream", offset=12)
    k = _find(hvm, libxl.EmulatorContext)
    odd = _edit(hvm, k, libxl.EmulatorContext(2, 0, b"q" * 61))
    at = build.libxl_item_offsets(odd)[k] + 8 + 8 + 61
    b.bad("padding_nonzero", libxl.PADDING, odd, "a padding octet after EMULATOR_CONTEXT is 0xff",
          data=_patch(libxl.encode(odd), at, b"\xff"), offset=at)
    b.bad("unknown_mandatory", libxl.UNKNOWN_MANDATORY, _edit(hvm, k, Raw(6, b"xxxx"), drop=0),
          "record type 6, the first reserved mandatory type", at=k)
    last = len(hvm.items) - 1
    b.bad("end_with_body", libxl.END_LENGTH, _edit(hvm, last, Raw(RecordType.END, bytes(8))),
          "END with an 8-octet body", at=last, plus=4)
    first_cp = _find(cp, libxc.Checkpoint)
    in_cp = replace(cp, items=cp.items[:first_cp + 1] + (libxl.End(),))
    b.bad("end_in_checkpoint", libxl.END_IN_CHECKPOINT, in_cp,
          "END right after libxc's CHECKPOINT, before CHECKPOINT_END", at=first_cp + 1)

    # LIBXC_CONTEXT
    b.bad("libxc_context_with_body", libxl.LIBXC_LENGTH, hvm, "LIBXC_CONTEXT with an 8-octet body",
          data=data[:20] + b"\x08" + data[21:24] + bytes(8) + data[24:], offset=20)
    b.bad("libxc_context_missing", libxl.LIBXC_MISSING,
          replace(hvm, items=(libxl.End(),)), "a libxl stream with only END", at=0)
    ctx = hvm.items[0]
    xc_items = hvm.items[:_find(hvm, libxc.End) + 1]
    twice = replace(hvm, items=xc_items + xc_items + hvm.items[len(xc_items):])
    b.bad("libxc_context_twice", libxl.LIBXC_REPEATED, twice, "a second LIBXC_CONTEXT and libxc stream",
          at=len(xc_items))
    del ctx

    # emulator records
    k = _find(hvm, libxl.EmulatorContext)
    b.bad("emulator_context_short", libxl.EMU_LENGTH, _edit(hvm, k, Raw(RecordType.EMULATOR_CONTEXT, bytes(4))),
          "EMULATOR_CONTEXT shorter than its sub header", at=k, plus=4)
    b.bad("emulator_id_3", libxl.EMU_ID, _edit(hvm, k, libxl.EmulatorContext(3, 0, b"ctx")),
          "emulator_id 3 is reserved", at=k, plus=8)
    j = _find(hvm, libxl.EmulatorXenstoreData)
    b.bad("xenstore_data_emulator_id_9", libxl.EMU_ID,
          _edit(hvm, j, libxl.EmulatorXenstoreData(9, 0, build.XENSTORE_PAIRS)),
          "EMULATOR_XENSTORE_DATA for reserved emulator_id 9", at=j, plus=8)
    b.bad("emulator_unknown_not_legacy", libxl.EMU_ID_UNKNOWN, _edit(hvm, k, libxl.EmulatorContext(0, 0, b"c")),
          "emulator_id 0 (Unknown) in a stream without the legacy bit", at=k, plus=8)
    kp = len(pv.items) - 1
    b.bad("emulator_in_pv", libxl.EMU_GUEST_TYPE, _edit(pv, kp, libxl.EmulatorContext(2, 0, b"c"), drop=0),
          "EMULATOR_CONTEXT in the stream of a PV guest", at=kp)

    def xsd(name, rule, body, description, plus):
        rec = Raw(RecordType.EMULATOR_XENSTORE_DATA, (2).to_bytes(4, "little") + bytes(4) + body)
        b.bad(name, rule, _edit(hvm, j, rec), description, at=j, plus=plus)

    xsd("xenstore_data_no_final_nul", libxl.XSD_NUL, b"key\0value", "the last value has no NUL", 16 + 8)
    xsd("xenstore_data_odd_strings", libxl.XSD_PAIRS, b"key\0value\0extra\0",
        "three strings: a key without its value", 16 + 15)
    xsd("xenstore_data_single_key", libxl.XSD_PAIRS, b"key\0", "a key without its value", 16 + 3)
    xsd("xenstore_data_empty_key", libxl.XSD_EMPTY_KEY, b"\0value\0", "an empty key", 16)
    xsd("xenstore_data_key_space", libxl.XSD_KEY_CHARS, b"ke y\0v\0", "a key with a space", 16 + 2)
    xsd("xenstore_data_key_absolute", libxl.XSD_KEY_RELATIVE, b"/local/domain/0\0v\0", "an absolute key", 16)
    xsd("xenstore_data_value_control", libxl.XSD_VALUE_CHARS, b"key\0va\x01ue\0",
        "a value with a control character", 16 + 4 + 2)

    # checkpoint records
    k = _find(cp, libxl.CheckpointEnd)
    b.bad("checkpoint_end_with_body", libxl.CPE_LENGTH,
          _edit(cp, k, Raw(RecordType.CHECKPOINT_END, bytes(8))),
          "CHECKPOINT_END with an 8-octet body", at=k, plus=4)
    last = len(hvm.items) - 1
    b.bad("checkpoint_end_outside", libxl.CPE_OUTSIDE, _edit(hvm, last, libxl.CheckpointEnd(), drop=0),
          "CHECKPOINT_END in a stream without checkpoints", at=last)
    b.bad("checkpoint_state", libxl.CPS_DIRECTION, _edit(hvm, last, libxl.CheckpointState(1), drop=0),
          "a COLO CHECKPOINT_STATE record in a saved stream", at=last)
    b.bad("checkpoint_state_short", libxl.CPS_LENGTH,
          _edit(hvm, last, Raw(RecordType.CHECKPOINT_STATE, bytes(4)), drop=0),
          "CHECKPOINT_STATE body of 4 octets", at=last, plus=4)
    b.bad("checkpoint_state_control_4", libxl.CPS_CONTROL, _edit(hvm, last, libxl.CheckpointState(4), drop=0),
          "control_id 4 is not defined", at=last, plus=8)
    b.bad("checkpoint_state_padding", libxl.CPS_PADDING,
          _edit(hvm, last, libxl.CheckpointState(0, 1), drop=0),
          "padding of CHECKPOINT_STATE set", at=last, plus=12)
    return b.out
