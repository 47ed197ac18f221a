"""Xenstore migration streams (versions 1 and 2, both byte orders): a
constructive builder and one-rule mutations.

The builder keeps the cross-record rules by construction: conn-ids are
defined before watches, transactions and pending nodes use them; committed
nodes come parents first (the root is known); DOMAIN_DATA names only
domains named before, once each."""

from __future__ import annotations

import struct
from dataclasses import replace

from xenstream.reference import xenstore as XS
from xenstream.reference.framing import RECORD_HEADER, encode_record, padding_length
from xenstream.reference.layout import Endian
from xenstream.reference.xenstore_records import (
    DOMID_INVALID, PERM_STALE, ConnectionData, DomainData, GlobalData, GlobalQuotaData, Header, NodeData, Permission,
    Quota, RecordType, SharedRing, Socket, TransactionData, WatchData, WatchDataExtended, encode_body,
    encode_header,
)

from xenstream.reference.build import patch

from ._draw import Draw, pick
from ._registry import mutation, valid_builder

FORMAT = "xenstore"
LE, BE = Endian.LITTLE, Endian.BIG
HDR = 16
NAME = b"abcdefghijklmnopqrstuvwxyz0123456789-_"
TEXT = bytes(range(0x21, 0x7F))


class Raw:
    """A record with any type, body, ``len`` and padding."""

    def __init__(self, rtype: int, body: bytes, *, length: int | None = None, padding: bytes | None = None):
        self.rtype, self.body, self.length, self.padding = rtype, body, length, padding


class Stream:
    """Header fields and a list of typed or :class:`Raw` records; END appended by :meth:`encode`."""

    def __init__(self, version: int, endian: Endian, records: list, flags: int | None = None,
                 ident: bytes = b"xenstore"):
        self.version, self.endian, self.records, self.flags, self.ident = version, endian, records, flags, ident

    def frame(self, rec) -> bytes:
        if isinstance(rec, Raw):
            length = len(rec.body) if rec.length is None else rec.length
            pad = bytes(padding_length(len(rec.body))) if rec.padding is None else rec.padding
            return RECORD_HEADER.pack(self.endian, rec.rtype, length) + rec.body + pad
        rtype, body = encode_body(rec, self.endian)
        return encode_record(rtype, body, self.endian)

    def encode(self, end: bytes | None = None) -> bytes:
        hdr = encode_header(Header(self.version, self.endian, ident=self.ident))
        if self.flags is not None:
            at = XS.HEADER.offset("flags")
            hdr = hdr[:at] + XS.HEADER.pack_field(Endian.BIG, "flags", self.flags) + hdr[XS.HEADER.size:]
        parts = [hdr] + [self.frame(r) for r in self.records]
        parts.append(encode_record(RecordType.END, b"", self.endian) if end is None else end)
        return b"".join(parts)

    def offsets(self) -> list[int]:
        out, at = [], HDR
        for r in self.records:
            out.append(at)
            at += len(self.frame(r))
        out.append(at)  # END
        return out

    def body(self, rec) -> tuple[int, bytes]:
        return (rec.rtype, rec.body) if isinstance(rec, Raw) else encode_body(rec, self.endian)

    def find(self, cls) -> list[int]:
        return [i for i, r in enumerate(self.records) if isinstance(r, cls)]

    def copy(self, records=None) -> "Stream":
        return Stream(self.version, self.endian, list(self.records if records is None else records),
                      self.flags, self.ident)


def quotas(d: Draw, lo: int, hi: int) -> tuple[Quota, ...]:
    return tuple(Quota(d.bytes(1, 10, NAME), d.int(0, 1 << 20)) for _ in range(d.int(lo, hi)))


def perms(d: Draw, owner: int) -> tuple[Permission, ...]:
    out = [Permission(d.choice("nrwb"), owner, d.choice([0, 0, 1]))]
    for _ in range(d.int(0, 2)):
        out.append(Permission(d.choice("rwbn"), d.int(0, 200), d.choice([0, 1])))
    return tuple(out)


def build(d: Draw, *, version=None, byteorder=None, records=None, live_update=None, transactions=None,
          connections=None) -> Stream:
    version = pick(d, version, lambda: d.choice([2, 1]))
    endian = pick(d, byteorder if byteorder is None or isinstance(byteorder, Endian) else Endian(byteorder),
                  lambda: d.choice([LE, BE]))
    live = pick(d, live_update, lambda: d.bool())
    nconn = pick(d, connections, lambda: d.int(0, 3))
    nnodes = pick(d, records, lambda: d.int(0, 6))
    recs: list = []
    domids: list[int] = []
    if live:
        recs.append(GlobalData(d.int(-1, 64), d.int(-1, 64)))
    if d.bool():
        recs.append(GlobalQuotaData(quotas(d, 0, 3), quotas(d, 0, 2)))
    conns = []
    conn_id = 0
    for _ in range(nconn):
        conn_id += d.int(1, 3)
        out_data = d.bytes(0, 20)
        if d.bool():
            domid = d.int(1, 300)
            tdomid = d.choice([DOMID_INVALID, d.int(1, 300)])
            domids += [domid] + ([tdomid] if tdomid != DOMID_INVALID else [])
            spec, uid = SharedRing(domid, d.int(0, 1000), tdomid), d.choice([None, d.int(0, 1 << 64 - 1)])
        else:
            spec, uid = Socket(d.int(-1, 100)), None
        recs.append(ConnectionData(conn_id, spec, d.bytes(0, 20), out_data, d.int(0, len(out_data)), uid))
        conns.append(conn_id)
    for c in conns:
        for _ in range(d.int(0, 2)):
            wpath, token = d.bytes(1, 24, TEXT), d.bytes(1, 12, TEXT)
            if version >= 2 and d.bool():
                recs.append(WatchDataExtended(c, wpath, token, d.choice([0xFFFF, d.int(0, 10)])))
            else:
                recs.append(WatchData(c, wpath, token))
    known = [b"/"]
    for _ in range(nnodes):
        parent = d.choice(known)
        path = parent.rstrip(b"/") + b"/" + d.bytes(1, 8, NAME)
        owner = d.int(0, 300)
        domids.append(owner)
        recs.append(NodeData(path, d.bytes(0, 16), perms(d, owner)))
        known.append(path)
    if conns and pick(d, transactions, lambda: d.bool()):
        tx_ids = {}
        for c in d.sample(conns, 1, len(conns)):
            tx_ids[c] = d.int(1, 1 << 32 - 1)
            recs.append(TransactionData(c, tx_ids[c]))
        for _ in range(d.int(0, 3)):
            c = d.choice(sorted(tx_ids))
            path = d.choice(known).rstrip(b"/") + b"/" + d.bytes(1, 6, NAME)
            if d.int(0, 3) == 0:
                recs.append(NodeData(path, b"", (), c, tx_ids[c], 0))
            else:
                recs.append(NodeData(path, d.bytes(0, 8), perms(d, d.int(0, 300)), c, tx_ids[c], d.int(0, 3)))
    for domid in d.sample(sorted(set(domids)), 0, 3):
        recs.append(DomainData(domid, quotas(d, 0, 2), d.int(0, 3) if version >= 2 else 0))
    return Stream(version, endian, recs)


def describe(s: Stream) -> str:
    return f"xenstore v{s.version} {s.endian.value}-endian stream, {len(s.records)} records"


@valid_builder(FORMAT)
def valid(d: Draw, **opts):
    s = build(d, **opts)
    return s.encode(), "valid " + describe(s)


def insert(d: Draw, s: Stream, rec, lo: int = 0) -> tuple[Stream, int]:
    i = d.int(lo, len(s.records))
    recs = list(s.records)
    recs.insert(i, rec)
    return s.copy(recs), i


def put(s: Stream, i: int, rec) -> Stream:
    recs = list(s.records)
    recs[i] = rec
    return s.copy(recs)


def with_conn(d: Draw, **opts) -> tuple[Stream, int, int]:
    """A stream with at least one connection: (stream, its index, its conn-id)."""
    s = build(d, connections=(1, 3), **opts)
    i = d.choice(s.find(ConnectionData))
    return s, i, s.records[i].conn_id


def after_conns(s: Stream) -> int:
    c = s.find(ConnectionData)
    return c[-1] + 1 if c else 0


def unused_conn(s: Stream) -> int:
    used = {r.conn_id for r in s.records if isinstance(r, ConnectionData)}
    return max(used, default=0) + 1 + 7


# --------------------------------------------------------------------------
# padding
# --------------------------------------------------------------------------


@mutation(FORMAT, "padding", XS.PADDING)
def _padding(d: Draw):
    s = build(d)
    cands = [i for i, r in enumerate(s.records) if padding_length(len(s.body(r)[1]))]
    if not cands or d.bool():
        node = NodeData(b"/" + d.bytes(1, 6, NAME), d.bytes(1, 7), perms(d, 0))
        if not padding_length(len(s.body(node)[1])):
            node = replace(node, value=node.value + b"+")
        s, i = insert(d, s, node, after_conns(s))
        cands = [i]
    i = d.choice(cands)
    n = len(s.body(s.records[i])[1])
    at = s.offsets()[i] + RECORD_HEADER.size + n + d.int(0, padding_length(n) - 1)
    data = s.encode()
    value = d.int(1, 255)
    return data[:at] + bytes([value]) + data[at + 1:], f"record padding octet at {at} is 0x{value:02x}"


@mutation(FORMAT, "padding", XS.TRUNCATED, "padding_missing")
def _padding_missing(d: Draw):
    s = build(d)
    s, i = insert(d, s, NodeData(b"/q", d.bytes(0, 8) + b"x", perms(d, 0)), len(s.records))
    n = len(s.body(s.records[i])[1])
    if not padding_length(n):
        s.records[i] = NodeData(b"/q", b"xy", perms(d, 0))
        n = len(s.body(s.records[i])[1])
    end = s.offsets()[i] + RECORD_HEADER.size + n
    data = s.encode()
    return data[:end] + data[end + padding_length(n):], \
        "the padding of the last record is missing: END is read as padding and the input ends"


@mutation(FORMAT, "padding", XS.BODY_EXCESS, "padding_counted_in_len")
def _padding_in_len(d: Draw):
    s = build(d)
    cands = [i for i, r in enumerate(s.records) if padding_length(len(s.body(r)[1]))]
    if not cands:
        s, i = insert(d, s, NodeData(b"/r", b"abc", perms(d, 0)), len(s.records))
        cands = [i]
    i = d.choice(cands)
    rtype, body = s.body(s.records[i])
    s = put(s, i, Raw(rtype, body + bytes(padding_length(len(body)))))
    return s.encode(), "len counts the record padding, as C xenstored writes it"


@mutation(FORMAT, "padding", XS.UNIQUE_ID_PADDING)
def _unique_id_padding(d: Draw):
    s = build(d)
    rec = ConnectionData(unused_conn(s), SharedRing(d.int(1, 50), 3), d.bytes(0, 5), b"", 0, d.int(0, 1 << 40))
    s, i = insert(d, s, rec, after_conns(s))
    rtype, body = s.body(rec)
    pad_at = XS.CONNECTION_DATA.size + len(rec.in_data)
    npad = padding_length(pad_at)
    if not npad:
        rec = replace(rec, in_data=rec.in_data + b"z")
        rtype, body = s.body(rec)
        pad_at, npad = pad_at + 1, padding_length(pad_at + 1)
    k = pad_at + d.int(0, npad - 1)
    body = body[:k] + bytes([d.int(1, 255)]) + body[k + 1:]
    return put(s, i, Raw(rtype, body)).encode(), "non-zero padding before unique-id"


# --------------------------------------------------------------------------
# reserved
# --------------------------------------------------------------------------


@mutation(FORMAT, "reserved", XS.FLAGS_RESERVED)
def _flags(d: Draw):
    s = build(d)
    bits = d.int(1, (1 << 31) - 1) << 1
    s.flags = bits | s.endian.bit
    return s.encode(), f"header flags has reserved bits 0x{bits:08x}"


@mutation(FORMAT, "reserved", XS.SOCKET_PAD)
def _socket_pad(d: Draw):
    s = build(d)
    s, _ = insert(d, s, ConnectionData(unused_conn(s), Socket(d.int(0, 9), d.int(1, 0xFFFFFFFF))), after_conns(s))
    return s.encode(), "socket conn-spec pad is not zero"


@mutation(FORMAT, "reserved", XS.WEXT_PAD)
def _wext_pad(d: Draw):
    s, _, c = with_conn(d, version=2)
    s, _ = insert(d, s, WatchDataExtended(c, b"/a", b"t", 1, d.int(1, 0xFFFF)), after_conns(s))
    return s.encode(), "WATCH_DATA_EXTENDED pad is not zero"


def _connection_with(d: Draw, s: Stream, name: str, value: int) -> bytes:
    """``s`` with a new shared-ring CONNECTION_DATA whose field ``name`` is ``value``."""
    rtype, body = s.body(ConnectionData(unused_conn(s), SharedRing(7, 1)))
    layout = XS.CONNECTION_DATA
    body = patch(body, layout.offset(name), layout.pack_field(s.endian, name, value))
    s, _ = insert(d, s, Raw(rtype, body), after_conns(s))
    return s.encode()


@mutation(FORMAT, "reserved", XS.FIELDS_RESERVED)
def _fields(d: Draw):
    s = build(d)
    bits = d.int(1, 0x7FFF) << 1
    return _connection_with(d, s, "fields", bits), f"CONNECTION_DATA fields has reserved flags 0x{bits:04x}"


@mutation(FORMAT, "reserved", XS.CONN_TYPE_RESERVED)
def _conn_type(d: Draw):
    s = build(d)
    t = d.int(2, 0xFFFF)
    return _connection_with(d, s, "conn-type", t), f"conn-type 0x{t:04x} is reserved"


@mutation(FORMAT, "reserved", XS.PERM_FLAGS_RESERVED)
def _perm_flags(d: Draw):
    s = build(d)
    p = (Permission("n", 0, d.int(2, 255)),)
    s, _ = insert(d, s, NodeData(b"/f" + d.bytes(0, 4, NAME), b"", p), after_conns(s))
    return s.encode(), "a permission with undefined flags"


@mutation(FORMAT, "reserved", XS.TX_ID_COMMITTED)
def _tx_committed(d: Draw):
    s = build(d)
    s, _ = insert(d, s, NodeData(b"/t", b"", perms(d, 0), 0, d.int(1, 0xFFFFFFFF)), after_conns(s))
    return s.encode(), "a committed node with a tx-id"


@mutation(FORMAT, "reserved", XS.ACCESS_COMMITTED)
def _access_committed(d: Draw):
    s = build(d)
    s, _ = insert(d, s, NodeData(b"/a", b"", perms(d, 0), 0, 0, d.int(1, 3)), after_conns(s))
    return s.encode(), "a committed node with access bits"


@mutation(FORMAT, "reserved", XS.ACCESS_RESERVED)
def _access_reserved(d: Draw):
    s, _, c = with_conn(d)
    s, i = insert(d, s, TransactionData(c, 99), after_conns(s))
    s, _ = insert(d, s, NodeData(b"/x", b"v", perms(d, 0), c, 99, d.int(4, 0xFFFF)), i + 1)
    return s.encode(), "a pending node with undefined access bits"


@mutation(FORMAT, "reserved", XS.DOM_FEATURES_V1)
def _features_v1(d: Draw):
    s, _, _ = with_conn(d, version=1)
    ring = [r for r in s.records if isinstance(r, ConnectionData) and isinstance(r.spec, SharedRing)]
    if not ring:
        s, _ = insert(d, s, ConnectionData(unused_conn(s), SharedRing(42, 1)), after_conns(s))
        ring = [r for r in s.records if isinstance(r, ConnectionData) and isinstance(r.spec, SharedRing)]
    domid = ring[0].spec.domid
    recs = [r for r in s.records if not (isinstance(r, DomainData) and r.domid == domid)]
    recs.append(DomainData(domid, (), d.int(1, 0xFFFFFFFF)))
    return s.copy(recs).encode(), "DOMAIN_DATA features in a version 1 stream"


# --------------------------------------------------------------------------
# strings
# --------------------------------------------------------------------------


def _bad_string(d: Draw) -> tuple[bytes, str]:
    """(string octets as written, with its length counting them), what is wrong."""
    kind = d.choice(["no_nul", "inner_nul", "empty"])
    text = d.bytes(1, 10, TEXT)
    if kind == "no_nul":
        return text, "without its NUL (the length does not count one)"
    if kind == "inner_nul":
        k = d.int(0, len(text) - 1)
        return text[:k] + b"\0" + text[k:] + b"\0", "with a NUL inside"
    return b"", "of length 0"


def _watch(extended: bool, which: str, rule: str):
    def fn(d: Draw):
        s, _, c = with_conn(d, version=2 if extended else None)
        bad, what = _bad_string(d)
        good = d.bytes(1, 10, TEXT) + b"\0"
        wpath, token = (bad, good) if which == "wpath" else (good, bad)
        if extended:
            fixed = XS.WATCH_DATA_EXTENDED.pack(s.endian, c, len(wpath), len(token), 0xFFFF, 0)
            rtype = RecordType.WATCH_DATA_EXTENDED
        else:
            fixed = XS.WATCH_DATA.pack(s.endian, c, len(wpath), len(token))
            rtype = RecordType.WATCH_DATA
        s, _ = insert(d, s, Raw(rtype, fixed + wpath + token), after_conns(s))
        return s.encode(), f"{rtype.name} {which} {what}"
    mutation(FORMAT, "strings", rule, f"{'wext' if extended else 'watch'}_{which}_nul")(fn)


_watch(False, "wpath", XS.WATCH_WPATH_NUL)
_watch(False, "token", XS.WATCH_TOKEN_NUL)
_watch(True, "wpath", XS.WEXT_WPATH_NUL)
_watch(True, "token", XS.WEXT_TOKEN_NUL)


@mutation(FORMAT, "strings", XS.PATH_NUL)
def _path_nul(d: Draw):
    s = build(d)
    bad, what = _bad_string(d)
    if bad[:1] not in (b"", b"/") and d.bool():
        bad = b"/" + bad
    value = d.bytes(0, 6)
    perm = XS.NODE_PERMISSION.pack(s.endian, ord("n"), 0, 0)
    fixed = XS.NODE_DATA.pack(s.endian, 0, 0, len(bad), len(value), 0, 1)
    s, _ = insert(d, s, Raw(RecordType.NODE_DATA, fixed + perm + bad + value), after_conns(s))
    return s.encode(), f"NODE_DATA path {what}"


def _names(rule: str, cls):
    def fn(d: Draw):
        s = build(d)
        q = quotas(d, 1, 3)
        names = b"".join(x.name + b"\0" for x in q)
        vals = b"".join(XS.QUOTA_VAL.pack(s.endian, x.value) for x in q)
        kind = d.choice(["fewer", "more"])
        if kind == "fewer":
            count = len(q) + d.int(1, 3)
            vals += bytes(XS.QUOTA_VAL.size * (count - len(q)))
        else:
            count = len(q)
            names += d.bytes(1, 6, NAME) + b"\0"
        if cls is GlobalQuotaData:
            nd = d.int(0, count)
            fixed = XS.GLOBAL_QUOTA_DATA.pack(s.endian, nd, count - nd)
            recs = [r for r in s.records if not isinstance(r, GlobalQuotaData)]
            s = s.copy(recs)
            rec = Raw(RecordType.GLOBAL_QUOTA_DATA, fixed + vals + names)
            s, _ = insert(d, s, rec, 0)
        else:
            domid = d.int(301, 400)  # named by the node inserted before it
            s, i = insert(d, s, NodeData(b"/d%d" % domid, b"", (Permission("n", domid),)), after_conns(s))
            fixed = XS.DOMAIN_DATA.pack(s.endian, domid, count, 0)
            s, _ = insert(d, s, Raw(RecordType.DOMAIN_DATA, fixed + vals + names), i + 1)
        return s.encode(), f"{cls.__name__}: {kind} quota names than values"
    mutation(FORMAT, "strings", rule, f"{cls.__name__}_names_count")(fn)


_names(XS.GQ_NAMES, GlobalQuotaData)
_names(XS.DOM_NAMES, DomainData)


# --------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------


@mutation(FORMAT, "framing", XS.TRUNCATED)
def _truncated(d: Draw):
    s = build(d)
    data = s.encode()
    cut = d.int(0, len(data) - 1)
    return data[:cut], f"input of {len(data)} octets cut at {cut}"


@mutation(FORMAT, "framing", XS.TRAILING_DATA)
def _trailing(d: Draw):
    s = build(d)
    return s.encode() + d.bytes(1, 16), "octets follow END"


@mutation(FORMAT, "framing", XS.END_LENGTH)
def _end_length(d: Draw):
    s = build(d)
    body = d.bytes(1, 12)
    return s.encode(end=RECORD_HEADER.pack(s.endian, 0, len(body)) + body + bytes(padding_length(len(body)))), \
        f"END with a body of {len(body)} octets"


@mutation(FORMAT, "framing", XS.TYPE_RESERVED)
def _type_reserved(d: Draw):
    s = build(d)
    t = d.choice([9, d.int(9, 0xFFFFFFFF)])
    s, _ = insert(d, s, Raw(t, d.bytes(0, 12)))
    return s.encode(), f"record type 0x{t:08x} is reserved"


@mutation(FORMAT, "framing", XS.BODY_SHORT)
def _body_short(d: Draw):
    s = build(d, records=(1, 6))
    recs = s.records
    cands = []
    for i, r in enumerate(recs):
        rtype, body = s.body(r)
        if isinstance(r, NodeData) and not r.pending:
            prefix = r.path.rstrip(b"/") + b"/"
            if any(isinstance(o, NodeData) and o.path.startswith(prefix) for o in recs[i + 1:]):
                continue  # its children would lose their parent
            cands.append((i, 0, len(body)))
        elif isinstance(r, (NodeData, WatchData, WatchDataExtended, GlobalData)):
            cands.append((i, 0, len(body)))
        elif isinstance(r, DomainData):
            cands.append((i, 0, XS.DOMAIN_DATA.offset("quota-val", len(r.quota))))
        elif isinstance(r, GlobalQuotaData):
            cands.append((i, 0, XS.GLOBAL_QUOTA_DATA.offset("quota-val", len(r.dom_quota) + len(r.glob_quota))))
        elif isinstance(r, ConnectionData) and len(body) > XS.CONNECTION_DATA.size:
            cands.append((i, XS.CONNECTION_DATA.size, len(body)))
    if not cands:
        s, i = insert(d, s, WatchData(0, b"/w", b"t"), len(recs))
        rtype, body = s.body(s.records[i])
        cands = [(i, 0, 4)]  # cut inside the fixed fields: conn-id is never read
    i, lo, hi = d.choice(cands)
    rtype, body = s.body(s.records[i])
    cut = d.int(lo, hi - 1)
    s = put(s, i, Raw(rtype, body[:cut]))
    return s.encode(), f"{RecordType(rtype).name} len {cut} is shorter than its fields declare"


@mutation(FORMAT, "framing", XS.BODY_EXCESS)
def _body_excess(d: Draw):
    s = build(d, records=(1, 6))
    cands = [i for i, r in enumerate(s.records) if not isinstance(r, (DomainData, GlobalQuotaData))]
    i = d.choice(cands)
    rtype, body = s.body(s.records[i])
    s = put(s, i, Raw(rtype, body + d.bytes(1, 12)))
    return s.encode(), f"{RecordType(rtype).name} body has octets after its last field"


# --------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------


@mutation(FORMAT, "semantics", XS.IDENT_RULE)
def _ident(d: Draw):
    s = build(d)
    s.ident = d.choice([b"xenstorf", b"XENSTORE", b"\0" * 8, d.bytes(8, 8)])
    if s.ident == b"xenstore":
        s.ident = b"xenstorx"
    return s.encode(), f"header ident {s.ident!r}"


@mutation(FORMAT, "semantics", XS.VERSION_RULE)
def _version(d: Draw):
    s = build(d, version=2, connections=0)
    s.version = d.choice([0, 3, d.int(3, 0xFFFFFFFF)])
    return s.encode(), f"header version {s.version}"


@mutation(FORMAT, "semantics", XS.CONN_ID_ZERO)
def _conn_zero(d: Draw):
    s = build(d)
    s, _ = insert(d, s, ConnectionData(0, Socket(3)), after_conns(s))
    return s.encode(), "CONNECTION_DATA conn-id 0"


@mutation(FORMAT, "semantics", XS.CONN_ID_DUPLICATE)
def _conn_dup(d: Draw):
    s, i, c = with_conn(d)
    s, _ = insert(d, s, ConnectionData(c, Socket(4)), i + 1)
    return s.encode(), f"two CONNECTION_DATA with conn-id {c}"


@mutation(FORMAT, "semantics", XS.OUT_RESP_LEN)
def _out_resp(d: Draw):
    s = build(d)
    out = d.bytes(0, 8)
    s, _ = insert(d, s, ConnectionData(unused_conn(s), Socket(5), b"", out, len(out) + d.int(1, 100)),
                  after_conns(s))
    return s.encode(), "out-resp-len larger than out-data-len"


@mutation(FORMAT, "semantics", XS.UNIQUE_ID_SOCKET)
def _unique_id_socket(d: Draw):
    s = build(d)
    s, _ = insert(d, s, ConnectionData(unused_conn(s), Socket(5), unique_id=d.int(0, 1 << 40)), after_conns(s))
    return s.encode(), "unique-id on a socket connection"


def _conn_unknown(rule: str, make, name: str):
    def fn(d: Draw):
        s = build(d, version=2)
        c = unused_conn(s) + d.int(0, 5)
        s, _ = insert(d, s, make(d, c), after_conns(s))
        return s.encode(), f"{name} names conn-id {c}, which no earlier CONNECTION_DATA defines"
    mutation(FORMAT, "semantics", rule, f"{name.lower()}_conn_unknown")(fn)


_conn_unknown(XS.WATCH_CONN_UNKNOWN, lambda d, c: WatchData(c, b"/w", b"t"), "WATCH_DATA")
_conn_unknown(XS.WEXT_CONN_UNKNOWN, lambda d, c: WatchDataExtended(c, b"/w", b"t"), "WATCH_DATA_EXTENDED")
_conn_unknown(XS.TX_CONN_UNKNOWN, lambda d, c: TransactionData(c, d.int(1, 9)), "TRANSACTION_DATA")
_conn_unknown(XS.NODE_CONN_UNKNOWN, lambda d, c: NodeData(b"/n", b"v", perms(d, 0), c, 1), "NODE_DATA")


@mutation(FORMAT, "semantics", XS.WEXT_VERSION)
def _wext_v1(d: Draw):
    s, _, c = with_conn(d, version=1)
    s, _ = insert(d, s, WatchDataExtended(c, d.bytes(1, 8, TEXT), b"t"), after_conns(s))
    return s.encode(), "WATCH_DATA_EXTENDED in a version 1 stream"


@mutation(FORMAT, "semantics", XS.TX_ID_ZERO)
def _tx_zero(d: Draw):
    s, _, c = with_conn(d)
    s, _ = insert(d, s, TransactionData(c, 0), after_conns(s))
    return s.encode(), "TRANSACTION_DATA tx-id 0"


@mutation(FORMAT, "semantics", XS.NODE_TX_UNKNOWN)
def _tx_unknown(d: Draw):
    s, _, c = with_conn(d)
    tx = 0x7FFF0000 + d.int(0, 100)
    s, _ = insert(d, s, NodeData(b"/u", b"v", perms(d, 0), c, tx, 1), after_conns(s))
    return s.encode(), f"pending node of transaction {tx}, which no TRANSACTION_DATA announced"


@mutation(FORMAT, "semantics", XS.PATH_ABSOLUTE)
def _path_relative(d: Draw):
    s = build(d)
    path = d.bytes(1, 10, NAME)
    s, _ = insert(d, s, NodeData(path, b"", perms(d, 0)), after_conns(s))
    return s.encode(), f"NODE_DATA path {path!r} is not absolute"


@mutation(FORMAT, "semantics", XS.PATH_SPECIAL)
def _path_special(d: Draw):
    s = build(d)
    path = d.choice([b"@releaseDomain", b"@introduceDomain"])
    s, _ = insert(d, s, NodeData(path, b"", perms(d, 0)), after_conns(s))
    return s.encode(), f"special node {path.decode()}"


@mutation(FORMAT, "semantics", XS.PERM_LETTER)
def _perm_letter(d: Draw):
    s = build(d)
    letter = d.choice("xWR0 ")
    s, _ = insert(d, s, NodeData(b"/l", b"", (Permission("n", 0), Permission(letter, 1))), after_conns(s))
    return s.encode(), f"permission letter {letter!r}"


@mutation(FORMAT, "semantics", XS.PERM_COUNT_ZERO)
def _perm_count_zero(d: Draw):
    s = build(d)
    s, _ = insert(d, s, NodeData(b"/z", b"", ()), after_conns(s))
    return s.encode(), "a committed node without permissions"


def _orphan(rule: str, live: bool):
    def fn(d: Draw):
        s = build(d, live_update=live)
        path = b"/nowhere%d/" % d.int(0, 99) + d.bytes(1, 6, NAME)
        lo = max([after_conns(s)] + [i + 1 for i in s.find(GlobalData)])
        s, _ = insert(d, s, NodeData(path, b"", perms(d, 0)), lo)
        return s.encode(), f"node {path!r} whose parent is not in the stream " + \
            ("(live update)" if live else "(migration)")
    mutation(FORMAT, "semantics", rule, f"orphan_{'live_update' if live else 'migration'}")(fn)


_orphan(XS.PARENT_UNKNOWN, True)
_orphan(XS.PARENT_OUTSIDE, False)


@mutation(FORMAT, "semantics", XS.DELETED_NOT_EMPTY)
def _deleted_not_empty(d: Draw):
    s, _, c = with_conn(d)
    s, i = insert(d, s, TransactionData(c, 77), after_conns(s))
    value, access = (d.bytes(1, 6), 0) if d.bool() else (b"", d.int(1, 3))
    s, _ = insert(d, s, NodeData(b"/del", value, (), c, 77, access), i + 1)
    return s.encode(), "a node deleted in a transaction with a value or access bits"


@mutation(FORMAT, "semantics", XS.GLOBAL_DUPLICATE)
def _global_dup(d: Draw):
    s = build(d, live_update=True)
    s, _ = insert(d, s, GlobalData(1, 2), 1)
    return s.encode(), "a second GLOBAL_DATA"


@mutation(FORMAT, "semantics", XS.GQ_DUPLICATE)
def _gq_dup(d: Draw):
    s = build(d)
    recs = [r for r in s.records if not isinstance(r, GlobalQuotaData)]
    recs[0:0] = [GlobalQuotaData(quotas(d, 0, 2)), GlobalQuotaData(quotas(d, 0, 2))]
    return s.copy(recs).encode(), "two GLOBAL_QUOTA_DATA"


@mutation(FORMAT, "semantics", XS.DOM_DUPLICATE)
def _dom_dup(d: Draw):
    s = build(d)
    domid = d.int(301, 400)
    s, i = insert(d, s, NodeData(b"/o", b"", (Permission("n", domid),)), after_conns(s))
    s, j = insert(d, s, DomainData(domid), i + 1)
    s, _ = insert(d, s, DomainData(domid, quotas(d, 0, 1)), j + 1)
    return s.encode(), f"two DOMAIN_DATA for domain {domid}"


@mutation(FORMAT, "semantics", XS.DOM_UNKNOWN)
def _dom_unknown(d: Draw):
    s = build(d)
    s, _ = insert(d, s, DomainData(d.int(1000, 30000)), len(s.records))
    return s.encode(), "DOMAIN_DATA for a domain no earlier record named"


# --------------------------------------------------------------------------
# valid streams C xenstored restores (variant "c-restorable")
# --------------------------------------------------------------------------

#: Message types of pending output (xs_wire.h): replies and events a daemon queues.
_OUT_TYPES = (1, 2, 3, 11, 15, 16)   # DIRECTORY, READ, GET_PERMS, WRITE, WATCH_EVENT, ERROR
#: A wire message header (type, req-id, tx-id, len), little-endian: the only
#: host order C xenstored restores.
XS_MSG = struct.Struct("<IIII")
_MSG_HDR = XS_MSG.size
DOM0 = 0
DOMID_ANY = 0x7FF5  # what C xenstored puts on @releaseDomain
ANY_BUT_NUL = bytes(range(1, 256))


def _fill(d: Draw, need: int, alphabet: bytes | None = None) -> bytes:
    """``need`` octets drawn (zeros, or the alphabet's first, when shrunk)."""
    return d.bytes(need, need, alphabet) if need else b""


def _message(d: Draw) -> bytes:
    """One whole xenstore wire message (xs_wire.h ``xsd_sockmsg`` and payload), host order."""
    payload = d.bytes(0, 24) if d.int(0, 3) == 3 else d.bytes(0, 24, TEXT) + b"\0"
    return XS_MSG.pack(d.choice(_OUT_TYPES), d.int(0, 0xFFFF), 0, len(payload)) + payload


def _c_connection(d: Draw, conn_id: int, spec) -> ConnectionData:
    """A connection whose body is whole words: a unique-id (rings only) aligns it,
    otherwise the partial response is as long as alignment asks."""
    in_data = b""
    kind = d.int(0, 5)   # shrinks to none
    if kind == 4:   # a request being read: a header claiming more than came
        size = d.int(1, 64)
        in_data = XS_MSG.pack(2, d.int(0, 0xFFFF), 0, size) + d.bytes(0, size - 1, NAME)
    elif kind == 5:   # part of a request header
        in_data = XS_MSG.pack(2, d.int(0, 0xFFFF), 0, d.int(0, 64))[:d.int(1, _MSG_HDR - 1)]
    messages = b"".join(_message(d) for _ in range(d.int(0, 2)))
    uid = None
    if isinstance(spec, SharedRing) and d.bool():
        uid = d.int(0, (1 << 64) - 1)
    partial = d.int(0, 2) * 8 if d.int(0, 2) == 2 else 0
    if uid is None:
        partial += -(XS.CONNECTION_DATA.size + len(in_data) + partial + len(messages)) % 8
    out = _fill(d, partial) + messages
    return ConnectionData(conn_id, spec, in_data, out, partial, uid)


def _c_watch(d: Draw, conn_id: int, wpath: bytes) -> WatchData:
    token = d.bytes(1, 12, ANY_BUT_NUL) if d.int(0, 3) == 3 else d.bytes(1, 12, TEXT)
    need = -(XS.WATCH_DATA.size + len(wpath) + 1 + len(token) + 1) % 8
    return WatchData(conn_id, wpath, token + _fill(d, need, TEXT))


def _c_node(d: Draw, path: bytes, perms_: tuple[Permission, ...]) -> NodeData:
    value = d.bytes(25, 3000) if d.int(0, 7) == 7 else d.bytes(0, 24)
    need = -(XS.NODE_DATA.size + XS.NODE_PERMISSION.size * len(perms_) + len(path) + 1 + len(value)) % 8
    return NodeData(path, value + _fill(d, need), perms_)


def _c_perms(d: Draw, owner: int, domains: list[int]) -> tuple[Permission, ...]:
    out = [Permission(d.choice("nrwb"), owner)]
    for _ in range(d.int(0, 4)):
        # another domain with access: connected, or one the stream never names
        domid = d.int(1, 0x7FEF) if d.int(0, 3) == 3 else d.choice(domains)
        out.append(Permission(d.choice("rwbn"), domid, d.choice([0, 0, 0, PERM_STALE])))
    return tuple(out)


def build_c_restorable(d: Draw, *, records=None, connections=None, transactions=None,
                       specials=None) -> tuple[Stream, str | None]:
    """A valid live-update stream inside what C xenstored 4.17 and 4.20 restore
    (docs/findings.md, "C xenstored"); :func:`c_restorable_problems` names the
    constraints.  Built constructively: shrinking drops guests, sockets, watches,
    nodes and fillers, and moves nodes after every connection, towards
    GLOBAL_DATA and domain 0's ring alone.  Returns the stream and the
    ``either`` rule it leans on (the special nodes), or None.

    Left out, each a documented departure: GLOBAL_QUOTA_DATA and DOMAIN_DATA
    (version 1 allows them, but both releases skip them and lose the quota,
    which the store read back over the wire cannot show), pending nodes (4.17
    commits them, 4.20 refuses them), WATCH_DATA_EXTENDED (version 2 only)."""
    nconn = pick(d, connections, lambda: d.int(0, 6))
    nnodes = pick(d, records, lambda: d.int(0, 12))
    fds = d.sample(list(range(3, 40)), 2 + nconn, 2 + nconn)   # GLOBAL_DATA's two, one per socket
    # each connection: a socket (None) or a guest's ring (its domid), domain 0's ring first
    kinds: list[int | None] = [DOM0]
    for _ in range(nconn):
        if d.bool():
            kinds.append(None)
            continue
        domid = d.int(1, 0x7FEF) if d.int(0, 3) == 3 else d.int(1, 400)
        if domid in kinds:
            domid = max(k for k in kinds if k is not None) + 1
        kinds.append(domid)
    guests = [k for k in kinds if k]
    conn_id = 0
    conns: list[tuple[ConnectionData, int | None]] = []
    for k, dom in enumerate(kinds):
        conn_id += d.int(1, 3)
        if dom is None:
            conns.append((_c_connection(d, conn_id, Socket(fds[1 + k])), None))
            continue
        tdomid = DOMID_INVALID
        if dom and d.int(0, 2) == 2:   # a device model: its target's ring earlier, later, or none
            others = [g for g in guests if g != dom]
            tdomid = d.choice(others) if others and d.bool() else d.int(1, 0x7FEF)
        conns.append((_c_connection(d, conn_id, SharedRing(dom, d.int(1, 1000 if dom else 64), tdomid)),
                      dom))
    domains = [dom for _, dom in conns if dom is not None]
    watches: dict[int, list] = {}
    for c, _ in conns:
        for _ in range(d.int(0, 3)):
            kind = d.int(0, 5)
            if kind == 4:
                wpath = d.choice([b"@releaseDomain", b"@introduceDomain"])
            elif kind == 5:   # relative to the connection's domain home
                wpath = d.bytes(1, 8, NAME)
            else:
                wpath = b"/" + b"/".join(d.bytes(1, 6, NAME) for _ in range(d.int(0, 3)))
            watches.setdefault(c.conn_id, []).append(_c_watch(d, c.conn_id, wpath))
    tail: list = []
    if pick(d, transactions, lambda: d.int(0, 3) == 3):
        for c, _ in d.sample(conns, 1, 2):
            tail.append(TransactionData(c.conn_id, d.int(1, 0xFFFFFFFF)))
    # nodes, parents first, each with its owner: placed after the owner's ring
    queue: list[tuple[NodeData, int]] = []
    rule = None
    if pick(d, specials, lambda: d.int(0, 3) == 3):
        rule = XS.PATH_SPECIAL
        for path in d.sample([b"@releaseDomain", b"@introduceDomain"], 1, 2):
            extra = [Permission("r", DOMID_ANY)] if d.bool() else []
            queue.append((_c_node(d, path, (Permission("n", DOM0), *extra)), DOM0))
    known = [b"/"]
    if d.bool():
        root_owner = d.choice(domains) if d.int(0, 3) == 3 else DOM0
        queue.append((_c_node(d, b"/", _c_perms(d, root_owner, domains)), root_owner))
    for _ in range(nnodes):
        parent = d.choice(known)
        name = d.bytes(9, 64, NAME) if d.int(0, 7) == 7 else d.bytes(1, 8, NAME)
        path = parent.rstrip(b"/") + b"/" + name
        if path in known:
            continue
        owner = d.choice(domains)
        queue.append((_c_node(d, path, _c_perms(d, owner, domains)), owner))
        known.append(path)
    inline = d.bool()   # each connection's watches right after it, or all after the connections
    recs: list = [GlobalData(fds[0], fds[1])]
    connected: set[int] = set()
    for c, dom in conns:
        recs.append(c)
        if dom is not None:
            connected.add(dom)
        if inline:
            recs += watches.pop(c.conn_id, [])
        while queue and queue[0][1] in connected and d.bool():
            recs.append(queue.pop(0)[0])
    for c, _ in conns:
        recs += watches.pop(c.conn_id, [])
    recs += tail + [n for n, _ in queue]
    return Stream(1, LE, recs), rule


def c_restorable_problems(data: bytes) -> list[str]:
    """What in ``data`` lies outside what C xenstored 4.17 and 4.20 restore, by the
    departures of docs/findings.md ("C xenstored"); [] for a stream
    :func:`build_c_restorable` could make.  One line per broken constraint."""
    from xenstream.reference.xenstore_records import XenstoreStream
    from xenstream.reference.formats import get_codec

    stream: XenstoreStream = get_codec(FORMAT).decode(data)
    out = []
    if stream.header.version != 1:
        out.append(f"version {stream.header.version}: they read version 1 only")
    if stream.header.endian is not LE:
        out.append("big-endian: they read their host's byte order only")
    recs = stream.records
    if not recs or not isinstance(recs[0], GlobalData):
        out.append("no GLOBAL_DATA first: not a live-update stream")
    rings: set[int] = set()
    dom0_at = None
    for i, r in enumerate(recs):
        rtype, body = encode_body(r, stream.header.endian)
        if len(body) % 8:
            out.append(f"record {i} ({rtype.name}): body of {len(body)} octets, not whole words "
                       "(they step by len alone)")
        if isinstance(r, (GlobalQuotaData, DomainData)):
            out.append(f"record {i}: {rtype.name}, which they skip (the quota is lost)")
        elif isinstance(r, WatchDataExtended):
            out.append(f"record {i}: WATCH_DATA_EXTENDED, which they skip")
        elif isinstance(r, ConnectionData):
            if isinstance(r.spec, SharedRing):
                rings.add(r.spec.domid)
                if r.spec.domid == DOM0 and dom0_at is None:
                    dom0_at = i
            rest = r.out_data[r.out_resp_len:]
            while len(rest) >= _MSG_HDR:
                size = XS_MSG.unpack_from(rest)[3]
                rest = rest[_MSG_HDR + size:] if _MSG_HDR + size <= len(rest) else b"?"
                if rest == b"?":
                    break
            if rest:
                out.append(f"record {i}: pending output after the partial response is not whole "
                           "messages (they read a message's len past the record)")
        if isinstance(r, NodeData):
            if dom0_at is None:
                out.append(f"record {i}: a node before domain 0's ring (they have no node database yet)")
            if r.pending:
                out.append(f"record {i}: a pending node (they commit it)")
            elif r.perms and r.perms[0].domid not in rings:
                out.append(f"record {i}: node owner {r.perms[0].domid} has no ring earlier "
                           "(they cannot charge the node to it)")
    if dom0_at is None:
        out.append("no shared ring of domain 0 (they create the node database only then)")
    return out


@valid_builder(FORMAT, "c-restorable")
def valid_c_restorable(d: Draw, **opts):
    s, rule = build_c_restorable(d, **opts)
    note = ", with the special nodes as NODE_DATA" if rule else ""
    return s.encode(), "valid C-restorable " + describe(s) + note, rule
