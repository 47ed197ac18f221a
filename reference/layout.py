"""Binary layouts declared once, in the spirit of construct.

A :class:`Layout` names the fields of a header, a record body or an ABI
structure once, in wire order, after the specification: plain values
(:func:`u8` ... :func:`u64`, :func:`octets`), constants (``const=``),
reserved fields (:func:`reserved`), counts of a variable part (``count=`` on
the part) and, after the fixed part, the variable parts: arrays
(:class:`Array`), octet strings counted by a field or running to the end of
the body (:class:`Bytes`) and NUL-terminated strings whose length field
counts the NUL (:class:`CString`).  From that one declaration come

* the fixed part's ``struct.Struct`` for both byte orders (:attr:`Layout.le`,
  :attr:`Layout.be`, :meth:`Layout.of`), for the readers' hot paths;
* a decoder of the fixed part by name (:meth:`Layout.values`, and
  :meth:`Layout.named`, a named tuple, for the parsers);
* an encoder by name (:meth:`Layout.encode`: defaults, constants and counts
  filled in, variable parts appended);
* field-named offsets for findings (:meth:`Layout.offset`, :meth:`Layout.at`);
* with :class:`Declared`, the frozen dataclass of a record or header type,
  its ``encode_body`` and ``decode_fixed``.

A field may span several struct codes (``"HI"``: a 48-bit field written as a
16-bit and a 32-bit word, most significant first), as the specs draw some
reserved fields.  Standard library only.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import struct
from typing import Any, ClassVar


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

    @property
    def prefix(self) -> str:
        """The ``struct`` byte-order character."""
        return ">" if self is Endian.BIG else "<"


# --------------------------------------------------------------------------
# fields of the fixed part
# --------------------------------------------------------------------------

VALUE, CONST, RESERVED, COUNT, PAD = "value", "const", "reserved", "count", "pad"


class Field:
    """One named field of a fixed part; ``fmt`` is one or more ``struct`` codes."""

    __slots__ = ("name", "fmt", "kind", "default", "codes", "bits")

    def __init__(self, name: str | None, fmt: str, kind: str = VALUE, default: Any = dataclasses.MISSING):
        self.name, self.fmt, self.kind = name, fmt, kind
        codes = [c for c in _split_codes(fmt)]
        self.codes = tuple(codes)
        self.bits = tuple(8 * struct.calcsize("<" + c) for c in codes)
        if default is dataclasses.MISSING and kind in (RESERVED, COUNT):
            default = b"" if fmt.endswith("s") else 0
        self.default = default

    @property
    def attr(self) -> str | None:
        """The Python name of the field (``conn-id`` is ``conn_id``)."""
        return None if self.name is None else self.name.replace("-", "_")

    def join(self, parts: tuple) -> Any:
        """The field's value from its struct codes' values (a split field: most significant first)."""
        if len(parts) == 1:
            return parts[0]
        value = 0
        for part, bits in zip(parts, self.bits):
            value = (value << bits) | part
        return value

    def split(self, value: Any) -> tuple:
        if len(self.codes) == 1:
            return (value,)
        out = []
        for bits in reversed(self.bits):
            out.append(value & ((1 << bits) - 1))
            value >>= bits
        return tuple(reversed(out))


def _split_codes(fmt: str) -> list[str]:
    """``"4sHI"`` -> ``["4s", "H", "I"]``; pad codes (``"4x"``) are kept whole."""
    out, num = [], ""
    for ch in fmt:
        if ch.isdigit():
            num += ch
            continue
        out.append(num + ch)
        num = ""
    return out


def field(name: str, fmt: str, *, default: Any = dataclasses.MISSING, const: Any = dataclasses.MISSING) -> Field:
    """A value field, or with ``const`` a field that holds one constant (a magic, an ident)."""
    if const is not dataclasses.MISSING:
        return Field(name, fmt, CONST, const)
    return Field(name, fmt, VALUE, default)


def u8(name: str, **kw) -> Field:
    return field(name, "B", **kw)


def u16(name: str, **kw) -> Field:
    return field(name, "H", **kw)


def u32(name: str, **kw) -> Field:
    return field(name, "I", **kw)


def i32(name: str, **kw) -> Field:
    return field(name, "i", **kw)


def u64(name: str, **kw) -> Field:
    return field(name, "Q", **kw)


def octets(name: str, n: int, **kw) -> Field:
    return field(name, f"{n}s", **kw)


def reserved(name: str = "reserved", fmt: str = "I") -> Field:
    """A field the spec reserves: zero on save; kept in the typed value (default 0)."""
    return Field(name, fmt, RESERVED)


def count(name: str, fmt: str = "I") -> Field:
    """A field that counts (or measures) a variable part; filled in by the encoder."""
    return Field(name, fmt, COUNT)


def pad(n: int) -> Field:
    """Unnamed padding octets (zero when encoded, not decoded)."""
    return Field(None, f"{n}x", PAD)


# --------------------------------------------------------------------------
# variable parts, after the fixed part
# --------------------------------------------------------------------------


class Array:
    """``count`` entries (the named count field; None: to the end of the body) of ``item``,
    a struct code (entries are ints) or a :class:`Layout` (entries are tuples)."""

    def __init__(self, name: str, item: "str | Layout", count: str | None = None, *, default=()):
        self.name, self.count, self.default = name, count, default
        self.item = item
        self.item_size = item.size if isinstance(item, Layout) else struct.calcsize("<" + item)
        self._structs: dict[tuple[Endian, int], struct.Struct] = {}
        self._flat = isinstance(item, Layout)

    attr = property(lambda self: self.name.replace("-", "_"))

    def entries(self, endian: Endian, n: int) -> struct.Struct:
        """The struct of ``n`` entries (flat: a Layout item's fields one after another)."""
        key = (endian, n)
        s = self._structs.get(key)
        if s is None:
            code = self.item.le.format[1:] if isinstance(self.item, Layout) else self.item
            s = self._structs[key] = struct.Struct(endian.prefix + code * n)
        return s

    def encode(self, endian: Endian, value) -> bytes:
        s = self._structs.get((endian, len(value))) or self.entries(endian, len(value))
        return s.pack(*itertools.chain.from_iterable(value)) if self._flat else s.pack(*value)

    def measure(self, value) -> int:
        return len(value)


class Bytes:
    """Octets counted by the field ``length`` (None: to the end of the body)."""

    def __init__(self, name: str, length: str | None = None, *, default=b""):
        self.name, self.count, self.default = name, length, default

    attr = property(lambda self: self.name.replace("-", "_"))
    item_size = 1

    def encode(self, endian: Endian, value) -> bytes:
        return value

    def measure(self, value) -> int:
        return len(value)


class CString(Bytes):
    """A NUL-terminated string whose length field counts the NUL; the value is without it."""

    def encode(self, endian: Endian, value) -> bytes:
        return value + b"\0"

    def measure(self, value) -> int:
        return len(value) + 1


# --------------------------------------------------------------------------
# the layout
# --------------------------------------------------------------------------


class Layout:
    """A named layout: fixed fields, then variable parts; see the module docstring.

    ``Layout("PAGE_DATA", count("count"), reserved(), tail=(Array("pfns", "Q", "count"), Bytes("pages")))``
    """

    __slots__ = ("name", "fields", "tail", "le", "be", "size", "_offsets", "_by_name", "_parts",
                 "_counted", "_named", "_split", "_known", "_plan", "_readers")

    def __init__(self, name: str, *fields: Field, tail: tuple = ()):
        self.name = name
        self.fields = tuple(fields)
        self.tail = tuple(tail)
        fmt = "".join(f.fmt for f in fields)
        self.le = struct.Struct("<" + fmt)
        self.be = struct.Struct(">" + fmt)
        self.size = self.le.size
        self._offsets: dict[str, int] = {}
        self._by_name: dict[str, Field] = {}
        self._parts: list[tuple[Field, int, int]] = []  # field, first index in the raw tuple, codes
        at = index = 0
        for f in fields:
            if f.name is not None:
                if f.name in self._by_name:
                    raise ValueError(f"{name}: field {f.name} declared twice")
                self._offsets[f.name] = at
                self._by_name[f.name] = f
                self._parts.append((f, index, len(f.codes)))
                index += len(f.codes)
            at += struct.calcsize("<" + f.fmt)
        self._counted = {part.count: part for part in self.tail if part.count is not None}
        self._named = collections.namedtuple("Fixed", [f.attr for f, _, _ in self._parts])
        self._split = any(n > 1 for _, _, n in self._parts)
        self._known = frozenset(self._by_name) | {p.name for p in self.tail}
        # the encoder's plan: per named field, its name, the tail part it counts (None), the
        # value it takes when none is given, and whether it is split over several codes
        plan = []
        for f, _, n in self._parts:
            default = f.default
            if default is dataclasses.MISSING:
                default = b"" if f.fmt.endswith("s") else 0
            counted = self._counted.get(f.name) if f.kind == COUNT else None
            plan.append((f.name, counted, default, f if n > 1 else None))
        self._plan = tuple(plan)
        self._readers = {}
        for counted in self._counted:
            if counted not in self._by_name:
                raise ValueError(f"{name}: no field {counted} to count a variable part")

    # -- the fixed part --------------------------------------------------------
    def of(self, endian: Endian) -> struct.Struct:
        return self.be if endian is Endian.BIG else self.le

    def unpack(self, endian: Endian, data, offset: int = 0) -> tuple:
        """The fixed part's struct codes' values, in wire order (split fields not joined)."""
        return self.of(endian).unpack_from(data, offset)

    def pack(self, endian: Endian, *values) -> bytes:
        return self.of(endian).pack(*values)

    def values(self, endian: Endian, data, offset: int = 0) -> dict[str, Any]:
        """The fixed part by field name (split fields joined)."""
        raw = self.of(endian).unpack_from(data, offset)
        return {f.name: f.join(raw[i:i + n]) for f, i, n in self._parts}

    def named(self, endian: Endian, data, offset: int = 0) -> tuple:
        """The fixed part as a named tuple of the fields' Python names (``conn-id`` is
        ``conn_id``; split fields joined): what a parser reads its fields by."""
        return self.reader(endian)(data, offset)

    def reader(self, endian: Endian):
        """``named`` for one byte order, as a function of ``(data, offset=0)``: what a parser
        binds once per stream for a record type it reads many times."""
        fn = self._readers.get(endian)
        if fn is None:
            unpack_from, named, parts, new = self.of(endian).unpack_from, self._named, self._parts, tuple.__new__
            if self._split:
                def fn(data, offset=0):
                    raw = unpack_from(data, offset)
                    return new(named, [f.join(raw[i:i + n]) for f, i, n in parts])
            else:
                def fn(data, offset=0):
                    return new(named, unpack_from(data, offset))
            self._readers[endian] = fn
        return fn

    def get(self, endian: Endian, data, name: str, base: int = 0):
        """Field ``name`` of the layout at ``base`` in ``data``, or None when ``data`` ends before it
        (what a sniffer reads of a header that may be cut short)."""
        f, at = self._by_name[name], self._offsets[name]
        size = struct.calcsize("<" + f.fmt)
        if len(data) < base + at + size:
            return None
        return f.join(struct.unpack_from(endian.prefix + f.fmt, data, base + at))

    def pack_field(self, endian: Endian, name: str, value) -> bytes:
        """The octets of field ``name`` holding ``value`` (to patch one field of an encoded body)."""
        f = self._by_name[name]
        return struct.pack(endian.prefix + f.fmt, *f.split(value))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def has(self, name: str) -> bool:
        return name in self._by_name

    # -- offsets ---------------------------------------------------------------
    def offset(self, name: str, index: int | None = None) -> int:
        """The octet offset of a fixed field, or of entry ``index`` (default 0) of the
        first variable part (the only one whose place does not depend on the data)."""
        at = self._offsets.get(name)
        if at is not None:
            return at
        if self.tail and self.tail[0].name == name:
            return self.size + (index or 0) * self.tail[0].item_size
        raise KeyError(f"{self.name} has no field {name} at a fixed offset")

    def at(self, base: int, name: str, index: int | None = None) -> int:
        """``base`` (where the layout starts in the stream) plus the offset of ``name``."""
        return base + self.offset(name, index)

    # -- encoding by name ------------------------------------------------------------
    def encode(self, endian: Endian, **values) -> bytes:
        """The fixed part and the variable parts of ``values`` (by field name; missing
        values take their field's default; counts are measured from their parts)."""
        return self.encode_from(endian, values)

    def encode_from(self, endian: Endian, values: dict) -> bytes:
        """:meth:`encode` of a dict of values by field name."""
        if not self._known.issuperset(values):
            unknown = set(values) - self._known
            raise KeyError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        encoder = self._readers.get("encode")
        if encoder is None:
            encoder = self._readers["encode"] = self._compile_encoder()
        return encoder(endian, values)

    def _compile_encoder(self):
        """The encoder of this layout as one straight-line function of ``(endian, values)``
        (what :meth:`encode` does, without a loop over the fields at every call: records
        are encoded by the million for the benchmarks and the corpus)."""
        env: dict[str, Any] = {"BIG": Endian.BIG, "pack_le": self.le.pack, "pack_be": self.be.pack}
        lines = ["def encode(endian, values):"]
        args = []
        for i, (name, counted, default, split) in enumerate(self._plan):
            env[f"d{i}"] = default
            if counted is not None:
                env[f"m{i}"], env[f"c{i}"] = counted.measure, counted.default
                lines.append(f"    v{i} = values[{name!r}] if {name!r} in values "
                             f"else m{i}(values.get({counted.name!r}, c{i}))")
            else:
                lines.append(f"    v{i} = values.get({name!r}, d{i})")
            if split is None:
                args.append(f"v{i}")
            else:
                env[f"s{i}"] = split.split
                args.append(f"*s{i}(v{i})")
        pack = f"(pack_be if endian is BIG else pack_le)({', '.join(args)})"
        if not self.tail:
            lines.append(f"    return {pack}")
        else:
            parts = [pack]
            for j, part in enumerate(self.tail):
                env[f"e{j}"], env[f"t{j}"] = part.encode, part.default
                parts.append(f"e{j}(endian, values.get({part.name!r}, t{j}))")
            lines.append(f"    return b''.join(({', '.join(parts)}))")
        exec("\n".join(lines), env)  # noqa: S102 - code built from this layout's own field names
        return env["encode"]

    def __add__(self, other: "Layout") -> "Layout":
        """Two fixed parts one after the other (a record header and a body's fixed part, read
        in one go by a fast path)."""
        return Layout(f"{self.name} + {other.name}", *self.fields, *other.fields, tail=other.tail)

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, size={self.size})"


# --------------------------------------------------------------------------
# typed values declared by their layout
# --------------------------------------------------------------------------


class Declared:
    """Base of the typed values whose class names a ``LAYOUT``.

    A subclass that sets ``LAYOUT`` becomes a frozen dataclass whose fields
    are the layout's values and variable parts (in wire order), then its
    constants, then its reserved fields (default 0), each under its Python
    name (``conn-id`` is ``conn_id``); counts are not fields, they are
    measured.  ``EXTRA`` adds dataclass fields that are not on the wire
    (``(name, type, default)``), ``FIRST`` such fields before the others; ``ORDER`` (Python
    names) puts the fields in another order than this one.
    ``encode_body(endian)`` and
    ``decode_fixed(endian, data)`` come from the layout.
    """

    LAYOUT: ClassVar[Layout]
    EXTRA: ClassVar[tuple] = ()
    FIRST: ClassVar[tuple] = ()
    ORDER: ClassVar[tuple] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "LAYOUT" not in cls.__dict__:
            return
        layout: Layout = cls.LAYOUT
        order = ([f for f in layout.fields if f.kind == VALUE]
                 + list(layout.tail)
                 + [f for f in layout.fields if f.kind == CONST]
                 + [f for f in layout.fields if f.kind == RESERVED])
        annotations: dict[str, Any] = {}
        wire: list[tuple[str, str]] = []  # (attribute, layout name)
        for name, typ, default in cls.FIRST:
            annotations[name] = typ
            if default is not dataclasses.MISSING:
                setattr(cls, name, default)
        for f in order:
            attr = f.attr
            annotations[attr] = Any
            default = f.default
            if isinstance(default, (tuple, list)):
                default = tuple(default)
            if default is not dataclasses.MISSING and attr not in cls.__dict__:
                setattr(cls, attr, default)
            wire.append((attr, f.name))
        for name, typ, default in cls.EXTRA:
            annotations[name] = typ
            if default is not dataclasses.MISSING:
                setattr(cls, name, default)
        if cls.ORDER:
            annotations = {name: annotations[name] for name in cls.ORDER}
        cls.__annotations__ = annotations
        cls._WIRE = tuple(wire)
        dataclasses.dataclass(frozen=True)(cls)

    def wire_values(self) -> dict[str, Any]:
        """The layout's values of this value, by layout field name."""
        return {name: getattr(self, attr) for attr, name in self._WIRE}

    def encode_body(self, endian: Endian) -> bytes:
        return self.LAYOUT.encode_from(endian, self.wire_values())

    @classmethod
    def decode_fixed(cls, endian: Endian, data, offset: int = 0) -> dict[str, Any]:
        """The fixed part by Python name."""
        raw = cls.LAYOUT.of(endian).unpack_from(data, offset)
        return {f.attr: f.join(raw[i:i + n]) for f, i, n in cls.LAYOUT._parts}

    @classmethod
    def from_fixed(cls, endian: Endian, data, offset: int = 0, **rest) -> "Declared":
        """A value of a type whose layout is all fixed (or whose variable parts are in ``rest``)."""
        fixed = cls.decode_fixed(endian, data, offset)
        kinds = {f.attr: f.kind for f in cls.LAYOUT.fields if f.name is not None}
        return cls(**{k: v for k, v in fixed.items() if kinds[k] != COUNT}, **rest)

    @classmethod
    def offset(cls, name: str, index: int | None = None) -> int:
        return cls.LAYOUT.offset(name, index)
