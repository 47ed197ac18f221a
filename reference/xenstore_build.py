"""Builders of realistic xenstore streams, for the examples and the strategies.

:func:`live_update_state` builds what C xenstored dumps for a live update of
a host with a few guests (global state and quota, a socket connection for the
toolstack and a shared ring per domain, their watches, the node tree with the
usual permissions, DOMAIN_DATA), optionally with open transactions that hold
pending and deleted nodes.  :func:`migration_state` builds the smaller stream
for one migrating domain.  :func:`c_style` encodes a stream the way C
xenstored frames it (``len`` counting the padding).
"""

from __future__ import annotations

from .framing import encode_record
from .layout import Endian
from .xenstore_records import (
    ACCESS_READ, ACCESS_WRITTEN, DOMID_INVALID, ConnectionData, DomainData, GlobalData,
    GlobalQuotaData, Header, NodeData, Permission, Quota, RecordType, SharedRing, Socket,
    TransactionData, WatchData, WatchDataExtended, XenstoreStream, encode_body, encode_header,
)

DOM0 = 0
DOMID_ANY = 0x7FF5  # not in the spec; what C xenstored puts on @releaseDomain

GLOBAL_QUOTA = (Quota(b"nodes", 1000), Quota(b"watches", 128), Quota(b"transactions", 10),
                Quota(b"memory", 2 * 1024 * 1024), Quota(b"soft-memory", 0))


def owner(domid: int, *others: tuple[str, int]) -> tuple[Permission, ...]:
    """perm1 = ``n<domid>`` (the owner), then ``(letter, domid)`` pairs."""
    return (Permission("n", domid),) + tuple(Permission(p, d) for p, d in others)


def domain_nodes(domid: int, backend: int = DOM0) -> list[NodeData]:
    """The nodes a toolstack writes for a guest with one vif, parents first."""
    base = b"/local/domain/%d" % domid
    mine = owner(domid)
    mine_backend_r = owner(domid, ("r", backend))
    return [
        NodeData(base, b"", owner(DOM0, ("r", domid))),
        NodeData(base + b"/name", b"guest%d" % domid, mine),
        NodeData(base + b"/domid", b"%d" % domid, mine),
        NodeData(base + b"/memory", b"", mine),
        NodeData(base + b"/memory/target", b"1048576", mine),
        NodeData(base + b"/control", b"", mine),
        NodeData(base + b"/control/shutdown", b"", mine),
        NodeData(base + b"/device", b"", mine),
        NodeData(base + b"/device/vif", b"", mine),
        NodeData(base + b"/device/vif/0", b"", mine_backend_r),
        NodeData(base + b"/device/vif/0/state", b"4", mine_backend_r),
        NodeData(base + b"/device/vif/0/mac", b"00:16:3e:00:00:%02x" % (domid & 0xFF), mine_backend_r),
        NodeData(base + b"/data", b"", mine),
        # a binary value with NULs, as xenstore allows
        NodeData(base + b"/data/blob", b"\x00\x01\x02\x00xen\x00", mine),
    ]


def base_nodes() -> list[NodeData]:
    root = owner(DOM0)
    return [
        NodeData(b"/", b"", root),
        NodeData(b"/tool", b"", root),
        NodeData(b"/tool/xenstored", b"", root),
        NodeData(b"/local", b"", owner(DOM0)),
        NodeData(b"/local/domain", b"", owner(DOM0)),
        NodeData(b"/local/domain/0", b"", owner(DOM0)),
        NodeData(b"/local/domain/0/name", b"Domain-0", owner(DOM0)),
    ]


def special_nodes() -> list[NodeData]:
    """@releaseDomain and @introduceDomain, as C xenstored writes them (see docs/findings.md)."""
    return [NodeData(b"@releaseDomain", b"", (Permission("n", DOM0), Permission("r", DOMID_ANY))),
            NodeData(b"@introduceDomain", b"", owner(DOM0))]


def live_update_state(*, version: int = 2, endian: Endian = Endian.LITTLE,
                      domains: tuple[int, ...] = (1, 2, 3), transactions: bool = True,
                      specials: bool = False, watch_ext: bool | None = None) -> XenstoreStream:
    """A live-update stream of a host running ``domains`` besides dom0.

    ``transactions`` adds an open transaction on the first guest's ring with a
    modified, a read, a created and a deleted node; ``specials`` adds the
    special nodes C xenstored writes; ``watch_ext`` (default: version >= 2)
    gives each guest a depth-limited WATCH_DATA_EXTENDED besides its
    WATCH_DATA.
    """
    if watch_ext is None:
        watch_ext = version >= 2
    recs: list = [GlobalData(rw_socket_fd=5, evtchn_fd=7),
                  GlobalQuotaData(GLOBAL_QUOTA[:4], GLOBAL_QUOTA[4:])]
    # the toolstack's socket, with a partial response still being written
    recs.append(ConnectionData(1, Socket(12), out_data=b"\x02\x00\x00\x00\x07\x00\x00\x00"
                               b"\x00\x00\x00\x00\x03\x00\x00\x00OK\x00", out_resp_len=19))
    recs.append(WatchData(1, b"@releaseDomain", b"release"))
    recs.append(WatchData(1, b"@introduceDomain", b"introduce"))
    for n, domid in enumerate(domains):
        conn_id = 2 + n
        recs.append(ConnectionData(conn_id, SharedRing(domid, evtchn=20 + domid),
                                   unique_id=0x1000 + domid))
        recs.append(WatchData(conn_id, b"/local/domain/%d/control" % domid, b"ctl%d" % domid))
        if watch_ext:
            recs.append(WatchDataExtended(conn_id, b"device", b"dev%d" % domid, depth=2))
    # a device model acting for the first guest (SET_TARGET), with unprocessed input
    if domains:
        dm = 100
        recs.append(ConnectionData(2 + len(domains), SharedRing(dm, evtchn=99, tdomid=domains[0]),
                                   in_data=b"\x02\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00"
                                   b"\x05\x00\x00\x00/data", unique_id=0x2000))
    recs.extend(base_nodes())
    for domid in domains:
        recs.extend(domain_nodes(domid))
    if specials:
        recs.extend(special_nodes())
    if transactions and domains:
        domid, conn_id, tx = domains[0], 2, 7
        base = b"/local/domain/%d" % domid
        recs.append(TransactionData(conn_id, tx))
        recs.append(NodeData(base + b"/memory/target", b"2097152", owner(domid), conn_id, tx,
                             ACCESS_READ | ACCESS_WRITTEN))
        recs.append(NodeData(base + b"/name", b"guest%d" % domid, owner(domid), conn_id, tx, ACCESS_READ))
        recs.append(NodeData(base + b"/data/new", b"fresh", owner(domid), conn_id, tx, ACCESS_WRITTEN))
        recs.append(NodeData(base + b"/control/shutdown", b"", (), conn_id, tx, 0))
        recs.append(TransactionData(1, 1))
    for domid in domains:
        recs.append(DomainData(domid, (Quota(b"nodes", 2000), Quota(b"soft-memory", 0)),
                               features=1 if version >= 2 else 0))
    return XenstoreStream(Header(version, endian), tuple(recs))


def migration_state(domid: int = 5, *, version: int = 2,
                    endian: Endian = Endian.LITTLE) -> XenstoreStream:
    """A migration stream of one domain: its ring, a watch, its nodes, its DOMAIN_DATA."""
    recs: list = [ConnectionData(1, SharedRing(domid, evtchn=3)),
                  WatchData(1, b"/local/domain/%d/device" % domid, b"backend")]
    recs.append(NodeData(b"/local", b"", owner(DOM0)))
    recs.append(NodeData(b"/local/domain", b"", owner(DOM0)))
    recs.extend(domain_nodes(domid))
    recs.append(DomainData(domid, (Quota(b"nodes", 0),), features=1 if version >= 2 else 0))
    return XenstoreStream(Header(version, endian), tuple(recs))


def _whole_words(rec, endian: Endian = Endian.LITTLE):
    """``rec`` with its value (a watch: its token) lengthened by '.' until its body
    is a multiple of 8 octets."""
    while len(encode_body(rec, endian)[1]) % 8:
        if isinstance(rec, WatchData):
            rec = WatchData(rec.conn_id, rec.wpath, rec.token + b".")
        else:
            rec = NodeData(rec.path, rec.value + b".", rec.perms, rec.conn_id, rec.tx_id, rec.access)
    return rec


def _doomed(domid: int) -> bytes:
    """A node under the guest's ``data`` whose NODE_DATA without permissions or
    value (deleted in a transaction) is a whole number of words long."""
    path = b"/local/domain/%d/data/old" % domid
    while (len(path) + 1) % 8:
        path += b"x"
    return path


def c_restorable_state(*, version: int = 1, domains: tuple[int, ...] = (1, 2),
                       transactions: bool = False, dom0_ring: bool = True) -> XenstoreStream:
    """A live-update stream that C xenstored 4.17 and 4.20 can restore, and that
    follows the spec to the letter (docs/findings.md says what C xenstored needs):

    * version 1 (4.17 and 4.20 refuse any other), no GLOBAL_QUOTA_DATA,
      DOMAIN_DATA or WATCH_DATA_EXTENDED (they skip those types);
    * dom0's shared ring first: C xenstored creates its node database only
      when it restores the connection of the master domain (domain 0);
    * every record body a whole number of 8-octet words, so that the spec's
      framing (``len`` without the padding) and C xenstored's (``len``
      counting it) agree: node values end with '.' fillers where needed, ring
      connections carry a unique-id (which aligns the body), the toolstack's
      socket a 20-octet pending response;
    * the toolstack's socket connection watches two absolute paths, each guest
      its own ``control`` node;
    * nodes parent-first from ``/``.

    ``transactions`` adds an open transaction on the first guest's ring with
    a modified, a created and a deleted node, which must change nothing
    committed; ``dom0_ring=False`` leaves dom0's ring out (the spec does not
    ask for it; C xenstored cannot do without it).
    """
    le = Endian.LITTLE
    recs: list = [GlobalData(rw_socket_fd=5, evtchn_fd=7)]
    if dom0_ring:
        recs.append(ConnectionData(1, SharedRing(DOM0, evtchn=1), unique_id=0x1000))
    # a READ reply (an 8-octet value) still to be sent on the toolstack's socket
    reply = b"\x02\x00\x00\x00\x2a\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x0010485760"
    recs.append(ConnectionData(2, Socket(12), out_data=reply))
    recs.append(_whole_words(WatchData(2, b"/local/domain", b"domains")))
    recs.append(_whole_words(WatchData(2, b"/tool/xenstored", b"xenstored")))
    for n, domid in enumerate(domains):
        recs.append(ConnectionData(3 + n, SharedRing(domid, evtchn=20 + domid), unique_id=0x1000 + domid))
        recs.append(_whole_words(WatchData(3 + n, b"/local/domain/%d/control" % domid, b"c%d" % domid)))
    nodes = base_nodes()
    for domid in domains:
        nodes += domain_nodes(domid)
    if domains:  # the node the transaction deletes
        nodes.append(NodeData(_doomed(domains[0]), b"old", owner(domains[0])))
    recs += [_whole_words(n) for n in nodes]
    if transactions and domains:
        domid, conn_id, tx = domains[0], 3, 7
        base = b"/local/domain/%d" % domid
        recs.append(TransactionData(conn_id, tx))
        recs.append(_whole_words(NodeData(base + b"/memory/target", b"2097152", owner(domid),
                                          conn_id, tx, ACCESS_READ | ACCESS_WRITTEN)))
        recs.append(_whole_words(NodeData(base + b"/data/new", b"fresh", owner(domid), conn_id, tx,
                                          ACCESS_WRITTEN)))
        recs.append(NodeData(_doomed(domains[0]), b"", (), conn_id, tx, 0))
    stream = XenstoreStream(Header(version, le), tuple(recs))
    bad = [r for r in recs if len(encode_body(r, le)[1]) % 8]
    assert not bad, f"bodies not whole words: {bad}"
    return stream


def c_style(stream: XenstoreStream) -> bytes:
    """``stream`` framed as C xenstored frames it: ``len`` rounded up to 8, padding inside it."""
    endian = stream.header.endian
    parts = [encode_header(stream.header)]
    for rec in stream.records:
        rtype, body = encode_body(rec, endian)
        body += bytes(-len(body) & 7)
        parts.append(encode_record(rtype, body, endian))
    parts.append(encode_record(RecordType.END, b"", endian))
    return b"".join(parts)


__all__ = ["live_update_state", "migration_state", "c_style", "c_restorable_state", "domain_nodes", "base_nodes",
           "special_nodes", "owner", "GLOBAL_QUOTA", "DOMID_INVALID"]
