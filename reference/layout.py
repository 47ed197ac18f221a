"""Binary layouts declared once, precompiled for both byte orders.

A :class:`Layout` names a fixed-size part of a header or record after the
specification and holds its ``struct.Struct`` for little- and big-endian
streams, so that a stream in either byte order is read the same way on any
host.  Headers that the specs fix as big-endian use :attr:`Layout.be`.
"""

from __future__ import annotations

import enum
import struct


class Endian(enum.Enum):
    LITTLE = "little"
    BIG = "big"

    @classmethod
    def from_bit(cls, bit: int) -> "Endian":
        """The specs' endianness option bit: 0 little-endian, 1 big-endian."""
        return cls.BIG if bit & 1 else cls.LITTLE

    @property
    def bit(self) -> int:
        return 1 if self is Endian.BIG else 0


class Layout:
    """A named fixed-size layout, e.g. ``Layout("PAGE_DATA header", "II", "count", "reserved")``."""

    __slots__ = ("name", "fields", "le", "be", "size")

    def __init__(self, name: str, fmt: str, *fields: str):
        self.name = name
        self.fields = fields
        self.le = struct.Struct("<" + fmt)
        self.be = struct.Struct(">" + fmt)
        self.size = self.le.size
        if fields and len(fields) != len(self.le.unpack(bytes(self.size))):
            raise ValueError(f"{name}: {len(fields)} field names for format {fmt!r}")

    def of(self, endian: Endian) -> struct.Struct:
        return self.be if endian is Endian.BIG else self.le

    def unpack(self, endian: Endian, data, offset: int = 0) -> tuple:
        return self.of(endian).unpack_from(data, offset)

    def pack(self, endian: Endian, *values) -> bytes:
        return self.of(endian).pack(*values)

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.le.format[1:]!r}, size={self.size})"
