"""Hand-written xenstore examples: valid streams of every record type in both
versions and byte orders, one malformed stream (or more) for every
``xenstore.*`` rule with the offset the reference reports, and the streams
that show where C xenstored departs from the spec (docs/findings.md names
them; ``meta["departure"]`` lists the rules the reference reports for them).
"""

from __future__ import annotations

import struct
from dataclasses import replace

from .. import xenstore as xs
from ..framing import RECORD_HEADER, encode_record
from ..layout import Endian
from ..xenstore_build import c_restorable_state, c_style, live_update_state, migration_state, owner
from ..xenstore_records import (
    ConnectionData, DomainData, GlobalData, GlobalQuotaData, Header, NodeData, Permission, Quota,
    RecordType, SharedRing, Socket, TransactionData, WatchData, WatchDataExtended, XenstoreStream,
    encode, encode_body, encode_header,
)
from . import Example

FORMAT = "xenstore"
LE, BE = Endian.LITTLE, Endian.BIG
HDR = 16  # the header's size; the first record starts here


class Raw:
    """A record with any type, body and ``len``, for what typed values cannot express."""

    def __init__(self, rtype: int, body: bytes, *, length: int | None = None, padding: bytes | None = None):
        self.rtype, self.body, self.length, self.padding = rtype, body, length, padding

    def frame(self, endian: Endian) -> bytes:
        length = len(self.body) if self.length is None else self.length
        pad = bytes(-len(self.body) & 7) if self.padding is None else self.padding
        return RECORD_HEADER.pack(endian, self.rtype, length) + self.body + pad


def raw(rec, endian: Endian = LE, **patches) -> Raw:
    """``rec``'s body as a :class:`Raw` with octets patched: ``at=<offset>, data=<bytes>``."""
    rtype, body = encode_body(rec, endian)
    if patches:
        at, data = patches["at"], patches["data"]
        body = body[:at] + data + body[at + len(data):]
    return Raw(rtype, body)


def frame(rec, endian: Endian) -> bytes:
    if isinstance(rec, Raw):
        return rec.frame(endian)
    rtype, body = encode_body(rec, endian)
    return encode_record(rtype, body, endian)


def stream(*recs, version: int = 2, endian: Endian = LE, flags: int | None = None,
           end: bytes | None = None, ident: bytes = b"xenstore") -> tuple[bytes, list[int]]:
    """The octets of a stream of ``recs`` (typed or :class:`Raw`), and each record's offset."""
    hdr = encode_header(Header(version, endian, ident=ident))
    if flags is not None:
        hdr = hdr[:12] + flags.to_bytes(4, "big")
    parts, starts, at = [hdr], [], len(hdr)
    for rec in recs:
        starts.append(at)
        data = frame(rec, endian)
        parts.append(data)
        at += len(data)
    starts.append(at)  # END
    parts.append(RECORD_HEADER.pack(endian, RecordType.END, 0) if end is None else end)
    return b"".join(parts), starts


def _meta(version: int = 2, endian: Endian = LE, **extra) -> dict:
    return {"version": version, "byteorder": endian.value, **extra}


class _Builder:
    def __init__(self):
        self.out: list[Example] = []

    def valid(self, name: str, value: XenstoreStream, description: str, **meta) -> None:
        h = value.header
        self.out.append(Example(FORMAT, name, encode(value), None, description,
                                _meta(h.version, h.endian, **meta)))

    def bad(self, name: str, rule: str, recs: tuple, description: str, *, record: int = 0,
            plus: int = 0, offset: int | None = None, data: bytes | None = None,
            version: int = 2, endian: Endian = LE, **kw) -> None:
        """A malformed stream of ``recs``; the finding is at record ``record`` + ``plus``
        (``plus`` counts from the record header, so +8 is the body's first octet)."""
        raw_data, starts = stream(*recs, version=version, endian=endian, **kw)
        if offset is None:
            offset = starts[record] + plus
        self.out.append(Example(FORMAT, name, raw_data if data is None else data, rule,
                                description, _meta(version, endian), offset))

    def departure(self, name: str, data: bytes, rule: str, rules: list[str], description: str,
                  *, version: int = 2, endian: Endian = LE) -> None:
        self.out.append(Example(FORMAT, name, data, rule, description,
                                _meta(version, endian, departure=sorted(set(rules)))))


# -- building blocks ------------------------------------------------------------------
RING = ConnectionData(1, SharedRing(1, evtchn=5))
SOCK = ConnectionData(2, Socket(9))
LOCAL = NodeData(b"/local", b"", owner(0))
BODY = 8  # offset of a body from its record header


def _watch_ext_as_c_writes(conn_id: int, wpath: bytes, token: bytes, endian: Endian) -> bytes:
    """WATCH_DATA_EXTENDED as C xenstored writes it: ``len`` computed from the 12-octet
    structure, but only its first 8 octets (no depth, no pad) written before wpath."""
    wpath, token = wpath + b"\0", token + b"\0"
    length = -(-(12 + len(wpath) + len(token)) // 8) * 8
    body = xs.WATCH_DATA.pack(endian, conn_id, len(wpath), len(token)) + wpath + token
    body += bytes(-len(body) & 7)
    return RECORD_HEADER.pack(endian, RecordType.WATCH_DATA_EXTENDED, length) + body


def _valid(b: _Builder) -> None:
    for version in (1, 2):
        for endian in (LE, BE):
            tag = f"v{version}_{'le' if endian is LE else 'be'}"
            b.valid(f"live_update_{tag}", live_update_state(version=version, endian=endian),
                    f"live update of a host with three guests and a device model, version {version}, "
                    f"{endian.value}-endian: global data and quota, socket and ring connections, "
                    "watches, an open transaction with pending and deleted nodes, domain data")
            b.valid(f"migration_{tag}", migration_state(version=version, endian=endian),
                    f"migration of one domain, version {version}, {endian.value}-endian")
    b.valid("live_update_c_restorable_v1", c_restorable_state(),
            "live update that C xenstored 4.17 and 4.20 can restore, to the letter of the spec: "
            "version 1, dom0's ring first, every body a whole number of words, a toolstack "
            "socket with two watches and a pending reply, two guests (see c_restorable_state)")
    b.valid("live_update_c_restorable_v1_transaction", c_restorable_state(transactions=True),
            "the same with an open transaction on the first guest's ring that modifies, creates "
            "and deletes a node: the committed store is unchanged by it")
    b.valid("live_update_c_restorable_v1_no_dom0", c_restorable_state(dom0_ring=False),
            "the same without a shared-ring connection for domain 0, which the spec does not "
            "ask for (C xenstored creates its node database only when it restores that ring)")
    b.valid("minimal", XenstoreStream(Header(1)), "header and END only")
    b.valid("minimal_be_v2", XenstoreStream(Header(2, BE)), "header and END only, big-endian, version 2")
    b.valid("watch_ext_spec_layout", XenstoreStream(Header(2), (
        RING, WatchDataExtended(1, b"/local/domain/1/device", b"dev", depth=1),
        WatchDataExtended(1, b"/", b"all", depth=0xFFFF))),
            "WATCH_DATA_EXTENDED laid out as the spec draws it: depth and pad before wpath "
            "(C xenstored's reader takes wpath from octet 10, see docs/findings.md)")
    b.valid("node_value_nuls", XenstoreStream(Header(2), (
        LOCAL, NodeData(b"/local/bin", b"\0\0a\0b\0", owner(0, ("b", 3)))),),
            "a node value that holds NUL octets, and one made only of NULs")
    b.valid("stale_permission", XenstoreStream(Header(2), (
        LOCAL, NodeData(b"/local/x", b"v", (Permission("n", 0), Permission("r", 7, flags=1))))),
            "a permission flagged stale (flags 0x01)")
    b.valid("unique_id_after_padding", XenstoreStream(Header(2, BE), (
        ConnectionData(1, SharedRing(4, evtchn=2, tdomid=3), in_data=b"abc", out_data=b"defgh",
                       out_resp_len=2, unique_id=0x0123456789ABCDEF),)),
            "CONNECTION_DATA with pending data in both directions and unique-id after padding")
    b.valid("quota_empty", XenstoreStream(Header(2), (
        GlobalQuotaData(), RING, DomainData(1, ()))),
            "GLOBAL_QUOTA_DATA and DOMAIN_DATA without quota values")


def _framing(b: _Builder) -> None:
    lu = live_update_state()
    lu_bytes = encode(lu)
    b.bad("no_end", xs.TRUNCATED, (), "input ends at a record boundary without END",
          data=lu_bytes[:-8], offset=len(lu_bytes) - 8)
    b.bad("cut_in_header", xs.TRUNCATED, (), "input ends inside the header",
          data=lu_bytes[:11], offset=11)
    b.bad("cut_in_body", xs.TRUNCATED, (), "input ends inside a NODE_DATA body",
          data=lu_bytes[:1000], offset=1000)
    hostile = encode_header(Header(2)) + RECORD_HEADER.pack(LE, RecordType.NODE_DATA, 0xFFFFFFFF)
    b.bad("hostile_length", xs.TRUNCATED, (), "NODE_DATA len 0xffffffff at the end of the input",
          data=hostile, offset=len(hostile))
    data, starts = stream(RING)
    b.bad("after_end", xs.TRAILING_DATA, (), "eight octets follow the END record",
          data=data + bytes(8), offset=len(data))
    b.bad("ident", xs.IDENT_RULE, (), "ident is 'xenstorf'", ident=b"xenstorf", offset=0)
    b.bad("version_3", xs.VERSION_RULE, (), "version 3", version=3, offset=8)
    b.bad("version_0", xs.VERSION_RULE, (), "version 0", version=0, offset=8)
    b.bad("flags_bit_1", xs.FLAGS_RESERVED, (), "flags bit 1 set", flags=2, offset=12)
    b.bad("type_9", xs.TYPE_RESERVED, (Raw(9, bytes(8)),), "a record of type 9")
    b.bad("transaction_len_4", xs.BODY_SHORT, (Raw(RecordType.TRANSACTION_DATA, bytes(4)),),
          "TRANSACTION_DATA with a 4-octet body", plus=BODY)
    node = raw(NodeData(b"/local", b"", owner(0)))
    node.body = node.body[:-2]  # path-len still counts 7 octets
    b.bad("node_path_beyond_body", xs.BODY_SHORT, (node,),
          "NODE_DATA whose path-len reaches past the end of the body", plus=BODY + 16)
    conn = raw(ConnectionData(1, SharedRing(1, 5), out_data=b"abcd"))
    conn.body = conn.body[:-2]
    b.bad("conn_data_beyond_body", xs.BODY_SHORT, (conn,),
          "CONNECTION_DATA whose out-data-len reaches past the end of the body", plus=BODY + 24)
    b.bad("global_len_12", xs.BODY_EXCESS, (Raw(RecordType.GLOBAL_DATA, bytes(12)),),
          "GLOBAL_DATA with 4 zero octets after evtchn-fd", plus=BODY + 8)
    b.bad("watch_padding", xs.PADDING, (RING, Raw(RecordType.WATCH_DATA, encode_body(
        WatchData(1, b"/a", b"t"), LE)[1], padding=b"\0\0\x01")), "non-zero record padding",
          record=1, plus=BODY + 13 + 2)
    b.bad("end_len_8", xs.END_LENGTH, (RING,), "END with an 8-octet body", record=1, plus=4,
          end=RECORD_HEADER.pack(LE, 0, 8) + bytes(8))


def _connections(b: _Builder) -> None:
    b.bad("global_twice", xs.GLOBAL_DUPLICATE, (GlobalData(), GlobalData()), "two GLOBAL_DATA records",
          record=1)
    b.bad("conn_id_0", xs.CONN_ID_ZERO, (replace(RING, conn_id=0),), "CONNECTION_DATA conn-id 0",
          plus=BODY)
    b.bad("conn_id_twice", xs.CONN_ID_DUPLICATE, (RING, replace(SOCK, conn_id=1)),
          "two connections with conn-id 1", record=1, plus=BODY)
    b.bad("conn_type_2", xs.CONN_TYPE_RESERVED, (raw(RING, at=4, data=b"\x02\x00"),),
          "conn-type 2", plus=BODY + 4)
    b.bad("fields_0x0002", xs.FIELDS_RESERVED, (raw(RING, at=6, data=b"\x02\x00"),),
          "fields has the reserved flag 0x0002", plus=BODY + 6)
    b.bad("socket_pad", xs.SOCKET_PAD, (ConnectionData(2, Socket(9, pad=1)),), "socket pad is 1",
          plus=BODY + 12)
    b.bad("resp_beyond_out", xs.OUT_RESP_LEN, (ConnectionData(1, SharedRing(1, 5), out_data=b"ab",
                                                              out_resp_len=3),),
          "out-resp-len 3 with out-data-len 2", plus=BODY + 18)
    uid = ConnectionData(1, SharedRing(1, 5), in_data=b"abc", unique_id=77)
    b.bad("unique_id_padding", xs.UNIQUE_ID_PADDING, (raw(uid, at=24 + 3 + 2, data=b"\x01"),),
          "non-zero padding before unique-id", plus=BODY + 29)
    b.bad("unique_id_socket", xs.UNIQUE_ID_SOCKET, (replace(SOCK, unique_id=5),),
          "unique-id on a socket connection", plus=BODY + 6)


def _watches(b: _Builder) -> None:
    for ext, (conn_rule, wpath_rule, token_rule) in ((False, xs._PER_TYPE[RecordType.WATCH_DATA]),
                                                    (True, xs._PER_TYPE[RecordType.WATCH_DATA_EXTENDED])):
        kind = "WatchDataExtended" if ext else "WatchData"
        fixed = 12 if ext else 8

        def watch(conn_id, wpath, token):
            return WatchDataExtended(conn_id, wpath, token, depth=3) if ext else WatchData(conn_id, wpath, token)

        b.bad("conn_9", conn_rule, (RING, watch(9, b"/a", b"t")), f"{kind} of an undefined connection 9",
              record=1, plus=BODY)
        b.bad("before_conn", conn_rule, (watch(1, b"/a", b"t"), RING),
              f"{kind} before the CONNECTION_DATA it names", plus=BODY)
        b.bad("wpath_inner_nul", wpath_rule, (RING, watch(1, b"/a\0b", b"t")), "wpath with a NUL inside",
              record=1, plus=BODY + fixed + 2)
        no_nul = raw(watch(1, b"/a", b"t"))
        no_nul.body = no_nul.body[:fixed] + b"/ab" + no_nul.body[fixed + 3:]
        b.bad("wpath_no_nul", wpath_rule, (RING, no_nul), "wpath not ending in NUL",
              record=1, plus=BODY + fixed + 2)
        b.bad("token_inner_nul", token_rule, (RING, watch(1, b"/a", b"t\0x")), "token with a NUL inside",
              record=1, plus=BODY + fixed + 3 + 1)
    b.bad("in_version_1", xs.WEXT_VERSION, (RING, WatchDataExtended(1, b"/a", b"t", depth=1)),
          "WATCH_DATA_EXTENDED in a version 1 stream", version=1, record=1)
    b.bad("pad_1", xs.WEXT_PAD, (RING, WatchDataExtended(1, b"/a", b"t", depth=1, pad=1)),
          "WATCH_DATA_EXTENDED pad is 1", record=1, plus=BODY + 10)


def _transactions_and_nodes(b: _Builder) -> None:
    tx = TransactionData(1, 4)
    b.bad("conn_9", xs.TX_CONN_UNKNOWN, (RING, TransactionData(9, 4)),
          "TRANSACTION_DATA of an undefined connection", record=1, plus=BODY)
    b.bad("tx_id_0", xs.TX_ID_ZERO, (RING, TransactionData(1, 0)), "TRANSACTION_DATA tx-id 0",
          record=1, plus=BODY + 4)

    def node_at(n_perms: int) -> int:  # offset of path from the record header
        return BODY + 16 + 4 * n_perms

    pend = NodeData(b"/local/x", b"v", owner(1), 1, 4, 3)
    b.bad("conn_9", xs.NODE_CONN_UNKNOWN, (RING, tx, LOCAL, replace(pend, conn_id=9)),
          "pending node of an undefined connection", record=3, plus=BODY)
    b.bad("tx_5", xs.NODE_TX_UNKNOWN, (RING, tx, LOCAL, replace(pend, tx_id=5)),
          "pending node of a transaction without TRANSACTION_DATA", record=3, plus=BODY + 4)
    b.bad("tx_after_node", xs.NODE_TX_UNKNOWN, (RING, LOCAL, pend, tx),
          "pending node before its TRANSACTION_DATA", record=2, plus=BODY + 4)
    b.bad("inner_nul", xs.PATH_NUL, (LOCAL, NodeData(b"/local/a\0b", b"", owner(0))),
          "path with a NUL inside", record=1, plus=node_at(1) + 8)
    no_nul = raw(NodeData(b"/local/ab", b"v", owner(0)))
    no_nul.body = no_nul.body[:20] + b"/local/abc" + no_nul.body[30:]
    b.bad("no_nul", xs.PATH_NUL, (LOCAL, no_nul), "path not ending in NUL", record=1, plus=node_at(1) + 9)
    zero = raw(NodeData(b"", b"", owner(0)))
    zero.body = zero.body[:8] + b"\0\0" + zero.body[10:20]  # path-len 0, no path octets
    b.bad("path_len_0", xs.PATH_NUL, (zero,), "path-len 0", plus=node_at(1))
    b.bad("relative", xs.PATH_ABSOLUTE, (NodeData(b"local", b"", owner(0)),), "relative path 'local'",
          plus=node_at(1))
    b.bad("relative_pending", xs.PATH_ABSOLUTE, (RING, tx, replace(pend, path=b"x")),
          "pending node with a relative path", record=2, plus=node_at(1))
    b.bad("release_domain", xs.PATH_SPECIAL, (NodeData(b"@releaseDomain", b"", owner(0)),),
          "the special node @releaseDomain as NODE_DATA", plus=node_at(1))
    b.bad("letter_x", xs.PERM_LETTER, (LOCAL, NodeData(b"/local/x", b"", owner(0, ("x", 1)))),
          "permission letter 'x'", record=1, plus=BODY + 16 + 4)
    b.bad("upper_case", xs.PERM_LETTER, (NodeData(b"/local", b"", (Permission("W", 0),)),),
          "permission letter 'W'", plus=BODY + 16)
    b.bad("flags_0x02", xs.PERM_FLAGS_RESERVED, (NodeData(b"/local", b"", (Permission("n", 0, 2),)),),
          "permission flags 0x02", plus=BODY + 17)
    b.bad("committed", xs.PERM_COUNT_ZERO, (NodeData(b"/local", b"v", ()),),
          "committed node without permissions", plus=BODY + 14)
    b.bad("live_update", xs.PARENT_UNKNOWN, (GlobalData(), NodeData(b"/local/domain", b"", owner(0))),
          "live-update stream: /local/domain without /local", record=1, plus=node_at(1))
    b.bad("child_first", xs.PARENT_UNKNOWN, (GlobalData(), NodeData(b"/local/domain", b"", owner(0)),
                                             LOCAL), "live-update stream: child before its parent",
          record=1, plus=node_at(1))
    b.bad("migration", xs.PARENT_OUTSIDE, (NodeData(b"/local/domain/5", b"", owner(5)),),
          "migration stream: /local/domain/5 whose parent the receiver may hold", plus=node_at(1))
    b.bad("committed_tx_3", xs.TX_ID_COMMITTED, (NodeData(b"/local", b"", owner(0), 0, 3),),
          "committed node with tx-id 3", plus=BODY + 4)
    b.bad("committed_read", xs.ACCESS_COMMITTED, (NodeData(b"/local", b"", owner(0), 0, 0, 1),),
          "committed node with access 'read'", plus=BODY + 12)
    b.bad("access_0x4", xs.ACCESS_RESERVED, (RING, tx, replace(pend, access=5)),
          "pending node with access 0x0005", record=2, plus=BODY + 12)
    b.bad("deleted_value", xs.DELETED_NOT_EMPTY, (RING, tx, NodeData(b"/local/x", b"v", (), 1, 4, 0)),
          "deleted node (perm-count 0) with a value", record=2, plus=BODY + 10)
    b.bad("deleted_access", xs.DELETED_NOT_EMPTY, (RING, tx, NodeData(b"/local/x", b"", (), 1, 4, 2)),
          "deleted node (perm-count 0) with access 'written'", record=2, plus=BODY + 12)


def _quota(b: _Builder) -> None:
    two = (Quota(b"nodes", 10), Quota(b"watches", 2))
    gq = raw(GlobalQuotaData(two, ()))
    gq.body = gq.body[:-len(b"watches\0")]  # one name for two values
    b.bad("one_name_two_values", xs.GQ_NAMES, (gq,), "two quota values, one name",
          plus=BODY + len(gq.body))
    gq = raw(GlobalQuotaData(two[:1], ()))
    gq.body += b"extra\0"
    b.bad("two_names_one_value", xs.GQ_NAMES, (gq,), "one quota value, two names",
          plus=BODY + len(gq.body) - 6)
    gq = raw(GlobalQuotaData(two, ()))
    gq.body = gq.body[:-1]
    b.bad("last_name_no_nul", xs.GQ_NAMES, (gq,), "the last quota name lacks its NUL",
          plus=BODY + len(gq.body))
    b.bad("twice", xs.GQ_DUPLICATE, (GlobalQuotaData(two), GlobalQuotaData(two)),
          "two GLOBAL_QUOTA_DATA records", record=1)
    dom = raw(DomainData(1, two))
    dom.body = dom.body[:-len(b"watches\0")]
    b.bad("one_name_two_values", xs.DOM_NAMES, (RING, dom), "DOMAIN_DATA: two quota values, one name",
          record=1, plus=BODY + len(dom.body))
    b.bad("twice", xs.DOM_DUPLICATE, (RING, DomainData(1, two), DomainData(1, two)),
          "two DOMAIN_DATA records for domain 1", record=2, plus=BODY)
    b.bad("features_v1", xs.DOM_FEATURES_V1, (RING, DomainData(1, (), features=1)),
          "DOMAIN_DATA features 1 in a version 1 stream", version=1, record=1, plus=BODY + 4)
    b.bad("domain_9", xs.DOM_UNKNOWN, (RING, DomainData(9, two)),
          "DOMAIN_DATA for a domain no earlier record names", record=1, plus=BODY)


def _departures(b: _Builder) -> None:
    """Small streams that show one departure of C xenstored each (docs/findings.md)."""
    small = XenstoreStream(Header(2), (RING, NodeData(b"/local", b"", owner(0))))
    b.bad("c_xenstored_len_counts_padding", xs.BODY_EXCESS, (), "NODE_DATA framed as C xenstored "
          "frames it: len rounded up to 8, the padding counted in the body", data=c_style(small),
          offset=HDR + 8 + 24 + 8 + 16 + 4 + 7)
    b.bad("c_xenstored_special_node", xs.PATH_SPECIAL, (NodeData(b"@introduceDomain", b"", owner(0)),),
          "the special node @introduceDomain as NODE_DATA, as C xenstored writes it",
          plus=BODY + 16 + 4)


def departures() -> list[Example]:
    """Whole streams as C xenstored writes them, each breaking several rules.

    Not part of :func:`examples` (whose malformed streams break one rule each);
    ``meta["departure"]`` lists every rule the reference reports, and
    ``rule`` the one that decides the verdict.  docs/findings.md names them.
    """
    b = _Builder()
    b.departure("c_xenstored_live_update", c_style(live_update_state(specials=True)), xs.BODY_EXCESS,
                [xs.BODY_EXCESS, xs.PATH_SPECIAL],
                "a live-update stream as C xenstored writes it: len counts the padding, and "
                "@releaseDomain and @introduceDomain are NODE_DATA")
    # 16 + 4 octets of wpath and token: C's len (from 12 + 20) and what it writes (8 + 20,
    # aligned) agree, so the framing survives; the spec reader sees depth "/l", pad "oc".
    data, _ = stream(RING)
    at = len(data) - 8
    rec = _watch_ext_as_c_writes(1, b"/local/domain/1", b"tok", LE)
    b.departure("c_xenstored_watch_ext_layout", data[:at] + rec + data[at:], xs.WEXT_WPATH_NUL,
                [xs.WEXT_PAD, xs.WEXT_WPATH_NUL, xs.WEXT_TOKEN_NUL],
                "WATCH_DATA_EXTENDED as C xenstored writes it: no depth or pad before wpath")
    # 4 + 2 octets: C's len is 8 more than what it writes, so the END record is swallowed
    rec = _watch_ext_as_c_writes(1, b"/a/b", b"t", LE)
    b.departure("c_xenstored_watch_ext_desync", data[:at] + rec + data[at:], xs.TRUNCATED,
                [xs.WEXT_PAD, xs.WEXT_WPATH_NUL, xs.WEXT_TOKEN_NUL, xs.BODY_EXCESS, xs.TRUNCATED],
                "WATCH_DATA_EXTENDED as C xenstored writes it, where its len overshoots the "
                "record: the END record is read as part of the body")
    b.departure("ocaml_2021_patch_stream", _ocaml_2021_patch(), xs.WATCH_WPATH_NUL,
                [xs.OUT_RESP_LEN, xs.BODY_EXCESS, xs.WATCH_WPATH_NUL, xs.WATCH_TOKEN_NUL,
                 xs.PERM_COUNT_ZERO, xs.PATH_NUL], "a live-update stream as the OCaml writer "
                "proposed on xen-devel in May 2021 writes it: 32-bit fields where the spec has "
                "16-bit ones", version=1,
                endian=BE)
    b.departure("design_2020_node_data", _design_2020_node(), xs.PATH_NUL,
                [xs.PATH_NUL, xs.ACCESS_COMMITTED, xs.PERM_COUNT_ZERO, xs.BODY_EXCESS], "NODE_DATA in the field order of the "
                "April 2020 design (xen-devel, \"docs/designs: re-work the xenstore migration "
                "document\"): access and perm-count before the permissions, "
                "path-len and value-len after them")
    return b.out


def _be_record(rtype: int, body: bytes) -> bytes:
    return RECORD_HEADER.pack(BE, rtype, len(body)) + body + bytes(-len(body) & 7)


def _ocaml_2021_patch() -> bytes:
    """The OCaml writer of the xen-devel patch "tools/ocaml/xenstored: implement the
    live migration binary format" (v2 04/17, May 2021): big-endian, version 1,
    every length and count 32-bit."""
    def node(path: bytes) -> bytes:
        path += b"\0"
        body = struct.pack(">IIIIII", 0, 0, len(path), 0, 0, 1) + b"n\0\0\0" + path
        return _be_record(RecordType.NODE_DATA, body)

    wpath, token = b"/local/domain/1/device\0", b"tok\0"
    return b"".join([
        b"xenstore" + struct.pack(">II", 1, 1),
        _be_record(RecordType.GLOBAL_DATA, struct.pack(">ii", 5, -1)),
        # conn-id, conn-type and flags as three 32-bit words, then the ring spec, then three
        # 32-bit lengths
        _be_record(RecordType.CONNECTION_DATA, struct.pack(">IIIHHIIII", 1, 0, 0, 1, 0x7FF4, 5, 0, 0, 0)),
        _be_record(RecordType.WATCH_DATA, struct.pack(">III", 1, len(wpath), len(token)) + wpath + token),
        node(b"/"), node(b"/local"),
        RECORD_HEADER.pack(BE, RecordType.END, 0),
    ])


def _design_2020_node() -> bytes:
    path = b"/local\0"
    body = (struct.pack("<IIHH", 0, 0, 0, 1) + b"n\0\0\0"
            + struct.pack("<HH", len(path), 0) + path)
    data, _ = stream()
    return data[:-8] + encode_record(RecordType.NODE_DATA, body, LE) + data[-8:]


def examples() -> list[Example]:
    b = _Builder()
    _valid(b)
    _framing(b)
    _connections(b)
    _watches(b)
    _transactions_and_nodes(b)
    _quota(b)
    _departures(b)
    return b.out
