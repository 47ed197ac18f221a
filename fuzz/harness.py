"""The fuzz targets' one-input functions and their invariants, without atheris.

Each target module (``decode_<format>``, ``roundtrip_<format>``,
``mutate_<format>``, ``convert_legacy``) is one line that picks a function
from here, plus the atheris entry point (:func:`main`).  The functions raise
:class:`InvariantError` (or let an unexpected exception through) when an
invariant breaks; a :class:`~xenstream.reference.errors.StreamError` is the
documented way to refuse an input and is never a finding.

Invariants
----------
decode
    ``codec.decode`` returns or raises ``StreamError``, nothing else; and it
    agrees with the streaming validator: the decoder refuses exactly the
    inputs that ``validate`` refuses in the restore role.
roundtrip
    what decodes re-encodes to bytes that decode to an equal value; a stream
    with no finding at all re-encodes to itself.
convert_legacy
    the converter returns or raises ``StreamError``; its output, when it
    produces one, is accepted by the reference verifier (strict role), both
    with ``-f libxc --skip-qemu`` and with ``-f libxl``.
mutate
    structure-aware: the input chooses a valid seed stream, then a few
    record-level mutations (flip an octet, set a length, delete, duplicate or
    swap a record, truncate, insert an unknown record); the decode and
    roundtrip invariants are checked on the result.

Time and memory are bounded by the driver (libFuzzer ``-timeout`` and
``-rss_limit_mb``).
"""

from __future__ import annotations

import io
import struct
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable

from xenstream.reference import xl
from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError
from xenstream.reference.formats import get_codec, names, validate
from xenstream.reference.framing import OPTIONAL_BIT, RECORD_HEADER, encode_record
from xenstream.reference.layout import Endian
from xenstream.reference.rules import Role
from xenstream.reference.source import Source

FORMATS = names()
#: Inputs larger than this are cut (libFuzzer's -max_len does the same for its own inputs).
MAX_INPUT = 1 << 20


class InvariantError(AssertionError):
    """A fuzz target's invariant does not hold: a finding."""


def _decode(fmt: str, data: bytes):
    """The decoded value, or None when the decoder refuses with StreamError."""
    try:
        return get_codec(fmt).decode(data)
    except StreamError:
        return None


def _check_consistent(fmt: str, data: bytes, value) -> None:
    restore = validate(Source.from_bytes(data), fmt, Checker(Role.RESTORE))
    if value is not None and not restore.accepted:
        first = restore.first_refused()
        raise InvariantError(f"{fmt}: decode accepts what validate (restore) refuses: "
                             f"{first.describe() if first else '?'}")
    if value is None and restore.accepted:
        raise InvariantError(f"{fmt}: decode refuses what validate (restore) accepts: "
                             f"{_refusal(fmt, data)}")


def _refusal(fmt: str, data: bytes) -> str:
    try:
        get_codec(fmt).decode(data)
    except StreamError as exc:
        return exc.finding.describe()
    return "?"


def check_decode(fmt: str, data: bytes):
    value = _decode(fmt, data)
    _check_consistent(fmt, data, value)
    return value


def check_roundtrip(fmt: str, data: bytes, value=None) -> None:
    codec = get_codec(fmt)
    if value is None:
        value = _decode(fmt, data)
    if value is None:
        return
    again = codec.encode(value)
    try:
        value2 = codec.decode(again)
    except StreamError as exc:
        raise InvariantError(f"{fmt}: re-encoded stream does not decode: {exc.finding.describe()}") from None
    if value2 != value:
        raise InvariantError(f"{fmt}: decode(encode(decode(b))) != decode(b)")
    strict = validate(Source.from_bytes(data), fmt, Checker(Role.STRICT))
    if strict.total == 0 and again != data:
        at = next((i for i, (a, b) in enumerate(zip(again, data)) if a != b), min(len(again), len(data)))
        raise InvariantError(f"{fmt}: a stream without findings re-encodes differently "
                             f"(first difference at offset {at}, {len(data)} -> {len(again)} octets)")


def decode_target(fmt: str) -> Callable[[bytes], None]:
    def TestOneInput(data: bytes) -> None:
        check_decode(fmt, bytes(data[:MAX_INPUT]))
    TestOneInput.__qualname__ = f"decode_{fmt}"
    return TestOneInput


def roundtrip_target(fmt: str) -> Callable[[bytes], None]:
    def TestOneInput(data: bytes) -> None:
        data = bytes(data[:MAX_INPUT])
        check_roundtrip(fmt, data, _decode(fmt, data))
    TestOneInput.__qualname__ = f"roundtrip_{fmt}"
    return TestOneInput


def convert_legacy(data: bytes) -> None:
    from xenstream.reference.legacy_convert import OUTPUT_FORMATS, convert

    data = bytes(data[:MAX_INPUT])
    for fmt in OUTPUT_FORMATS:
        out = io.BytesIO()
        try:
            convert(Source.from_bytes(data), out, fmt=fmt, qemu=False)
        except StreamError:
            continue
        produced = out.getvalue()
        check_fmt = fmt
        if produced.startswith(xl.MAGIC):
            # an xl savefile header in front is copied through (with the
            # streamv2 flag): the whole output is an xl savefile for -f libxl,
            # the header and a libxc stream for -f libxc
            if fmt == "libxl":
                check_fmt = "xl"
            else:
                produced = produced[xl.header_length(produced) or 0:]
        strict = validate(Source.from_bytes(produced), check_fmt, Checker(Role.STRICT))
        if not strict.accepted:
            first = strict.first_refused()
            raise InvariantError(f"convert-legacy -f {fmt}: output refused by the verifier: "
                                 f"{first.describe() if first else '?'}")


# --------------------------------------------------------------------------
# structure-aware mutation


class Chooser:
    """Draws small numbers from the fuzzer's input, like atheris' FuzzedDataProvider,
    without atheris (so that tests can run the targets on corpus files)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def int(self, n: int) -> int:
        """0 <= value < n (0 when the input is used up)."""
        if n <= 1:
            return 0
        need = (max(n - 1, 1).bit_length() + 7) // 8
        raw = self.data[self.pos:self.pos + need]
        self.pos += need
        return int.from_bytes(raw.ljust(need, b"\0"), "little") % n

    def u32(self) -> int:
        raw = self.data[self.pos:self.pos + 4]
        self.pos += 4
        return int.from_bytes(raw.ljust(4, b"\0"), "little")

    def bytes(self, n: int) -> bytes:
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw


@lru_cache(maxsize=None)
def seeds(fmt: str) -> tuple[bytes, ...]:
    """Valid streams of ``fmt`` to start from: the corpus's ``y_`` files, the
    hand-written valid examples, and strategy draws when the strategies exist."""
    out: list[bytes] = []
    from xenstream.corpus.build import default_dir

    folder = default_dir() / fmt
    if folder.is_dir():
        out += [p.read_bytes() for p in sorted(folder.glob("y_*.bin"))]
    if not out:
        from xenstream.reference.examples import all_examples

        out += [e.data for e in all_examples() if e.format == fmt and e.rule is None and len(e.data) < 65536]
    small = sorted({d for d in out if len(d) <= 65536}, key=lambda d: (len(d), d))
    return tuple(small) or (b"",)


MUTATIONS = ("flip", "set_length", "set_type", "delete", "duplicate", "swap", "truncate", "insert",
             "set_u32", "splice")


def mutate(fmt: str, data: bytes, ch: Chooser) -> bytes:
    from xenstream.corpus.frames import spans

    out = bytearray(data)
    for _ in range(1 + ch.int(4)):
        items = spans(fmt, bytes(out))
        if not items:
            out += ch.bytes(8)
            continue
        a, b, layer = items[ch.int(len(items))]
        op = MUTATIONS[ch.int(len(MUTATIONS))]
        endian = Endian.BIG if len(out) > 0 and _big_endian(fmt, bytes(out)) else Endian.LITTLE
        if op == "flip" and b > a:
            i = a + ch.int(b - a)
            out[i] ^= 1 << ch.int(8)
        elif op == "set_length" and b - a >= RECORD_HEADER.size:
            value = (0, 1, 7, 8, b - a - 8, b - a, 0xFFFFFFFF, 0x7FFFFFFF, ch.u32())[ch.int(9)]
            _set_field(out, a, endian, "body_length", value & 0xFFFFFFFF)
        elif op == "set_type" and b - a >= RECORD_HEADER.size:
            value = (ch.int(0x20), OPTIONAL_BIT | ch.int(0x20), ch.u32())[ch.int(3)]
            _set_field(out, a, endian, "type", value)
        elif op == "delete":
            del out[a:b]
        elif op == "duplicate":
            out[b:b] = out[a:b]
        elif op == "swap" and len(items) > 1:
            c, d, _ = items[ch.int(len(items))]
            if (c, d) != (a, b):
                (a, b), (c, d) = sorted([(a, b), (c, d)])
                if b <= c:
                    out[a:d] = out[c:d] + out[b:c] + out[a:b]
        elif op == "truncate":
            del out[a + ch.int(b - a + 1):]
        elif op == "insert":
            body = ch.bytes(ch.int(24))
            rtype = (ch.int(0x20), OPTIONAL_BIT | ch.int(0x20))[ch.int(2)]
            out[a:a] = encode_record(rtype, body, endian)
        elif op == "set_u32" and b - a >= 4:
            i = a + (ch.int(max((b - a) // 4, 1)) * 4)
            if i + 4 <= len(out):
                out[i:i + 4] = struct.pack(endian.prefix + "I", (0, 1, 0xFFFFFFFF, 0x80000000, ch.u32())[ch.int(5)])
        elif op == "splice":
            other = seeds(fmt)[ch.int(len(seeds(fmt)))]
            o_items = spans(fmt, other)
            if o_items:
                c, d, _ = o_items[ch.int(len(o_items))]
                out[a:a] = other[c:d]
        if len(out) > MAX_INPUT:
            del out[MAX_INPUT:]
    return bytes(out)


def _set_field(out: bytearray, at: int, endian: Endian, name: str, value: int) -> None:
    """Field ``name`` of the record header at ``at`` (the framing of libxc, libxl, xenstore)."""
    start = RECORD_HEADER.at(at, name)
    octets = RECORD_HEADER.pack_field(endian, name, value)
    out[start:start + len(octets)] = octets


def _big_endian(fmt: str, data: bytes) -> bool:
    from xenstream.corpus.verdict import sniff

    return sniff(fmt, data)[1] == "big"


def mutate_target(fmt: str) -> Callable[[bytes], None]:
    def TestOneInput(data: bytes) -> None:
        ch = Chooser(data)
        pool = seeds(fmt)
        stream = mutate(fmt, pool[ch.int(len(pool))], ch)
        value = check_decode(fmt, stream)
        check_roundtrip(fmt, stream, value)
    TestOneInput.__qualname__ = f"mutate_{fmt}"
    return TestOneInput


# --------------------------------------------------------------------------
# atheris entry point


def main(test_one_input: Callable[[bytes], None], argv: list[str] | None = None) -> None:
    """Run ``test_one_input`` under atheris/libFuzzer with ``argv`` (libFuzzer flags, corpus dirs)."""
    import atheris

    argv = list(sys.argv if argv is None else argv)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def target_names() -> list[str]:
    names = [f"{kind}_{fmt}" for kind in ("decode", "roundtrip", "mutate") for fmt in FORMATS]
    return names + ["convert_legacy"]


def seed_formats(target: str) -> list[str]:
    """The corpus folders a target's seeds come from."""
    if target == "convert_legacy":
        return ["legacy"]
    return [target.split("_", 1)[1]]


def load_target(target: str) -> Callable[[bytes], None]:
    import importlib

    return importlib.import_module(f"xenstream.fuzz.{target}").TestOneInput


def fuzz_dir() -> Path:
    return Path(__file__).resolve().parent
