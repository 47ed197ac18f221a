"""Xenstore migration stream: layouts, typed values and the encoder.

Spec: xenstore-migration.md ("Xenstore Migration").  Every fixed-size part is
a :class:`~.layout.Layout` named after the spec's diagram; every record type
is a frozen dataclass.  Octet strings (paths, tokens, values, quota names) are
``bytes`` *without* their NUL terminator: the encoder appends it and counts it
in the length fields, as the spec's ``path-len``/``wpath-len``/``token-len``
do.  Reserved fields (the socket ``pad``, WATCH_DATA_EXTENDED ``pad``) are kept
so that a dump shows them and a malformed value can be encoded on purpose.

``trailing`` on a record holds octets of the body after its last field.  The
spec gives a body no such octets, but C xenstored counts the record padding in
``len`` (see docs/findings.md), so streams it writes carry up to 7 zero octets
there; keeping them makes ``encode(decode(b)) == b`` hold for those streams
too.  Record padding (after ``len`` octets) is not kept: it is always encoded
as zeros.

This module reports nothing; the parsers and rules live in :mod:`.xenstore`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from .framing import RawRecord, encode_record, padding_length
from .layout import Array, Bytes, CString, Declared, Endian, Layout, count, i32, octets, reserved, u8, u16, u32, u64

IDENT = b"xenstore"
VERSIONS = (1, 2)
DOMID_INVALID = 0x7FF4
DEPTH_UNLIMITED = 0xFFFF


class RecordType(enum.IntEnum):
    """The ``type`` field of a record ("Records")."""

    END = 0
    GLOBAL_DATA = 1
    CONNECTION_DATA = 2
    WATCH_DATA = 3
    TRANSACTION_DATA = 4
    NODE_DATA = 5
    GLOBAL_QUOTA_DATA = 6
    DOMAIN_DATA = 7
    WATCH_DATA_EXTENDED = 8


#: Record types valid only from this version on ("Records", "WATCH_DATA_EXTENDED").
MIN_VERSION = {RecordType.WATCH_DATA_EXTENDED: 2}


class ConnType(enum.IntEnum):
    SHARED_RING = 0
    SOCKET = 1


#: CONNECTION_DATA ``fields`` flag: ``unique-id`` present.
FIELD_UNIQUE_ID = 0x0001
#: Node permission specifier ``flags``: stale permission, the only flag defined.
PERM_STALE = 0x01
PERM_FLAGS_KNOWN = PERM_STALE
#: The ``flags`` octets that have no undefined bit.
GOOD_PERM_FLAGS = bytes(f for f in range(256) if not f & ~PERM_FLAGS_KNOWN)
#: NODE_DATA ``access`` bits.
ACCESS_READ = 0x0001
ACCESS_WRITTEN = 0x0002
ACCESS_KNOWN = ACCESS_READ | ACCESS_WRITTEN
#: Header ``flags``: bit 0 is the endianness, bits 1-31 are reserved.
FLAG_ENDIAN = 0x1
#: Permission letters of a node permission specifier (``perm``).
PERM_LETTERS = b"wrbn"

# -- layouts, named after the spec's diagrams ---------------------------------
#: ``trailing``: the octets of a body after its last field (see the module docstring)
TRAILING = Bytes("trailing")
HEADER = Layout("Header", octets("ident", 8, const=IDENT), u32("version"), u32("flags"))  # always big-endian
#: The fixed fields, ``in-data`` and ``out-data``; when ``fields`` has FIELD_UNIQUE_ID, padding
#: to a multiple of 8 octets of the body and :data:`UNIQUE_ID` follow (a part no count places).
CONNECTION_DATA = Layout("CONNECTION_DATA", u32("conn-id"), u16("conn-type"), u16("fields"),
                         octets("conn-spec", 8), count("in-data-len", "H"), u16("out-resp-len"),
                         count("out-data-len"),
                         tail=(Bytes("in-data", "in-data-len"), Bytes("out-data", "out-data-len")))
SHARED_RING_SPEC = Layout("conn-spec (shared ring)", u16("domid"), u16("tdomid"), u32("evtchn"))
SOCKET_SPEC = Layout("conn-spec (socket)", i32("socket-fd"), reserved("pad"))
UNIQUE_ID = Layout("unique-id", u64("unique-id"))
NODE_PERMISSION = Layout("node permission specifier", u8("perm"), u8("flags"), u16("domid"))
NODE_DATA = Layout("NODE_DATA", u32("conn-id"), u32("tx-id"), count("path-len", "H"), count("value-len", "H"),
                   u16("access"), count("perm-count", "H"),
                   tail=(Array("perms", NODE_PERMISSION, "perm-count"), CString("path", "path-len"),
                         Bytes("value", "value-len"), TRAILING))
QUOTA_VAL = Layout("quota-val", u32("quota-val"))
#: quota-val (one per quota) then quota-names (NUL-terminated, running to the end of the body)
_QUOTAS = (Array("quota-val", "I"), Bytes("quota-names"), TRAILING)
GLOBAL_QUOTA_DATA = Layout("GLOBAL_QUOTA_DATA", u16("n-dom-quota"), u16("n-glob-quota"), tail=_QUOTAS)
DOMAIN_DATA = Layout("DOMAIN_DATA", u16("domain-id"), u16("n-quota"), u32("features"), tail=_QUOTAS)


# -- typed values ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Header:
    version: int = 2
    endian: Endian = Endian.LITTLE
    reserved_flags: int = 0  # flags bits 1-31, as a mask with bit 0 clear
    ident: bytes = IDENT

    @property
    def flags(self) -> int:
        return (self.reserved_flags & ~FLAG_ENDIAN) | self.endian.bit


class GlobalData(Declared):
    LAYOUT = Layout("GLOBAL_DATA", i32("rw-socket-fd", default=-1), i32("evtchn-fd", default=-1), tail=(TRAILING,))


@dataclass(frozen=True, slots=True)
class SharedRing:
    """``conn-spec`` of a shared ring connection."""

    domid: int
    evtchn: int
    tdomid: int = DOMID_INVALID


@dataclass(frozen=True, slots=True)
class Socket:
    """``conn-spec`` of a socket connection."""

    socket_fd: int
    pad: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionData:
    conn_id: int
    spec: SharedRing | Socket
    in_data: bytes = b""
    out_data: bytes = b""
    out_resp_len: int = 0
    unique_id: int | None = None  # present iff ``fields`` has FIELD_UNIQUE_ID
    trailing: bytes = b""

    @property
    def conn_type(self) -> int:
        return ConnType.SOCKET if isinstance(self.spec, Socket) else ConnType.SHARED_RING

    @property
    def fields(self) -> int:
        return FIELD_UNIQUE_ID if self.unique_id is not None else 0

    def encode_body(self, endian: Endian) -> bytes:
        spec = self.spec
        if isinstance(spec, Socket):
            conn_spec = SOCKET_SPEC.encode_from(endian, {"socket-fd": spec.socket_fd, "pad": spec.pad})
        else:
            conn_spec = SHARED_RING_SPEC.encode(endian, domid=spec.domid, tdomid=spec.tdomid, evtchn=spec.evtchn)
        body = CONNECTION_DATA.encode_from(endian, {
            "conn-id": self.conn_id, "conn-type": self.conn_type, "fields": self.fields,
            "conn-spec": conn_spec, "out-resp-len": self.out_resp_len,
            "in-data": self.in_data, "out-data": self.out_data})
        if self.unique_id is not None:
            body += bytes(padding_length(len(body))) + UNIQUE_ID.encode_from(endian, {"unique-id": self.unique_id})
        return body + self.trailing


class WatchData(Declared):
    LAYOUT = Layout("WATCH_DATA", u32("conn-id"), count("wpath-len", "H"), count("token-len", "H"),
                    tail=(CString("wpath", "wpath-len", default=dataclasses.MISSING),
                          CString("token", "token-len", default=dataclasses.MISSING), TRAILING))


class WatchDataExtended(Declared):
    LAYOUT = Layout("WATCH_DATA_EXTENDED", u32("conn-id"), count("wpath-len", "H"), count("token-len", "H"),
                    u16("depth", default=DEPTH_UNLIMITED), reserved("pad", "H"),
                    tail=(CString("wpath", "wpath-len", default=dataclasses.MISSING),
                          CString("token", "token-len", default=dataclasses.MISSING), TRAILING))
    ORDER = ("conn_id", "wpath", "token", "depth", "pad", "trailing")


class TransactionData(Declared):
    LAYOUT = Layout("TRANSACTION_DATA", u32("conn-id"), u32("tx-id"), tail=(TRAILING,))


@dataclass(frozen=True, slots=True)
class Permission:
    """A node permission specifier: ``perm`` is one of ``w r b n``."""

    perm: str
    domid: int
    flags: int = 0

    @property
    def stale(self) -> bool:
        return bool(self.flags & PERM_STALE)

    @property
    def wire(self) -> tuple[int, int, int]:
        """The specifier's NODE_PERMISSION values, in wire order."""
        return ord(self.perm), self.flags, self.domid

    @classmethod
    def from_wire(cls, perm: int, flags: int, domid: int) -> "Permission":
        return cls(chr(perm), domid, flags)


@dataclass(frozen=True, slots=True)
class NodeData:
    path: bytes
    value: bytes = b""
    perms: tuple[Permission, ...] = ()
    conn_id: int = 0   # non-zero: a pending node of transaction (conn_id, tx_id)
    tx_id: int = 0
    access: int = 0
    trailing: bytes = b""

    @property
    def pending(self) -> bool:
        return self.conn_id != 0

    @property
    def deleted(self) -> bool:
        """A node deleted in a pending transaction (no permissions)."""
        return self.pending and not self.perms

    def encode_body(self, endian: Endian) -> bytes:
        return NODE_DATA.encode_from(endian, {
            "conn-id": self.conn_id, "tx-id": self.tx_id, "access": self.access,
            "perms": [p.wire for p in self.perms], "path": self.path, "value": self.value,
            "trailing": self.trailing})


@dataclass(frozen=True, slots=True)
class Quota:
    name: bytes
    value: int  # 0 means unlimited


def _quota_parts(quota: tuple[Quota, ...]) -> dict:
    return {"quota-val": [q.value for q in quota], "quota-names": b"".join(q.name + b"\0" for q in quota)}


@dataclass(frozen=True, slots=True)
class GlobalQuotaData:
    dom_quota: tuple[Quota, ...] = ()
    glob_quota: tuple[Quota, ...] = ()
    trailing: bytes = b""

    def encode_body(self, endian: Endian) -> bytes:
        return GLOBAL_QUOTA_DATA.encode_from(endian, {
            "n-dom-quota": len(self.dom_quota), "n-glob-quota": len(self.glob_quota),
            **_quota_parts(self.dom_quota + self.glob_quota), "trailing": self.trailing})


@dataclass(frozen=True, slots=True)
class DomainData:
    domid: int
    quota: tuple[Quota, ...] = ()
    features: int = 0  # valid from version 2 only; written as 0 in version 1
    trailing: bytes = b""

    def encode_body(self, endian: Endian) -> bytes:
        return DOMAIN_DATA.encode_from(endian, {
            "domain-id": self.domid, "n-quota": len(self.quota), "features": self.features,
            **_quota_parts(self.quota), "trailing": self.trailing})


#: The typed values and their record types; each value's ``encode_body`` is its layout's encoder.
RECORD_TYPES = {GlobalData: RecordType.GLOBAL_DATA, ConnectionData: RecordType.CONNECTION_DATA,
                WatchData: RecordType.WATCH_DATA, WatchDataExtended: RecordType.WATCH_DATA_EXTENDED,
                TransactionData: RecordType.TRANSACTION_DATA, NodeData: RecordType.NODE_DATA,
                GlobalQuotaData: RecordType.GLOBAL_QUOTA_DATA, DomainData: RecordType.DOMAIN_DATA}
GLOBAL_DATA, WATCH_DATA, WATCH_DATA_EXTENDED, TRANSACTION_DATA = (
    GlobalData.LAYOUT, WatchData.LAYOUT, WatchDataExtended.LAYOUT, TransactionData.LAYOUT)

Record = (GlobalData | ConnectionData | WatchData | WatchDataExtended | TransactionData
          | NodeData | GlobalQuotaData | DomainData | RawRecord)


@dataclass(frozen=True, slots=True)
class XenstoreStream:
    """A whole stream: the header and its records; END is implied at the end."""

    header: Header = field(default_factory=Header)
    records: tuple = ()


# -- encoding -------------------------------------------------------------------
def encode_body(rec, endian: Endian) -> tuple[int, bytes]:
    """``(type, body)`` of a typed record value."""
    rtype = RECORD_TYPES.get(type(rec))
    if rtype is not None:
        return rtype, rec.encode_body(endian)
    if isinstance(rec, RawRecord):  # a type reserved for future use, kept raw
        return rec.record_type, rec.body
    raise TypeError(f"not a xenstore record: {rec!r}")


def encode_header(header: Header) -> bytes:
    return HEADER.be.pack(header.ident, header.version, header.flags)


def encode_one(rec, endian: Endian) -> bytes:
    """One whole record: header, body, zero padding."""
    rtype, body = encode_body(rec, endian)
    return encode_record(rtype, body, endian)


END_RECORD = {e: encode_record(RecordType.END, b"", e) for e in Endian}


def encode(stream: XenstoreStream) -> bytes:
    """The octets of ``stream``: header, records, END."""
    endian = stream.header.endian
    parts = [encode_header(stream.header)]
    parts.extend(encode_one(rec, endian) for rec in stream.records)
    parts.append(END_RECORD[endian])
    return b"".join(parts)
