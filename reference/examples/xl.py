"""Hand-written xl savefile examples: valid files and one or more malformed
files for every ``xl.*`` rule, with the offset the reference must report."""

from __future__ import annotations

from .. import build, libxc, xl
from ..layout import Endian
from ..libxc import DomainType
from . import Example

FORMAT = "xl"
HVM, PV = DomainType.X86_HVM, DomainType.X86_PV
OPTDATA = xl.OPTIONAL_DATA_OFFSET


def _ex(name, stream_or_bytes, rule, description, offset=None, **meta) -> Example:
    data = stream_or_bytes if isinstance(stream_or_bytes, bytes) else xl.encode(stream_or_bytes)
    return Example(FORMAT, name, data, rule, description, meta, offset)


def _header_bytes(endian=Endian.LITTLE, mandatory=xl.FLAG_STREAMV2, optional=0, optdata=b"") -> bytes:
    return xl.XlHeader(endian, mandatory, optional, optdata).encode()


def examples() -> list[Example]:
    libxl_hvm = xl.encode(build.xl_stream(HVM, config=None))[OPTDATA:]
    out = [
        _ex("hvm_json_config", build.xl_stream(HVM), None, "what xl save writes: JSON config, libxl stream"),
        _ex("pv_json_config", build.xl_stream(PV), None, "xl save of a PV guest"),
        _ex("no_config", build.xl_stream(HVM, config=None), None, "no optional data at all"),
        _ex("text_config", xl.XlStream(xl.XlHeader.with_config(b'name="guest"\nmemory=1024\n',
                                                               json_config=False),
                                       build.libxl_stream(HVM)), None,
            "an old-style xl config (not JSON) in the optional data"),
        _ex("checkpointed", build.xl_stream(HVM, checkpoints=1), None, "xl header around a checkpointed stream"),
        _ex("optional_data_tail", _header_bytes(mandatory=3, optdata=(3).to_bytes(4, "little") + b"{}\0"
                                                + b"future-data") + libxl_hvm, None,
            "optional data longer than the config: the tail is skipped"),
        _ex("big_endian_header", xl.XlStream(xl.XlHeader.with_config(build.CONFIG_JSON, endian=Endian.BIG),
                                             build.libxl_stream(HVM)), None,
            "xl header in big-endian byte order (byteorder 01 02 03 04) around a little-endian stream"),
    ]
    good = xl.encode(build.xl_stream(HVM))
    config_at = OPTDATA + 4
    out += [
        _ex("cut_in_optional_data", good[:OPTDATA + 10], xl.TRUNCATED, "input ends inside the optional data",
            OPTDATA + 10),
        _ex("cut_in_magic", good[:20], xl.TRUNCATED, "input ends inside the magic", 20),
        _ex("magic_wrong", good[:4] + b"X" + good[5:], xl.MAGIC_RULE, "the magic's fifth octet differs", 4),
        _ex("byteorder_wrong", good[:32] + b"\x02\x01\x04\x03" + good[36:], xl.BYTEORDER,
            "byteorder octets 02 01 04 03", 32),
        _ex("mandatory_flag_unknown", _header_bytes(mandatory=xl.FLAG_STREAMV2 | 4) + libxl_hvm, xl.MANDATORY,
            "unknown mandatory flag bit 2", 36),
        _ex("optional_flag_unknown", _header_bytes(optional=1) + libxl_hvm, xl.OPTIONAL,
            "optional flag bit 0, which no xl defines", 40),
        _ex("optional_data_too_short", _header_bytes(optdata=b"\x01\x00") + libxl_hvm, xl.OPTDATA,
            "two octets of optional data cannot hold the config length", OPTDATA),
        _ex("config_length_overrun", _header_bytes(optdata=(100).to_bytes(4, "little") + b"{}\0")
            + libxl_hvm, xl.OPTDATA, "config length 100 with three octets of config", OPTDATA),
        _ex("json_without_nul", _header_bytes(mandatory=3, optdata=(2).to_bytes(4, "little") + b"{}")
            + libxl_hvm, xl.JSON_NUL, "a JSON config without its trailing NUL", config_at + 1),
        _ex("json_syntax", _header_bytes(mandatory=3, optdata=(5).to_bytes(4, "little") + b"{bad\0")
            + libxl_hvm, xl.JSON_SYNTAX, "a JSON config that does not parse", config_at),
        _ex("json_flag_without_config", _header_bytes(mandatory=3) + libxl_hvm, xl.JSON_NO_CONFIG,
            "the JSON flag with no configuration", OPTDATA),
        _ex("v2_libxc_without_streamv2", _header_bytes(mandatory=0)
            + libxc.encode(build.libxc_stream(HVM)), xl.LEGACY_EXPECTED,
            "no STREAMv2 flag, so a legacy body, but the body is a v2 libxc image", OPTDATA),
    ]
    return out
