"""xl savefiles: the xl header wrapping a libxl v2 stream or a legacy image.

Besides the header's own mutations, every libxl and legacy mutation is
offered behind a valid xl header: the xl reader hands the body to the libxl
(or legacy) reader, so the broken rule is the same."""

from __future__ import annotations

import json

from xenstream.reference import xl as XL
from xenstream.reference.layout import Endian

from . import legacy as SG
from . import libxl as SL
from ._draw import Draw, broken_magic, pick
from ._registry import MUTATIONS, Mutation, mutation, valid_builder

FORMAT = "xl"
OPTDATA = XL.OPTIONAL_DATA_OFFSET
LE, BE = Endian.LITTLE, Endian.BIG


def config(d: Draw) -> tuple[bytes | None, bool]:
    """(config, is JSON)."""
    kind = d.choice(["json", "none", "text"])
    if kind == "none":
        return None, False
    if kind == "text":
        return b'name="guest%d"\nmemory=%d\n' % (d.int(0, 99), d.int(1, 4096)), False
    obj = {"c_info": {"type": d.choice(["hvm", "pv"]), "name": f"guest{d.int(0, 99)}"},
           "b_info": {"max_memkb": d.int(1, 1 << 22)}}
    return json.dumps(obj).encode() + b"\0", True


def header(d: Draw, *, streamv2: bool = True, byteorder=None) -> XL.XlHeader:
    endian = pick(d, byteorder if byteorder is None or isinstance(byteorder, Endian) else Endian(byteorder),
                  lambda: d.choice([LE, BE]))
    cfg, is_json = config(d)
    h = XL.XlHeader.with_config(cfg, json_config=is_json, endian=endian, streamv2=streamv2)
    if cfg is not None and d.int(0, 3) == 0:  # optional data longer than the config
        h = XL.XlHeader(endian, h.mandatory_flags, 0, h.optional_data + d.bytes(1, 8))
    return h


def build(d: Draw, *, body=None, **opts) -> tuple[bytes, str]:
    body = pick(d, body, lambda: "libxl" if d.int(0, 3) else "legacy")
    if body == "legacy":
        legacy_opts = {k: v for k, v in opts.items() if k in ("width", "guest", "pages", "physmap", "qemu")}
        data, desc = SG.valid(d, xl=False, **legacy_opts)
        h = header(d, streamv2=False, byteorder=opts.get("byteorder"))
    else:
        data, desc = SL.valid(d, **opts)
        h = header(d, byteorder=opts.get("byteorder"))
    return h.encode() + data, f"xl header ({h.endian.value}-endian) + {desc}"


@valid_builder(FORMAT)
def valid(d: Draw, **opts):
    data, desc = build(d, **opts)
    return data, "valid " + desc


def _libxl_body(d: Draw) -> bytes:
    data, _ = SL.valid(d)
    return data


def _hdr(endian=LE, mandatory=XL.FLAG_STREAMV2, optional=0, optdata=b"") -> bytes:
    return XL.XlHeader(endian, mandatory, optional, optdata).encode()


@mutation(FORMAT, "framing", XL.TRUNCATED)
def _truncated(d: Draw):
    data, _ = build(d, body="libxl")
    h_len = XL.header_length(data)
    cut = d.int(0, h_len - 1)
    return data[:cut], f"input cut at {cut}, inside the xl header ({h_len} octets)"


@mutation(FORMAT, "semantics", XL.MAGIC_RULE)
def _magic(d: Draw):
    data, _ = build(d)
    return broken_magic(d, data, XL.MAGIC)


@mutation(FORMAT, "semantics", XL.BYTEORDER)
def _byteorder(d: Draw):
    data, _ = build(d)
    bad = d.choice([b"\x02\x01\x04\x03", b"\0\0\0\0", b"\x03\x04\x01\x02", d.bytes(4, 4)])
    if bad in (b"\x04\x03\x02\x01", b"\x01\x02\x03\x04"):
        bad = b"\xff\xff\xff\xff"
    return data[:32] + bad + data[36:], f"byteorder octets {bad.hex()}"


@mutation(FORMAT, "semantics", XL.MANDATORY)
def _mandatory(d: Draw):
    endian = d.choice([LE, BE])
    bits = d.int(1, (1 << 30) - 1) << 2
    return _hdr(endian, XL.FLAG_STREAMV2 | bits) + _libxl_body(d), f"unknown mandatory flags 0x{bits:08x}"


@mutation(FORMAT, "reserved", XL.OPTIONAL)
def _optional_flags(d: Draw):
    endian = d.choice([LE, BE])
    flags = d.int(1, 0xFFFFFFFF)
    return _hdr(endian, optional=flags) + _libxl_body(d), f"optional flags 0x{flags:08x}"


@mutation(FORMAT, "framing", XL.OPTDATA)
def _optdata(d: Draw):
    endian = d.choice([LE, BE])
    if d.bool():
        optdata = d.bytes(1, 3)
        what = f"{len(optdata)} octets of optional data"
    else:
        cfg = d.bytes(0, 8)
        n = len(cfg) + d.int(1, 100)
        optdata = n.to_bytes(4, endian.value) + cfg
        what = f"config length {n} with {len(cfg)} octets"
    return _hdr(endian, optdata=optdata) + _libxl_body(d), what


@mutation(FORMAT, "strings", XL.JSON_NUL)
def _json_nul(d: Draw):
    endian = d.choice([LE, BE])
    cfg, _ = config(d)
    cfg = (cfg or b'{"c_info": {}}\0').rstrip(b"\0") if cfg and cfg[:1] == b"{" else b'{"x": %d}' % d.int(0, 9)
    return _hdr(endian, XL.FLAG_STREAMV2 | XL.FLAG_JSON, optdata=len(cfg).to_bytes(4, endian.value) + cfg) + \
        _libxl_body(d), "a JSON configuration without its NUL"


@mutation(FORMAT, "strings", XL.JSON_SYNTAX)
def _json_syntax(d: Draw):
    endian = d.choice([LE, BE])
    cfg = d.choice([b"{bad", b'name="g"', b"{\"a\": }", b"\xff\xfe", b""]) + b"\0"
    if cfg == b"\0":
        cfg = b"[1,\0"
    return _hdr(endian, XL.FLAG_STREAMV2 | XL.FLAG_JSON, optdata=len(cfg).to_bytes(4, endian.value) + cfg) + \
        _libxl_body(d), f"a JSON configuration that does not parse: {cfg[:-1]!r}"


@mutation(FORMAT, "semantics", XL.JSON_NO_CONFIG)
def _json_without_config(d: Draw):
    endian = d.choice([LE, BE])
    optdata = d.choice([b"", (0).to_bytes(4, endian.value)])
    return _hdr(endian, XL.FLAG_STREAMV2 | XL.FLAG_JSON, optdata=optdata) + _libxl_body(d), \
        "the JSON flag without a configuration"


@mutation(FORMAT, "semantics", XL.LEGACY_EXPECTED)
def _legacy_expected(d: Draw):
    from . import libxc as SX

    data, desc = SX.valid(d)
    h = header(d, streamv2=False)
    return h.encode() + data, f"no STREAMv2 flag, but the body is a v2 libxc image ({desc})"


# -- every libxl and legacy mutation behind an xl header ---------------------------------


def _wrapped(m: Mutation, streamv2: bool):
    def fn(d: Draw):
        data, desc = m.fn(d)
        if not streamv2 and data.startswith(XL.MAGIC):
            return data, desc  # the legacy image already has its xl header
        return header(d, streamv2=streamv2).encode() + data, f"behind an xl header: {desc}"
    return fn


for _m in [m for m in MUTATIONS if m.format in ("libxl", "legacy")]:
    MUTATIONS.append(Mutation(FORMAT, _m.family, _m.rule, f"{_m.format}.{_m.name}",
                              _wrapped(_m, _m.format == "libxl")))
