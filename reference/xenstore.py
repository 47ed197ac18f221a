"""Xenstore migration / live-update stream (xenstore-migration.md, versions 1 and 2).

The rules of the format, and one parser per record type that both validates
(streaming, bounded memory) and decodes (typed values from
:mod:`.xenstore_records`).  The dump items and their text rendering live in
:mod:`.xenstore_dump`, builders of realistic states in :mod:`.xenstore_build`.

Memory of a validation run.  Values, tokens and pending data are read a record
at a time and dropped; the cross-record rules keep only

* the conn-ids defined so far and the ``(conn-id, tx-id)`` pairs of announced
  transactions, one per record, as integers in an :class:`~.intset.IntSet`
  (8 to 24 octets each); the domain-ids named by connections and node owners,
  and the domain-ids that had a DOMAIN_DATA: small sets, at most 65536
  domain-ids each;
* for the "known parent" rule, every committed node's path, in a
  :class:`~.pathset.PathSet`: exact (a hash only says where to look; every
  match is confirmed against the stored path), and compact (a path whose
  parent is known is its parent's index and its last component: about 25
  octets per node, some 25 MiB for 1,000,000 nodes).

Past a budget they share (24 MiB, about 1,100,000 paths) the sets add what
comes next to a temporary file (:mod:`.spill`), so a validation run stays
under 64 MiB whatever the number of nodes, connections or transactions.

"Known before the stream" (NODE_DATA: "a parent node is known if it was in
the node database before the stream was started to be processed").  A
stand-alone reader cannot see the receiver's database, so it assumes the
least that every receiver has: the root ``/``.  That is exactly what C
xenstored has when it restores a live update (it recreates only ``/`` before
reading the stream), so in a *live-update* stream (one that has carried a
GLOBAL_DATA record, which the spec says is only relevant for live update) a
committed node whose parent is neither ``/`` nor an earlier committed node is
refused (``xenstore.node_data.parent_unknown``).  In a *migration* stream the
receiving xenstored already holds nodes of its own, so the same observation is
only reported (``xenstore.node_data.parent_outside_stream``, ``either``).
"""

from __future__ import annotations

import re
from itertools import starmap
from typing import Iterator

from .checker import Checker
from .errors import StreamError
from .formats import Codec, by_magic
from . import fastpath
from .intset import IntSet, pair
from .pathset import PathSet
from . import spill
from .framing import (
    MAX_SPANS, RECORD_HEADER, Item, RawRecord, RecordHeader, check_padding, frames, make_header, make_item,
    padding_length, sniffer,
)
from .layout import Endian, Layout, u16
from .rules import Role, Severity, definer
from .source import Source, Truncated, as_source
from .xenstore_records import (
    ACCESS_KNOWN, CONNECTION_DATA, DOMAIN_DATA, DOMID_INVALID, FIELD_UNIQUE_ID, FLAG_ENDIAN, GLOBAL_DATA,
    GLOBAL_QUOTA_DATA, HEADER, IDENT, MIN_VERSION, NODE_DATA, NODE_PERMISSION, PERM_LETTERS, QUOTA_VAL,
    SHARED_RING_SPEC, SOCKET_SPEC, TRANSACTION_DATA, UNIQUE_ID, VERSIONS, WATCH_DATA,
    WATCH_DATA_EXTENDED, ConnectionData, ConnType, DomainData, GlobalData, GlobalQuotaData, Header,
    NodeData, Permission, Quota, RecordType, SharedRing, Socket, TransactionData, WatchData,
    WatchDataExtended, XenstoreStream, encode, GOOD_PERM_FLAGS, PERM_FLAGS_KNOWN,
)

LAYER = "xenstore"
_DOMID = Layout("domid of perm1", u16("domid"))
_DOMID_AT = NODE_PERMISSION.offset("domid")
_PERM_AT, _FLAGS_AT = NODE_PERMISSION.offset("perm"), NODE_PERMISSION.offset("flags")
_PERMS_AT = NODE_DATA.offset("perms")
#: A NODE_DATA record's header and fixed fields, read in one go by the validation fast path.
_NODE_RECORD = RECORD_HEADER + NODE_DATA
#: Node permission specifiers that break no rule: perm one of PERM_LETTERS (PERM_LETTER), flags only
#: GOOD_PERM_FLAGS (PERM_FLAGS_RESERVED); the fast path's test of a run of them.
_GOOD_PERMS = re.compile(rb"(?:[" + PERM_LETTERS + rb"][" + b"".join(b"\\x%02x" % f for f in GOOD_PERM_FLAGS)
                         + rb"]..)*", re.DOTALL)

# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER


_rule = definer("xenstore")


# stream, header, framing
TRUNCATED = _rule("xenstore.stream.truncated", R, "Proposal",
                  "the stream is a header followed by records up to and including END; the input "
                  "does not end before END or inside a header, record, body or padding")
TRAILING_DATA = _rule("xenstore.stream.trailing_data", E, "END",
                      "END is the final record; the spec does not say whether octets may follow the "
                      "stream (it can be embedded in a file or pipe), and C xenstored stops reading at END")
IDENT_RULE = _rule("xenstore.header.ident", R, "Header", "ident is 0x78656e73746f7265 ('xenstore')")
VERSION_RULE = _rule("xenstore.header.version", R, "Header", "version is 1 or 2")
FLAGS_RESERVED = _rule("xenstore.header.flags_reserved", R, "Header",
                       "flags bits 1-31 are reserved and must be zero")
TYPE_RESERVED = _rule("xenstore.record.type_reserved", E, "Records",
                      "types 0x00000009 and up are reserved for future use; the spec does not say "
                      "whether a reader skips such a record (C xenstored does) or refuses the stream")
BODY_SHORT = _rule("xenstore.record.body_short", R, "Records",
                   "len covers the record's fixed fields and every array, string and data part "
                   "its lengths and counts declare")
BODY_EXCESS = _rule("xenstore.record.body_excess", E, "Records",
                    "len is the length of body, and the body has no octets after its last field; "
                    "the spec does not say so outright, and C xenstored counts up to 7 octets of "
                    "padding in len")
PADDING = _rule("xenstore.record.padding", W, "Records",
                "padding octets are written as zero and ignored when read")
END_LENGTH = _rule("xenstore.end.body_length", R, "END", "the END record's body length is 0")

# GLOBAL_DATA
GLOBAL_DUPLICATE = _rule("xenstore.global_data.duplicate", E, "GLOBAL_DATA",
                         "at most one GLOBAL_DATA; the spec describes one set of global state but "
                         "does not say how many records carry it")

# CONNECTION_DATA
CONN_ID_ZERO = _rule("xenstore.connection_data.conn_id_zero", R, "CONNECTION_DATA",
                     "conn-id is non-zero")
CONN_ID_DUPLICATE = _rule("xenstore.connection_data.conn_id_duplicate", R, "CONNECTION_DATA",
                          "conn-id identifies one connection: no two CONNECTION_DATA share it")
CONN_TYPE_RESERVED = _rule("xenstore.connection_data.conn_type_reserved", R, "CONNECTION_DATA",
                           "conn-type is 0 (shared ring) or 1 (socket); 0x0002-0xFFFF are reserved "
                           "and their conn-spec is undefined")
FIELDS_RESERVED = _rule("xenstore.connection_data.fields_reserved", R, "CONNECTION_DATA",
                        "fields has only defined flags (0x0001 unique-id); an unknown flag announces "
                        "additional fields whose layout is unknown")
SOCKET_PAD = _rule("xenstore.connection_data.socket_pad", W, "CONNECTION_DATA",
                   "the socket conn-spec pad is written as zero and ignored when read")
OUT_RESP_LEN = _rule("xenstore.connection_data.out_resp_len", R, "CONNECTION_DATA",
                     "out-resp-len is not larger than out-data-len, which includes the partial response")
UNIQUE_ID_PADDING = _rule("xenstore.connection_data.unique_id_padding", W, "CONNECTION_DATA",
                          "the padding before unique-id (to an 8-octet boundary) is written as zero "
                          "and ignored when read")
UNIQUE_ID_SOCKET = _rule("xenstore.connection_data.unique_id_socket", E, "CONNECTION_DATA",
                         "unique-id is a domain's identifier, 'only needed for shared ring' "
                         "connections; the spec does not forbid it on a socket connection")

# WATCH_DATA, WATCH_DATA_EXTENDED
WATCH_CONN_UNKNOWN = _rule("xenstore.watch_data.conn_unknown", R, "WATCH_DATA",
                           "conn-id names a connection defined by an earlier CONNECTION_DATA")
WATCH_WPATH_NUL = _rule("xenstore.watch_data.wpath_nul", R, "WATCH_DATA",
                        "wpath-len counts wpath's NUL terminator: wpath ends with NUL and has no other NUL")
WATCH_TOKEN_NUL = _rule("xenstore.watch_data.token_nul", R, "WATCH_DATA",
                        "token-len counts token's NUL terminator: token ends with NUL and has no other NUL")
WEXT_VERSION = _rule("xenstore.watch_data_extended.version_1", R, "WATCH_DATA_EXTENDED",
                     "WATCH_DATA_EXTENDED is valid only in version 2 and later")
WEXT_CONN_UNKNOWN = _rule("xenstore.watch_data_extended.conn_unknown", R, "WATCH_DATA_EXTENDED",
                          "conn-id names a connection defined by an earlier CONNECTION_DATA")
WEXT_WPATH_NUL = _rule("xenstore.watch_data_extended.wpath_nul", R, "WATCH_DATA_EXTENDED",
                       "wpath-len counts wpath's NUL terminator: wpath ends with NUL and has no other NUL")
WEXT_TOKEN_NUL = _rule("xenstore.watch_data_extended.token_nul", R, "WATCH_DATA_EXTENDED",
                       "token-len counts token's NUL terminator: token ends with NUL and has no other NUL")
WEXT_PAD = _rule("xenstore.watch_data_extended.pad", W, "WATCH_DATA_EXTENDED",
                 "pad is written as zero and ignored when read")

# TRANSACTION_DATA
TX_CONN_UNKNOWN = _rule("xenstore.transaction_data.conn_unknown", R, "TRANSACTION_DATA",
                        "conn-id names a connection defined by an earlier CONNECTION_DATA")
TX_ID_ZERO = _rule("xenstore.transaction_data.tx_id_zero", E, "TRANSACTION_DATA",
                   "tx-id is what TRANSACTION_START returned, never 0 (0 means 'no transaction' "
                   "in the xenstore protocol); the migration spec itself does not say so")

# NODE_DATA
NODE_CONN_UNKNOWN = _rule("xenstore.node_data.conn_unknown", R, "NODE_DATA",
                          "a pending node's conn-id names a connection defined by an earlier "
                          "CONNECTION_DATA")
NODE_TX_UNKNOWN = _rule("xenstore.node_data.tx_unknown", R, "NODE_DATA",
                        "a pending node's transaction (conn-id, tx-id) has an earlier TRANSACTION_DATA")
PATH_NUL = _rule("xenstore.node_data.path_nul", R, "NODE_DATA",
                 "path-len counts path's NUL terminator: path ends with NUL and has no other NUL")
PATH_ABSOLUTE = _rule("xenstore.node_data.path_absolute", R, "NODE_DATA",
                      "path is absolute: it starts with '/'")
PATH_SPECIAL = _rule("xenstore.node_data.path_special", E, "NODE_DATA",
                     "path is absolute, yet C xenstored writes its special nodes @releaseDomain and "
                     "@introduceDomain as NODE_DATA; the spec neither allows nor forbids them")
PERM_LETTER = _rule("xenstore.node_data.perm_letter", R, "NODE_DATA",
                    "each permission's perm is one of the ASCII letters w, r, b, n")
PERM_FLAGS_RESERVED = _rule("xenstore.node_data.perm_flags_reserved", E, "NODE_DATA",
                            "a permission's flags has only 0x01 (stale) defined; the spec does not "
                            "say what a reader does with other bits")
PERM_COUNT_ZERO = _rule("xenstore.node_data.perm_count_zero", R, "NODE_DATA",
                        "a committed node has at least one permission: perm1 names its owner "
                        "(perm-count 0 marks a node deleted in a pending transaction)")
PARENT_UNKNOWN = _rule("xenstore.node_data.parent_unknown", R, "NODE_DATA",
                       "in a live-update stream (after GLOBAL_DATA) a committed node's parent is '/' "
                       "or an earlier committed NODE_DATA: xenstored restores a live update into a "
                       "database holding only '/'")
PARENT_OUTSIDE = _rule("xenstore.node_data.parent_outside_stream", E, "NODE_DATA",
                       "in a migration stream (no GLOBAL_DATA) a committed node's parent is '/' or "
                       "an earlier committed NODE_DATA; it may instead be in the receiver's database, "
                       "which a stand-alone reader cannot see")
TX_ID_COMMITTED = _rule("xenstore.node_data.tx_id_committed", W, "NODE_DATA",
                        "tx-id of a committed node (conn-id 0) is ignored; a writer leaves it 0")
ACCESS_COMMITTED = _rule("xenstore.node_data.access_committed", W, "NODE_DATA",
                         "access of a committed node (conn-id 0) is ignored; a writer leaves it 0")
ACCESS_RESERVED = _rule("xenstore.node_data.access_reserved", E, "NODE_DATA",
                        "access is an OR of 0x0001 (read) and 0x0002 (written); the spec does not "
                        "say what other bits mean")
DELETED_NOT_EMPTY = _rule("xenstore.node_data.deleted_not_empty", W, "NODE_DATA",
                          "a node deleted in a pending transaction (perm-count 0) has value-len 0 "
                          "and access 0")

# GLOBAL_QUOTA_DATA, DOMAIN_DATA
GQ_NAMES = _rule("xenstore.global_quota_data.names_count", R, "GLOBAL_QUOTA_DATA",
                 "quota-names holds exactly n-dom-quota + n-glob-quota NUL-terminated names, one "
                 "per quota-val")
GQ_DUPLICATE = _rule("xenstore.global_quota_data.duplicate", E, "GLOBAL_QUOTA_DATA",
                     "at most one GLOBAL_QUOTA_DATA; the spec describes one set of global quota but "
                     "does not say how many records carry it")
DOM_NAMES = _rule("xenstore.domain_data.names_count", R, "DOMAIN_DATA",
                  "quota-names holds exactly n-quota NUL-terminated names, one per quota-val")
DOM_DUPLICATE = _rule("xenstore.domain_data.duplicate", R, "DOMAIN_DATA",
                      "DOMAIN_DATA is present at most once for each domain")
DOM_FEATURES_V1 = _rule("xenstore.domain_data.features_v1", W, "DOMAIN_DATA",
                        "features is valid only from version 2: a version 1 stream has it zero "
                        "and a reader ignores it")
DOM_UNKNOWN = _rule("xenstore.domain_data.domain_unknown", E, "DOMAIN_DATA",
                    "the domain was named earlier (a shared ring connection's domid or tdomid, or "
                    "a committed node's owner); C xenstored requires this, the spec does not")

_PER_TYPE = {
    RecordType.WATCH_DATA: (WATCH_CONN_UNKNOWN, WATCH_WPATH_NUL, WATCH_TOKEN_NUL),
    RecordType.WATCH_DATA_EXTENDED: (WEXT_CONN_UNKNOWN, WEXT_WPATH_NUL, WEXT_TOKEN_NUL),
}

_NAMES = {t.value: t.name for t in RecordType}


def record_name(rtype: int) -> str:
    return _NAMES.get(rtype) or f"reserved type 0x{rtype:08x}"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


class _Short(Exception):
    """A part of a body does not fit in the body's remaining length."""

    def __init__(self, offset: int, need: int, left: int, what: str):
        super().__init__(what)
        self.offset, self.need, self.left, self.what = offset, need, left, what


class _State:
    """What the cross-record rules remember (see the module docstring)."""

    __slots__ = ("conns", "transactions", "domids", "domain_data", "known", "live_update",
                 "global_data", "global_quota", "last_tx")

    def __init__(self):
        budget = spill.Budget()  # the memory the three sets share
        self.conns = IntSet(budget=budget)         # conn-ids
        self.transactions = IntSet(budget=budget)  # pair(conn-id, tx-id)
        #: the last pending node's pair(conn-id, tx-id) whose connection and transaction were
        #: both known (they stay known): a transaction's nodes come together
        self.last_tx = -1
        self.domids: set[int] = set()
        self.domain_data: set[int] = set()
        self.known = PathSet((PATH_SEP,), budget)
        self.live_update = False
        self.global_data = False
        self.global_quota = False

    def close(self) -> None:
        for s in (self.conns, self.transactions, self.known):
            s.close()


class XenstoreReader:
    """Reads (and validates) a xenstore stream from a :class:`Source`.

    :meth:`items` yields :class:`~.framing.Item` s: the header, then each
    record up to and including END (``value`` is None unless ``collect``, or
    when the record cannot be decoded; always None for END).  When not collecting, the records that
    :meth:`_node_data_run` passes over are not yielded; ``counts`` (records
    by type, in order of first appearance) counts every record before END.
    """

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False):
        self.src = src
        self.checker = checker
        self.collect = collect
        self.header: Header | None = None
        self.endian = Endian.LITTLE
        self.version = 2
        self.index = 0
        self.state = _State()
        self._end = 0  # absolute offset of the end of the current body
        self._domid = _DOMID.le
        self._node = NODE_DATA.reader(Endian.LITTLE)  # NODE_DATA's fixed part, by name
        self._node_record = _NODE_RECORD.le
        self.counts: dict[int, int] = {}

    # -- truncation ------------------------------------------------------------
    def _truncated(self, t: Truncated):
        self.checker.fail(TRUNCATED, t.end, t.describe())

    # -- the body cursor -----------------------------------------------------------
    def take(self, n: int, what: str) -> bytes:
        """``n`` octets of the current body; :class:`_Short` when the body has fewer left."""
        src = self.src
        left = self._end - src.offset
        if n > left:
            raise _Short(src.offset, n, left, what)
        return src.read_exact(n, what)

    def skip_rest(self, what: str) -> None:
        left = self._end - self.src.offset
        if left > 0:
            self.src.skip(left, what)

    def tail(self) -> bytes:
        """Check the octets after a body's last field; the kept ``trailing`` octets."""
        src = self.src
        left = self._end - src.offset
        if not left:
            return b""
        offset = src.offset
        if left < 8:
            rest = src.read_exact(left, "body octets after the last field")
            if any(rest):
                self.checker.report(BODY_EXCESS, offset,
                                    f"{left} octets after the last field, not all zero")
            else:
                self.checker.report(BODY_EXCESS, offset,
                                    f"{left} zero octets after the last field (len counts the "
                                    "padding, as C xenstored writes it)")
            return rest
        self.checker.report(BODY_EXCESS, offset, f"{left} octets after the last field")
        if self.collect:
            return src.read_exact(left, "body octets after the last field")
        src.skip(left, "body octets after the last field")
        return b""

    # -- header ----------------------------------------------------------------
    def read_header(self) -> Header:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "header")
        base = src.offset
        try:
            fixed = HEADER.named(Endian.BIG, src.read_exact(HEADER.size, "header"))
        except Truncated as t:
            self._truncated(t)
        ident, version, flags = fixed.ident, fixed.version, fixed.flags
        if ident != IDENT:
            ck.fail(IDENT_RULE, base, f"ident is {ident!r}, not b'xenstore'")
        if version not in VERSIONS:
            ck.fail(VERSION_RULE, HEADER.at(base, "version"), f"version is {version}, not 1 or 2")
        if flags & ~FLAG_ENDIAN:
            ck.report(FLAGS_RESERVED, HEADER.at(base, "flags"),
                      f"reserved flags bits set: 0x{flags & ~FLAG_ENDIAN:08x}")
        self.endian = Endian.from_bit(flags)
        self._domid = _DOMID.of(self.endian)
        self._node = NODE_DATA.reader(self.endian)
        self._node_record = _NODE_RECORD.of(self.endian)
        self.version = version
        self.header = Header(version, self.endian, flags & ~FLAG_ENDIAN)
        ck.note(f"xenstore header: version {version}, {self.endian.value}-endian")
        return self.header

    # -- records -----------------------------------------------------------------
    def items(self) -> Iterator[tuple]:
        offset = self.src.offset
        header = self.read_header()
        yield make_item((offset, "header", header))
        src, ck = self.src, self.checker
        hdr_struct = RECORD_HEADER.of(self.endian)
        parsers = _PARSERS
        counts = self.counts
        run = self._node_data_run if not self.collect and fastpath.ENABLED else None
        try:
            while True:
                if run is not None:
                    run()
                offset = src.offset
                try:
                    rtype, length = src.unpack(hdr_struct, "record header")
                except Truncated as t:
                    ck.at(LAYER, self.index, "record header")
                    if t.got:
                        raise
                    ck.fail(TRUNCATED, offset, "input ends without an END record")
                h = make_header((rtype, length, offset))
                ck.at(LAYER, self.index, _NAMES.get(rtype) or record_name(rtype))
                self._end = offset + 8 + length
                if rtype == RecordType.END:
                    if length:
                        ck.report(END_LENGTH, h.length_offset, f"END has body length {length}, not 0")
                        src.skip(length, "END body")
                    check_padding(src, h, ck, PADDING)
                    if not src.at_eof():
                        ck.at(LAYER, self.index + 1, "after END")
                        ck.report(TRAILING_DATA, src.offset, "data follows the END record")
                    yield make_item((offset, h, None))
                    return
                parser = parsers.get(rtype)
                if parser is None:
                    value = self._unknown(h)
                else:
                    need = MIN_VERSION.get(rtype)
                    if need and self.version < need:
                        ck.report(WEXT_VERSION, offset,
                                  f"{_NAMES[rtype]} in a version {self.version} stream")
                    try:
                        value = parser(self, h)
                    except _Short as s:
                        ck.report(BODY_SHORT, s.offset,
                                  f"the {s.what} needs {s.need} octets but the body has {s.left} left "
                                  f"(len {length})")
                        self.skip_rest(f"{_NAMES[rtype]} body")
                        value = None
                if length & 7:
                    check_padding(src, h, ck, PADDING)
                self.index += 1
                counts[rtype] = counts.get(rtype, 0) + 1
                yield make_item((offset, h, value))
        except Truncated as t:
            self._truncated(t)
        finally:  # a set that spilled lets go of its temporary file now, not when collected
            self.state.close()

    def _node_data_run(self) -> None:
        """Validation fast path: pass over buffered committed NODE_DATA records that obey every rule.

        A record is taken here only when all of it (header, body, padding) has
        already arrived and the predicates of the rules that apply to it hold:
        type NODE_DATA; conn-id 0 and tx-id, access 0 (TX_ID_COMMITTED,
        ACCESS_COMMITTED); perm-count > 0 (PERM_COUNT_ZERO); every permission
        matching ``_GOOD_PERMS`` (PERM_LETTER, PERM_FLAGS_RESERVED); len exactly
        :func:`node_body_length` (BODY_SHORT, BODY_EXCESS); zero padding
        (PADDING); a path that ends with its only NUL (PATH_NUL), starts with
        '/' (PATH_ABSOLUTE, PATH_SPECIAL) and whose :func:`parent_of` is known
        (PARENT_UNKNOWN, PARENT_OUTSIDE).  For such a record it does what
        :func:`_parse_node` does and nothing more: add the owner (perm1's
        domid) to the named domains and the path to the known nodes.
        Anything else, and every record that is not NODE_DATA, stops the run
        and goes through :func:`_parse_node` or its own parser, which checks
        it and reports what it breaks; so this path can only skip work (the
        checker's location, the copies of body parts), never a finding.  Values
        are passed over in the buffer, never copied.
        """
        buf, pos = self.src.window()
        end = len(buf)
        head, owner = self._node_record, self._domid
        known, domids = self.state.known, self.state.domids
        find, add, last, last_i = known.find, known.add_child, None, -1
        node_data, good_perms = RecordType.NODE_DATA, _GOOD_PERMS.fullmatch
        # node_body_length, padding_length and parent_of, inlined: a call per node costs a
        # tenth of the run (the sizes are the layouts', tests/test_fastpath.py holds them equal)
        fixed, perms_at, body_at = _NODE_RECORD.size, _NODE_RECORD.size + _DOMID_AT, RECORD_HEADER.size
        perm_size, sep, root, fields = NODE_PERMISSION.size, PATH_SEP[0], PATH_SEP, NODE_DATA.size
        n = 0
        while pos + fixed <= end:
            rtype, length, conn_id, tx_id, plen, vlen, access, nperm = head.unpack_from(buf, pos)
            if rtype != node_data or conn_id or tx_id or access or not nperm or not plen:
                break
            at = pos + fixed + perm_size * nperm  # the path
            stop = pos + body_at + length    # the end of the body; the padding follows
            following = stop + (-length & 7)
            if length != fields + perm_size * nperm + plen + vlen or following > end:
                break
            if buf.count(0, stop, following) != following - stop:
                break
            if good_perms(buf, pos + fixed, at) is None:
                break
            if buf[at] != sep or buf.find(0, at, at + plen) != at + plen - 1:
                break
            name = buf[at:at + plen - 1]
            cut = name.rfind(root)
            parent = name[:cut] if cut > 0 else root
            if parent != last:  # known paths stay known: the last parent found needs no second look
                pi = find(parent)
                if pi < 0:
                    break
                last, last_i = parent, pi
            add(name, last_i, cut)
            domids.add(owner.unpack_from(buf, pos + perms_at)[0])
            pos = following
            n += 1
        if n:
            self.src.consume_to(pos)
            self.index += n
            self.counts[RecordType.NODE_DATA] = self.counts.get(RecordType.NODE_DATA, 0) + n

    def _unknown(self, h: RecordHeader):
        self.checker.report(TYPE_RESERVED, h.offset, f"record type 0x{h.type:08x} is reserved")
        if self.collect:
            return RawRecord(h.type, self.src.read_exact(h.body_length, "reserved record body"),
                                 LAYER)
        self.src.skip(h.body_length, "reserved record body")
        return None


# -- parsers, one per record type ------------------------------------------------


def _parse_global(r: XenstoreReader, h: RecordHeader):
    st = r.state
    if st.global_data:
        r.checker.report(GLOBAL_DUPLICATE, h.offset, "second GLOBAL_DATA record")
    st.global_data = st.live_update = True
    fixed = GLOBAL_DATA.named(r.endian, r.take(GLOBAL_DATA.size, "GLOBAL_DATA fields"))
    trailing = r.tail()
    return GlobalData(fixed.rw_socket_fd, fixed.evtchn_fd, trailing) if r.collect else None


def _parse_connection(r: XenstoreReader, h: RecordHeader):
    ck, st, endian = r.checker, r.state, r.endian
    base = h.body_offset
    fixed = CONNECTION_DATA.named(endian, r.take(CONNECTION_DATA.size, "CONNECTION_DATA fields"))
    conn_id, ctype, fields, resp_len = fixed.conn_id, fixed.conn_type, fixed.fields, fixed.out_resp_len
    in_len, out_len = fixed.in_data_len, fixed.out_data_len
    if conn_id == 0:
        ck.report(CONN_ID_ZERO, CONNECTION_DATA.at(base, "conn-id"), "conn-id is 0")
    elif conn_id in st.conns:
        ck.report(CONN_ID_DUPLICATE, CONNECTION_DATA.at(base, "conn-id"),
                  f"conn-id {conn_id} was defined by an earlier record")
    else:
        st.conns.add(conn_id)
    if ctype == ConnType.SOCKET:
        sock = SOCKET_SPEC.named(endian, fixed.conn_spec)
        if sock.pad:
            ck.report(SOCKET_PAD, SOCKET_SPEC.at(CONNECTION_DATA.at(base, "conn-spec"), "pad"),
                      f"socket pad is 0x{sock.pad:08x}")
        cspec = Socket(sock.socket_fd, sock.pad)
    elif ctype == ConnType.SHARED_RING:
        ring = SHARED_RING_SPEC.named(endian, fixed.conn_spec)
        st.domids.add(ring.domid)
        if ring.tdomid != DOMID_INVALID:
            st.domids.add(ring.tdomid)
        cspec = SharedRing(ring.domid, ring.evtchn, ring.tdomid)
    else:
        ck.report(CONN_TYPE_RESERVED, CONNECTION_DATA.at(base, "conn-type"),
                  f"conn-type 0x{ctype:04x} is reserved")
        r.skip_rest("CONNECTION_DATA body")
        return None
    if fields & ~FIELD_UNIQUE_ID:
        ck.report(FIELDS_RESERVED, CONNECTION_DATA.at(base, "fields"),
                  f"fields has reserved flags 0x{fields & ~FIELD_UNIQUE_ID:04x}")
    if resp_len > out_len:
        ck.report(OUT_RESP_LEN, CONNECTION_DATA.at(base, "out-resp-len"),
                  f"out-resp-len {resp_len} exceeds out-data-len {out_len}")
    if r.collect:
        data = r.take(in_len + out_len, "pending data")
        in_data, out_data = data[:in_len], data[in_len:]
    else:
        left = r._end - r.src.offset
        if in_len + out_len > left:
            raise _Short(r.src.offset, in_len + out_len, left, "pending data")
        r.src.skip(in_len + out_len, "pending data")
        in_data = out_data = b""
    if fields & ~FIELD_UNIQUE_ID:
        r.skip_rest("CONNECTION_DATA additional fields")  # their layout is unknown
        return None
    unique_id = None
    if fields & FIELD_UNIQUE_ID:
        npad = padding_length(r.src.offset - base)
        at = r.src.offset
        pad = r.take(npad, "padding before unique-id")
        if any(pad):
            first = next(i for i, b in enumerate(pad) if b)
            ck.report(UNIQUE_ID_PADDING, at + first, f"padding octet {first} is 0x{pad[first]:02x}")
        unique_id = UNIQUE_ID.named(endian, r.take(UNIQUE_ID.size, "unique-id")).unique_id
        if ctype == ConnType.SOCKET:
            ck.report(UNIQUE_ID_SOCKET, CONNECTION_DATA.at(base, "fields"),
                      "unique-id on a socket connection")
    trailing = r.tail()
    if not r.collect:
        return None
    return ConnectionData(conn_id, cspec, in_data, out_data, resp_len, unique_id, trailing)


PATH_SEP = b"/"


def node_body_length(nperm: int, plen: int, vlen: int) -> int:
    """NODE_DATA's len: the fixed fields, ``nperm`` permissions, the path and the value."""
    return NODE_DATA.offset("perms", nperm) + plen + vlen


def parent_of(path: bytes) -> bytes:
    """The parent of an absolute path (``/`` for ``/local``)."""
    cut = path.rfind(PATH_SEP)
    return path[:cut] if cut > 0 else PATH_SEP


def _perm_at(base: int, i: int, name: str) -> int:
    """The offset of field ``name`` of NODE_DATA's permission ``i`` (the body starts at ``base``)."""
    return NODE_PERMISSION.at(NODE_DATA.at(base, "perms", i), name)


def _check_string(ck: Checker, rule: str, s: bytes, offset: int, what: str) -> None:
    """``s`` (its length field's worth of octets) ends with its only NUL."""
    n = len(s)
    if not n:
        ck.report(rule, offset, f"{what} length is 0: no room for the NUL terminator")
        return
    first = s.find(0)
    if first < 0:
        ck.report(rule, offset + n - 1, f"{what} does not end with NUL")
    elif first != n - 1:
        ck.report(rule, offset + first, f"{what} has a NUL at octet {first} of {n}")


def _parse_watch(r: XenstoreReader, h: RecordHeader):
    ck, st = r.checker, r.state
    base = h.body_offset
    extended = h.type == RecordType.WATCH_DATA_EXTENDED
    conn_rule, wpath_rule, token_rule = _PER_TYPE[h.type]
    layout = WATCH_DATA_EXTENDED if extended else WATCH_DATA
    fixed = layout.named(r.endian, r.take(layout.size, f"{layout.name} fields"))
    conn_id, wlen, tlen = fixed.conn_id, fixed.wpath_len, fixed.token_len
    if extended and fixed.pad:
        ck.report(WEXT_PAD, WATCH_DATA_EXTENDED.at(base, "pad"), f"pad is 0x{fixed.pad:04x}")
    if conn_id not in st.conns:
        ck.report(conn_rule, layout.at(base, "conn-id"), f"conn-id {conn_id} has no earlier CONNECTION_DATA")
    at = r.src.offset
    data = r.take(wlen + tlen, "wpath and token")
    wpath, token = data[:wlen], data[wlen:]
    _check_string(ck, wpath_rule, wpath, at, "wpath")
    _check_string(ck, token_rule, token, at + wlen, "token")
    trailing = r.tail()
    if not r.collect:
        return None
    if extended:
        return WatchDataExtended(conn_id, wpath[:-1], token[:-1], fixed.depth, fixed.pad, trailing)
    return WatchData(conn_id, wpath[:-1], token[:-1], trailing)


def _parse_transaction(r: XenstoreReader, h: RecordHeader):
    ck, st = r.checker, r.state
    base = h.body_offset
    fixed = TRANSACTION_DATA.named(r.endian, r.take(TRANSACTION_DATA.size, "TRANSACTION_DATA fields"))
    conn_id, tx_id = fixed.conn_id, fixed.tx_id
    if conn_id not in st.conns:
        ck.report(TX_CONN_UNKNOWN, TRANSACTION_DATA.at(base, "conn-id"),
                  f"conn-id {conn_id} has no earlier CONNECTION_DATA")
    if tx_id == 0:
        ck.report(TX_ID_ZERO, TRANSACTION_DATA.at(base, "tx-id"), "tx-id is 0")
    st.transactions.add(pair(conn_id, tx_id))
    trailing = r.tail()
    return TransactionData(conn_id, tx_id, trailing) if r.collect else None


def _parse_node(r: XenstoreReader, h: RecordHeader):
    ck, st = r.checker, r.state
    base = h.body_offset
    fixed = r._node(r.take(NODE_DATA.size, "NODE_DATA fields"))
    conn_id, tx_id, access, nperm = fixed.conn_id, fixed.tx_id, fixed.access, fixed.perm_count
    plen, vlen = fixed.path_len, fixed.value_len
    psize = NODE_PERMISSION.size * nperm
    var = r.take(psize + plen + vlen, "permissions, path and value")
    perms = var[:psize]
    path = var[psize:psize + plen]
    poff = base + _PERMS_AT + psize  # the path

    if perms:
        letters = perms[_PERM_AT::NODE_PERMISSION.size]
        if letters.translate(None, PERM_LETTERS):
            i = next(i for i, c in enumerate(letters) if c not in PERM_LETTERS)
            ck.report(PERM_LETTER, _perm_at(base, i, "perm"), f"perm{i + 1} is 0x{letters[i]:02x}, not w, r, b or n")
        flags = perms[_FLAGS_AT::NODE_PERMISSION.size]
        if flags.translate(None, GOOD_PERM_FLAGS):
            i = next(i for i, c in enumerate(flags) if c & ~PERM_FLAGS_KNOWN)
            ck.report(PERM_FLAGS_RESERVED, _perm_at(base, i, "flags"), f"perm{i + 1} flags 0x{flags[i]:02x}")

    pending = conn_id != 0
    if pending:
        key = pair(conn_id, tx_id)
        if key == st.last_tx:
            pass
        elif conn_id not in st.conns:
            ck.report(NODE_CONN_UNKNOWN, base, f"conn-id {conn_id} has no earlier CONNECTION_DATA")
        elif key not in st.transactions:
            ck.report(NODE_TX_UNKNOWN, NODE_DATA.at(base, "tx-id"),
                      f"transaction {tx_id} of connection {conn_id} has no earlier TRANSACTION_DATA")
        else:
            st.last_tx = key
        if access & ~ACCESS_KNOWN:
            ck.report(ACCESS_RESERVED, NODE_DATA.at(base, "access"), f"access 0x{access:04x} has undefined bits")
        if not nperm and (vlen or access):
            ck.report(DELETED_NOT_EMPTY, NODE_DATA.at(base, "value-len" if vlen else "access"),
                      f"deleted node (perm-count 0) with value-len {vlen}, access 0x{access:04x}")
    else:
        if tx_id:
            ck.report(TX_ID_COMMITTED, NODE_DATA.at(base, "tx-id"), f"committed node with tx-id {tx_id}")
        if access:
            ck.report(ACCESS_COMMITTED, NODE_DATA.at(base, "access"), f"committed node with access 0x{access:04x}")
        if not nperm:
            ck.report(PERM_COUNT_ZERO, NODE_DATA.at(base, "perm-count"), "committed node without permissions")
        else:
            st.domids.add(r._domid.unpack_from(perms, _DOMID_AT)[0])

    if plen and path.find(0) == plen - 1:
        name = path[:-1]
        if name[:1] == b"@":
            ck.report(PATH_SPECIAL, poff, f"special node {name!r} is not an absolute path")
        elif name[:1] != PATH_SEP:
            ck.report(PATH_ABSOLUTE, poff, f"path {name[:64]!r} is not absolute")
        elif not pending:
            cut = name.rfind(PATH_SEP)
            parent = name[:cut] if cut > 0 else PATH_SEP  # parent_of(name)
            known = st.known
            pi = known.find(parent)
            if pi < 0:
                rule = PARENT_UNKNOWN if st.live_update else PARENT_OUTSIDE
                ck.report(rule, poff, f"parent {parent[:64]!r} of {name[:64]!r} is not known")
            known.add(name, pi, cut)
    else:
        _check_string(ck, PATH_NUL, path, poff, "path")

    trailing = r.tail() if r._end != r.src.offset else b""
    if not r.collect:
        return None
    plist = tuple(starmap(Permission.from_wire, NODE_PERMISSION.of(r.endian).iter_unpack(perms)))
    return NodeData(path[:-1], var[psize + plen:], plist, conn_id, tx_id, access, trailing)


def _read_quota(r: XenstoreReader, count: int, rule: str):
    """quota-val and quota-names of ``count`` quotas; the Quota tuple (when collecting) and trailing.

    The names part runs to the end of the body and is read in pieces, so a
    hostile ``len`` costs no more than the input holds.
    """
    ck, src = r.checker, r.src
    vals = r.take(QUOTA_VAL.size * count, "quota-val array")
    left = r._end - src.offset
    names: list[bytes] = []
    cur: list[bytes] = []
    found = 0
    # where the octets after the last name start (all of quota-names when there are no names)
    excess_at = src.offset if count == 0 else src.offset + left
    nonzero_at = -1
    chunk_at = src.offset
    for chunk in src.chunks(left, "quota-names"):
        pos = 0
        while found < count:
            j = chunk.find(0, pos)
            if j < 0:
                if r.collect:
                    cur.append(chunk[pos:])
                pos = len(chunk)
                break
            if r.collect:
                cur.append(chunk[pos:j])
                names.append(b"".join(cur))
                cur = []
            found += 1
            pos = j + 1
            if found == count:
                excess_at = chunk_at + pos
        if found >= count and nonzero_at < 0 and pos < len(chunk):
            rest = chunk[pos:]
            if rest.strip(b"\0"):
                nonzero_at = chunk_at + pos + next(i for i, b in enumerate(rest) if b)
        chunk_at += len(chunk)
    end = r._end
    trailing = b""
    if found < count:
        ck.report(rule, end, f"quota-names holds {found} NUL-terminated names for {count} values")
    elif nonzero_at >= 0:
        ck.report(rule, nonzero_at, f"quota-names holds more than {count} names")
    elif end > excess_at:
        n = end - excess_at
        ck.report(BODY_EXCESS, excess_at,
                  f"{n} zero octets after the last quota name"
                  + (" (len counts the padding, as C xenstored writes it)" if n < 8 else ""))
        trailing = bytes(n) if r.collect else b""
    if not r.collect or found < count:
        return None, trailing
    values = [v for (v,) in QUOTA_VAL.of(r.endian).iter_unpack(vals)]
    return tuple(Quota(n, v) for n, v in zip(names, values)), trailing


def _parse_global_quota(r: XenstoreReader, h: RecordHeader):
    st = r.state
    if st.global_quota:
        r.checker.report(GQ_DUPLICATE, h.offset, "second GLOBAL_QUOTA_DATA record")
    st.global_quota = True
    fixed = GLOBAL_QUOTA_DATA.named(r.endian, r.take(GLOBAL_QUOTA_DATA.size, "GLOBAL_QUOTA_DATA fields"))
    n_dom, n_glob = fixed.n_dom_quota, fixed.n_glob_quota
    quota, trailing = _read_quota(r, n_dom + n_glob, GQ_NAMES)
    if quota is None:
        return None
    return GlobalQuotaData(quota[:n_dom], quota[n_dom:], trailing)


def _parse_domain(r: XenstoreReader, h: RecordHeader):
    ck, st = r.checker, r.state
    base = h.body_offset
    fixed = DOMAIN_DATA.named(r.endian, r.take(DOMAIN_DATA.size, "DOMAIN_DATA fields"))
    domid, n_quota, features = fixed.domain_id, fixed.n_quota, fixed.features
    if domid in st.domain_data:
        ck.report(DOM_DUPLICATE, DOMAIN_DATA.at(base, "domain-id"), f"second DOMAIN_DATA for domain {domid}")
    elif domid not in st.domids:
        ck.report(DOM_UNKNOWN, DOMAIN_DATA.at(base, "domain-id"),
                  f"domain {domid} was not named by an earlier record")
    st.domain_data.add(domid)
    if features and r.version < 2:
        ck.report(DOM_FEATURES_V1, DOMAIN_DATA.at(base, "features"),
                  f"features 0x{features:08x} in a version 1 stream")
    quota, trailing = _read_quota(r, n_quota, DOM_NAMES)
    if quota is None:
        return None
    return DomainData(domid, quota, features, trailing)


_PARSERS = {
    RecordType.GLOBAL_DATA: _parse_global,
    RecordType.CONNECTION_DATA: _parse_connection,
    RecordType.WATCH_DATA: _parse_watch,
    RecordType.WATCH_DATA_EXTENDED: _parse_watch,
    RecordType.TRANSACTION_DATA: _parse_transaction,
    RecordType.NODE_DATA: _parse_node,
    RecordType.GLOBAL_QUOTA_DATA: _parse_global_quota,
    RecordType.DOMAIN_DATA: _parse_domain,
}


# --------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker) -> None:
    """Validate a xenstore stream (streaming; bounded memory, see the module docstring)."""
    reader = XenstoreReader(src, checker)
    for _ in reader.items():
        pass
    if checker.verbose:
        checker.note("xenstore records: "
                     + ", ".join(f"{n} {record_name(t)}" for t, n in reader.counts.items()))


def decode(data, *, role: Role = Role.RESTORE) -> XenstoreStream:
    """Typed value of a xenstore stream; StreamError on the first finding ``role`` refuses."""
    checker = Checker(role, fail_fast=True)
    reader = XenstoreReader(as_source(data), checker, collect=True)
    header = None
    records = []
    for _, h, value in reader.items():
        if h == "header":
            header = value
        elif value is not None:
            records.append(value)
    return XenstoreStream(header, tuple(records))


def iter_values(src: Source, checker: Checker) -> Iterator[Item]:
    """The reader's items with values collected, for :mod:`.xenstore_dump`."""
    return XenstoreReader(src, checker, collect=True).items()


def _dump(src: Source, checker: Checker):
    from .xenstore_dump import dump
    return dump(src, checker)


def _render_text(items):
    from .xenstore_dump import render_text
    return render_text(items)


def spans(data: bytes, options=None) -> tuple[list, int]:
    """The header and each whole record; where the walk stopped."""
    out: list = []
    if len(data) < HEADER.size:
        return out, 0
    out.append((0, HEADER.size, "xenstore-header"))
    at = HEADER.size
    for start, end, _ in frames(data, at, Endian.from_bit(HEADER.get(Endian.BIG, data, "flags"))):
        if len(out) >= MAX_SPANS:
            break
        out.append((start, end, LAYER))
        at = end
    return out, at


CODEC = Codec(
    name="xenstore",
    description="xenstore migration / live-update stream v1/v2 (xenstore-migration.md)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=_dump,
    render_text=_render_text,
    sniff=sniffer(HEADER, "version", "flags"),
    recognise=by_magic((IDENT, "the xenstore migration header's ident \"xenstore\"")),
    spans=spans,
)

__all__ = ["CODEC", "LAYER", "XenstoreReader", "decode", "encode", "validate", "record_name",
           "StreamError"]
