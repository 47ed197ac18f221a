"""libxl v2 streams wrapping libxc: a constructive builder and one-rule mutations."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from xenstream.reference import libxc as X
from xenstream.reference import libxl as L
from xenstream.reference.build import edit, find_all, libxl_item_offsets
from xenstream.reference.framing import OPTIONAL_BIT, RECORD_HEADER, RawRecord, encode_record, padding_length
from xenstream.reference.layout import Endian
from xenstream.reference.libxc import DomainType
from xenstream.reference.libxl import RecordType

from . import libxc as SX
from ._draw import Draw, pattern, pick
from ._registry import mutation, valid_builder

FORMAT = "libxl"
LE, BE = Endian.LITTLE, Endian.BIG
KEY_ALPHABET = bytes(sorted(L.KEY_CHARS - {ord("/")}))
VALUE_ALPHABET = bytes(sorted(L.VALUE_CHARS))


#: A record of any type and body, for framing that typed values cannot express.
Raw = partial(RawRecord, layer=L.LAYER)


def key(d: Draw) -> bytes:
    return b"/".join(d.bytes(1, 6, KEY_ALPHABET) for _ in range(d.int(1, 3)))


def pairs(d: Draw, lo: int = 0) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((key(d), d.bytes(0, 10, VALUE_ALPHABET)) for _ in range(d.int(lo, 3)))


def emulator_records(d: Draw, emu_id: int) -> list[L.Record]:
    out: list[L.Record] = []
    for index in range(d.int(0, 2)):
        if d.bool():
            out.append(L.EmulatorXenstoreData(emu_id, index, pairs(d)))
        out.append(L.EmulatorContext(emu_id, index, pattern(index, d.int(0, 40))))
    return out


def optional_record(d: Draw) -> RawRecord:
    rtype = OPTIONAL_BIT | d.int(6, 0x7FFFFFFF)
    return RawRecord(rtype, pattern(rtype, d.int(0, 20)), L.LAYER)


def build(d: Draw, *, guest=None, version=None, byteorder=None, libxc_byteorder=None, pages=None,
          records=None, checkpoints=None, optional=None, legacy=None, vcpus=None) -> L.LibxlStream:
    """libxl header, LIBXC_CONTEXT and a valid libxc stream; for HVM guests emulator
    records after the libxc END and in every checkpoint; END."""
    endian = pick(d, SX.endian_of(byteorder), lambda: d.choice([LE, BE]))
    # the libxc stream inside is an x86 host's: little-endian unless asked
    xc_endian = pick(d, SX.endian_of(libxc_byteorder), lambda: LE)
    xc = SX.build(d, guest=guest, version=version, byteorder=xc_endian, pages=pages, records=records,
                  checkpoints=checkpoints, optional=optional, vcpus=vcpus)
    legacy = pick(d, legacy, lambda: d.bool())
    opt = any(isinstance(r, RawRecord) for r in xc.records) if optional is None else optional
    hvm = xc.domain_header.type == DomainType.X86_HVM
    emu_id = d.choice([2, 1, 0] if legacy else [2, 1])

    def emu():
        return emulator_records(d, emu_id) if hvm else []

    items: list = [L.LibxcContext(xc.image_header, xc.domain_header)]
    for rec in xc.records:
        items.append(rec)
        if isinstance(rec, X.Checkpoint):
            items += emu()
            if opt and d.bool():
                items.append(optional_record(d))
            items.append(L.CheckpointEnd())
    items += emu()
    if opt:
        items.append(optional_record(d))
    items.append(L.End())
    options = endian.bit | (L.OPT_LEGACY if legacy else 0)
    return L.LibxlStream(L.LibxlHeader(options=options), tuple(items))


def describe(s: L.LibxlStream) -> str:
    ctx = next((i for i in s.items if isinstance(i, L.LibxcContext) and i.image_header), None)
    inner = ""
    if ctx is not None:
        guest = "PV" if ctx.domain_header.type == DomainType.X86_PV else "HVM"
        inner = f" around libxc v{ctx.image_header.version} {guest}"
    return f"libxl {s.header.endian.value}-endian stream{inner}, {len(s.items)} items"


@valid_builder(FORMAT)
def valid(d: Draw, **opts):
    s = build(d, **opts)
    return L.encode(s), "valid " + describe(s)


# --------------------------------------------------------------------------
# structure helpers
# --------------------------------------------------------------------------


def layout(s: L.LibxlStream):
    """For each item: (offset, body length, layer); and the stream's length."""
    offsets = libxl_item_offsets(s)
    endian, xc_endian = s.header.endian, s.libxc_endian
    out = [(at, len(item.encode_body(xc_endian if item.layer == X.LAYER else endian)), item.layer)
           for at, item in zip(offsets, s.items)]
    return out, offsets[-1]


def boundaries(s: L.LibxlStream):
    """(index, reading layer, inside a checkpoint) for the boundary before each item."""
    out = []
    active, paused = L.LAYER, False
    for i, item in enumerate(s.items):
        out.append((i, active, paused))
        if isinstance(item, L.LibxcContext) or (isinstance(item, L.CheckpointEnd) and paused):
            active, paused = X.LAYER, False
        elif isinstance(item, (X.End, X.Checkpoint)):
            active, paused = L.LAYER, isinstance(item, X.Checkpoint)
    return out


def libxl_slots(s: L.LibxlStream, *, outside_checkpoint: bool = False) -> list[int]:
    return [i for i, layer, paused in boundaries(s)
            if layer == L.LAYER and not (outside_checkpoint and paused)]


def enc(s) -> bytes:
    return L.encode(s)


def hvm_with(d: Draw, cls, **opts) -> tuple[L.LibxlStream, int]:
    """An HVM stream and the index of an item of ``cls`` (inserted when the draw has none)."""
    s = build(d, guest="hvm", **opts)
    found = find_all(s, cls)
    if found:
        return s, d.choice(found)
    emu_id = 0 if s.header.legacy else 2
    new = L.EmulatorXenstoreData(emu_id, 0, pairs(d, 1)) if cls is L.EmulatorXenstoreData \
        else L.EmulatorContext(emu_id, 0, b"ctx")
    i = len(s.items) - 1
    return edit(s, i, new, drop=0), i


# --------------------------------------------------------------------------
# padding
# --------------------------------------------------------------------------


@mutation(FORMAT, "padding", L.PADDING)
def _padding_nonzero(d: Draw):
    s = build(d)
    lay, _ = layout(s)
    cands = [i for i, (off, n, layer) in enumerate(lay) if layer == L.LAYER and padding_length(n)]
    if not cands or d.bool():
        i = d.choice(libxl_slots(s))
        s = edit(s, i, RawRecord(OPTIONAL_BIT | 0x55, pattern(i, 8 * d.int(0, 1) + d.int(1, 7)), L.LAYER),
                 drop=0)
        lay, _ = layout(s)
        cands = [i]
    i = d.choice(cands)
    off, n, _ = lay[i]
    at = off + 8 + n + d.int(0, padding_length(n) - 1)
    value = d.int(1, 255)
    return SX.patch(enc(s), at, bytes([value])), f"libxl padding octet at {at} is 0x{value:02x}"


@mutation(FORMAT, "padding", L.STREAM_TRUNCATED, "padding_missing")
def _padding_missing(d: Draw):
    s = build(d)
    n = d.int(1, 7)
    k = len(s.items) - 1
    s = edit(s, k, RawRecord(OPTIONAL_BIT | 0x66, pattern(n, n), L.LAYER), drop=0)
    lay, _ = layout(s)
    off, _, _ = lay[k]
    end = off + 8 + n
    data = enc(s)
    return data[:end] + data[end + padding_length(n):], \
        "the padding of the record before END is missing: END is read as padding"


def _with_body(data: bytes, off: int, endian: Endian, body: bytes) -> bytes:
    """``data`` with the empty-bodied record at ``off`` (LIBXC_CONTEXT) given ``body``, framed."""
    rtype = RECORD_HEADER.get(endian, data, "type", off)
    return data[:off] + encode_record(rtype, body, endian) + data[off + RECORD_HEADER.size:]


@mutation(FORMAT, "padding", L.LIBXC_LENGTH, "padding_in_libxc_context")
def _padding_in_context(d: Draw):
    s = build(d)
    lay, _ = layout(s)
    off = lay[0][0]
    data = enc(s)
    zeros = bytes(8 * d.int(1, 2))
    return _with_body(data, off, s.header.endian, zeros), f"LIBXC_CONTEXT body_length {len(zeros)} counts zero padding"


@mutation(FORMAT, "padding", L.END_LENGTH, "padding_in_end")
def _padding_in_end(d: Draw):
    s = build(d)
    s = edit(s, len(s.items) - 1, Raw(RecordType.END, bytes(8 * d.int(1, 2))))
    return enc(s), "libxl END body_length counts zero padding"


# --------------------------------------------------------------------------
# reserved
# --------------------------------------------------------------------------


@mutation(FORMAT, "reserved", L.OPTIONS_RESERVED)
def _options_reserved(d: Draw):
    s = build(d)
    bits = d.int(1, (1 << 30) - 1) << 2
    s = replace(s, header=replace(s.header, options=s.header.options | bits))
    return enc(s), f"libxl header options has reserved bits 0x{bits:08x}"


@mutation(FORMAT, "reserved", L.CPS_PADDING)
def _checkpoint_state_padding(d: Draw):
    s = build(d)
    value = d.int(1, 0xFFFFFFFF)
    s = edit(s, d.choice(libxl_slots(s)), L.CheckpointState(d.int(0, 3), value), drop=0)
    return enc(s), f"CHECKPOINT_STATE padding is 0x{value:08x}"


# --------------------------------------------------------------------------
# width
# --------------------------------------------------------------------------


@mutation(FORMAT, "width", L.IDENT_RULE, "legacy_image_read_as_libxl")
def _legacy_as_libxl(d: Draw):
    from . import legacy as LG

    data, desc = LG.valid(d, xl=False)
    return data, f"a legacy image read as a libxl stream ({desc})"


# --------------------------------------------------------------------------
# strings: EMULATOR_XENSTORE_DATA
# --------------------------------------------------------------------------


def _xsd(d: Draw, rule: str, name: str, make):
    def fn(d: Draw):
        s, i = hvm_with(d, L.EmulatorXenstoreData)
        rec = s.items[i]
        body, what = make(d, list(rec.pairs))
        head = L.EMULATOR_HEADER.pack(s.header.endian, rec.emulator_id, rec.index)
        s = edit(s, i, Raw(RecordType.EMULATOR_XENSTORE_DATA, head + body))
        return enc(s), f"EMULATOR_XENSTORE_DATA: {what}"
    mutation(FORMAT, "strings", rule, name)(fn)


def _no_final_nul(d, ps):
    if not ps:
        ps = [(key(d), b"")]
    ps[-1] = (ps[-1][0], ps[-1][1] or d.bytes(1, 5, VALUE_ALPHABET))
    return L.encode_pairs(ps)[:-1], "the last value has no NUL"


def _odd_strings(d, ps):
    return L.encode_pairs(ps) + key(d) + b"\0", f"{2 * len(ps) + 1} strings: a key without its value"


def _empty_key(d, ps):
    ps.insert(d.int(0, len(ps)), (b"", d.bytes(0, 5, VALUE_ALPHABET)))
    return L.encode_pairs(ps), "an empty key"


def _bad_key_char(d, ps):
    bad = d.choice([b" ", b".", b":", b"\x7f", b"\x80", b"\x01", b"~", b"*"])
    k = key(d)
    at = d.int(0, len(k))
    ps.insert(d.int(0, len(ps)), (k[:at] + bad + k[at:], b"v"))
    return L.encode_pairs(ps), f"a key with character {bad!r}"


def _absolute_key(d, ps):
    ps.insert(d.int(0, len(ps)), (b"/" + key(d), b"v"))
    return L.encode_pairs(ps), "an absolute key"


def _bad_value(d, ps):
    bad = d.choice([b"\x01", b"\x7f", b"\xff", b"\n", b"\t"])
    v = d.bytes(0, 5, VALUE_ALPHABET)
    ps.insert(d.int(0, len(ps)), (key(d), v + bad))
    return L.encode_pairs(ps), f"a value with character {bad!r}"


_xsd(None, L.XSD_NUL, "xenstore_data_no_final_nul", _no_final_nul)
_xsd(None, L.XSD_PAIRS, "xenstore_data_odd_strings", _odd_strings)
_xsd(None, L.XSD_EMPTY_KEY, "xenstore_data_empty_key", _empty_key)
_xsd(None, L.XSD_KEY_CHARS, "xenstore_data_key_chars", _bad_key_char)
_xsd(None, L.XSD_KEY_RELATIVE, "xenstore_data_absolute_key", _absolute_key)
_xsd(None, L.XSD_VALUE_CHARS, "xenstore_data_value_chars", _bad_value)


# --------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------


def _cut_points(s: L.LibxlStream, layer: str):
    """Cut offsets inside something of ``layer`` (a header, record header, body or padding)."""
    lay, total = layout(s)
    spans = []
    if layer == L.LAYER:
        spans.append((1, L.HEADER.size))
    for i, (off, n, item_layer) in enumerate(lay):
        if item_layer == layer:
            spans.append((off + 1, off + 8 + n + padding_length(n)))
        if isinstance(s.items[i], L.LibxcContext) and layer == X.LAYER:
            start = off + 8 + n + padding_length(n)
            spans.append((start, start + SX.HEADERS))
    return spans


def _truncated(layer: str, rule: str):
    def fn(d: Draw):
        s = build(d)
        a, b = d.choice(_cut_points(s, layer))
        cut = d.int(a, b - 1)
        data = enc(s)
        return data[:cut], f"input of {len(data)} octets cut at {cut}, inside a {layer} part"
    mutation(FORMAT, "framing", rule, f"truncated_in_{layer}")(fn)


_truncated(L.LAYER, L.STREAM_TRUNCATED)
_truncated(X.LAYER, X.STREAM_TRUNCATED)


def _end_missing(layer: str, rule: str):
    def fn(d: Draw):
        s = build(d)
        lay, _ = layout(s)
        # not right after CHECKPOINT_END: a checkpointed stream may stop there (ends_after_checkpoint)
        cands = [i for i, active, _ in boundaries(s) if active == layer and i > 0
                 and not isinstance(s.items[i - 1], (L.LibxcContext, L.CheckpointEnd))]
        i = d.choice(cands)
        return enc(s)[:lay[i][0]], f"input ends at a {layer} record boundary without END"
    mutation(FORMAT, "framing", rule, f"end_missing_{layer}")(fn)


_end_missing(L.LAYER, L.END_MISSING)
_end_missing(X.LAYER, X.END_MISSING)


@mutation(FORMAT, "framing", L.CHECKPOINT_EOF)
def _ends_after_checkpoint(d: Draw):
    s = build(d, checkpoints=(1, 2))
    lay, _ = layout(s)
    ends = [i for i, item in enumerate(s.items) if isinstance(item, L.CheckpointEnd)]
    i = d.choice(ends) + 1
    return enc(s)[:lay[i][0]], f"a checkpointed stream that stops after CHECKPOINT_END (item #{i - 1})"


@mutation(FORMAT, "framing", L.TRAILING_DATA)
def _trailing(d: Draw):
    s = build(d)
    kind = d.choice(["bytes", "END"])
    extra = d.bytes(1, 16) if kind == "bytes" else enc(L.LibxlStream(s.header, (L.End(),)))[L.HEADER.size:]
    return enc(s) + extra, f"{len(extra)} octets ({kind}) follow END"


@mutation(FORMAT, "framing", L.UNKNOWN_MANDATORY)
def _unknown_mandatory(d: Draw):
    s = build(d)
    rtype = d.choice([6, 0x7FFFFFFF, d.int(6, 0x7FFFFFFF)])
    s = edit(s, d.choice(libxl_slots(s)), Raw(rtype, pattern(rtype, d.int(0, 20))), drop=0)
    return enc(s), f"unknown mandatory libxl record type 0x{rtype:08x}"


@mutation(FORMAT, "framing", None, "unknown_optional")
def _unknown_optional(d: Draw):
    s = build(d)
    rtype = OPTIONAL_BIT | d.int(0, 0x7FFFFFFF)
    s = edit(s, d.choice(libxl_slots(s)), Raw(rtype, pattern(rtype, d.int(0, 20))), drop=0)
    return enc(s), f"unknown optional libxl record type 0x{rtype:08x}: valid, ignored"


@mutation(FORMAT, "framing", L.STREAM_TRUNCATED, "body_length_past_end")
def _body_length_past_end(d: Draw):
    s = build(d)
    k = len(s.items) - 1
    s = edit(s, k, RawRecord(OPTIONAL_BIT | 0x77, pattern(k, d.int(0, 16)), L.LAYER), drop=0)
    lay, total = layout(s)
    off = lay[k][0]
    value = total - (off + 8) + d.int(1, 4096)
    return SX.patch(enc(s), off + 4, value.to_bytes(4, s.header.endian.value)), \
        f"the last record's body_length {value} runs past the end of the input"


@mutation(FORMAT, "framing", L.LIBXC_LENGTH)
def _libxc_context_body(d: Draw):
    s = build(d)
    lay, _ = layout(s)
    off = lay[0][0]
    body = d.bytes(1, 12)
    return _with_body(enc(s), off, s.header.endian, body), f"LIBXC_CONTEXT with a {len(body)}-octet body"


@mutation(FORMAT, "framing", L.END_LENGTH)
def _end_body(d: Draw):
    s = build(d)
    s = edit(s, len(s.items) - 1, Raw(RecordType.END, d.bytes(1, 12)))
    return enc(s), "libxl END with a body"


@mutation(FORMAT, "framing", L.CPE_LENGTH)
def _checkpoint_end_body(d: Draw):
    s = build(d, checkpoints=(1, 2))
    i = d.choice(find_all(s, L.CheckpointEnd))
    s = edit(s, i, Raw(RecordType.CHECKPOINT_END, d.bytes(1, 12)))
    return enc(s), "CHECKPOINT_END with a body"


@mutation(FORMAT, "framing", L.CPS_LENGTH)
def _checkpoint_state_length(d: Draw):
    s = build(d)
    body = pattern(5, d.choice([d.int(0, 7), d.int(9, 16)]))
    s = edit(s, d.choice(libxl_slots(s)), Raw(RecordType.CHECKPOINT_STATE, body), drop=0)
    return enc(s), f"CHECKPOINT_STATE body of {len(body)} octets"


@mutation(FORMAT, "framing", L.EMU_LENGTH)
def _emulator_short(d: Draw):
    s, i = hvm_with(d, d.choice([L.EmulatorContext, L.EmulatorXenstoreData]))
    rtype = s.items[i].type
    s = edit(s, i, Raw(rtype, pattern(3, d.int(0, 7))))
    return enc(s), f"{L.record_name(rtype)} shorter than its 8-octet sub header"


# --------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------


@mutation(FORMAT, "semantics", L.IDENT_RULE)
def _ident(d: Draw):
    s = build(d)
    ident = d.choice([0, L.IDENT ^ (1 << d.int(0, 63)), 0xFFFFFFFFFFFFFFFF])
    s = replace(s, header=replace(s.header, ident=ident))
    return enc(s), f"libxl ident 0x{ident:016x}"


@mutation(FORMAT, "semantics", L.VERSION_RULE)
def _version(d: Draw):
    s = build(d)
    version = d.choice([1, 3, 0, d.int(3, 0xFFFFFFFF)])
    s = replace(s, header=replace(s.header, version=version))
    return enc(s), f"libxl version {version}"


@mutation(FORMAT, "semantics", L.ENDIANNESS)
def _big_endian(d: Draw):
    s = build(d, byteorder="big")
    return enc(s), "big-endian libxl layer: " + describe(s)


@mutation(FORMAT, "semantics", L.EMU_ID)
def _emulator_id(d: Draw):
    s, i = hvm_with(d, d.choice([L.EmulatorContext, L.EmulatorXenstoreData]))
    emu = d.choice([3, d.int(3, 0xFFFFFFFF)])
    s = edit(s, i, replace(s.items[i], emulator_id=emu))
    return enc(s), f"emulator_id 0x{emu:08x} is reserved"


@mutation(FORMAT, "semantics", L.EMU_ID_UNKNOWN)
def _emulator_unknown(d: Draw):
    s, i = hvm_with(d, d.choice([L.EmulatorContext, L.EmulatorXenstoreData]), legacy=False)
    s = edit(s, i, replace(s.items[i], emulator_id=0))
    return enc(s), "emulator_id 0 (Unknown) without the legacy bit"


@mutation(FORMAT, "semantics", L.EMU_GUEST_TYPE)
def _emulator_in_pv(d: Draw):
    s = build(d, guest="pv")
    slots = [i for i in libxl_slots(s) if i > find_all(s, X.End)[0] or any(
        isinstance(r, X.Checkpoint) for r in s.items[:i])]
    rec = L.EmulatorContext(d.choice([1, 2]), 0, b"ctx")
    s = edit(s, d.choice(slots), rec, drop=0)
    return enc(s), "an emulator record in the stream of an x86 PV guest"


@mutation(FORMAT, "semantics", L.CPE_OUTSIDE)
def _checkpoint_end_outside(d: Draw):
    s = build(d)
    s = edit(s, d.choice(libxl_slots(s, outside_checkpoint=True)), L.CheckpointEnd(), drop=0)
    return enc(s), "CHECKPOINT_END outside a checkpoint"


@mutation(FORMAT, "semantics", L.END_IN_CHECKPOINT)
def _end_in_checkpoint(d: Draw):
    s = build(d, checkpoints=(1, 2))
    i = d.choice(find_all(s, X.Checkpoint))
    s = replace(s, items=s.items[:i + 1] + (L.End(),))
    return enc(s), "libxl END inside a checkpoint (after libxc CHECKPOINT, before CHECKPOINT_END)"


@mutation(FORMAT, "semantics", L.LIBXC_MISSING)
def _libxc_missing(d: Draw):
    s = build(d)
    end = find_all(s, X.End)[0]
    items = tuple(r for r in s.items[end + 1:])
    return enc(replace(s, items=items)), "a libxl stream without LIBXC_CONTEXT"


@mutation(FORMAT, "semantics", L.LIBXC_REPEATED)
def _libxc_repeated(d: Draw):
    s = build(d, checkpoints=0)
    other = build(d, checkpoints=0, byteorder=s.header.endian.value)
    end = find_all(other, X.End)[0]
    k = find_all(s, X.End)[0] + 1
    s = edit(s, k, *other.items[:end + 1], drop=0)
    return enc(s), "a second LIBXC_CONTEXT and libxc stream"


@mutation(FORMAT, "semantics", L.CPS_CONTROL)
def _checkpoint_state_control(d: Draw):
    s = build(d)
    control = d.choice([4, d.int(4, 0xFFFFFFFF)])
    s = edit(s, d.choice(libxl_slots(s)), L.CheckpointState(control), drop=0)
    return enc(s), f"CHECKPOINT_STATE control_id 0x{control:08x} is not defined"


@mutation(FORMAT, "semantics", L.CPS_DIRECTION)
def _checkpoint_state(d: Draw):
    s = build(d)
    s = edit(s, d.choice(libxl_slots(s)), L.CheckpointState(d.int(0, 3)), drop=0)
    return enc(s), "a COLO CHECKPOINT_STATE record in a saved stream"
