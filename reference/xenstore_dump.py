"""``xenstream dump -f xenstore``: JSON-able items and a text rendering.

:func:`dump` yields one dict per header and record, read a record at a time.
:func:`render_text` turns them into what a person reads: the global state,
connections with their watches and transactions, per-domain data, the node
tree with permissions, and the nodes of pending transactions.  The text
rendering gathers the whole stream first (to print the tree sorted), so it is
for looking at streams, not for huge ones; the JSON items are streamed.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

from .checker import Checker
from .framing import RawRecord
from .layout import Endian
from .source import Source
from .xenstore import LAYER, iter_values, record_name
from .xenstore_records import (
    ACCESS_KNOWN, ACCESS_READ, ACCESS_WRITTEN, FLAG_ENDIAN, PERM_STALE, DEPTH_UNLIMITED, DOMID_INVALID, ConnectionData, ConnType, NodeData, RecordType,
)


def octets(b: bytes) -> str:
    """Printable ASCII as itself, anything else (NUL included) as ``\\xNN``."""
    out = []
    for c in b:
        if c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def _jsonable(v):
    if isinstance(v, bytes):
        return octets(v)
    if isinstance(v, Endian):
        return v.value
    if dataclasses.is_dataclass(v):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


def describe_record(rec) -> dict:
    """The fields of a record value, JSON-able."""
    if isinstance(rec, RawRecord):
        return {"body_hex": rec.body[:256].hex(), "body_length": len(rec.body)}
    fields = _jsonable(rec)
    if isinstance(rec, ConnectionData):
        fields["conn_type"] = ConnType(rec.conn_type).name.lower()
        fields["fields"] = rec.fields
        fields["in_data_len"] = len(rec.in_data)
        fields["out_data_len"] = len(rec.out_data)
    elif isinstance(rec, NodeData):
        fields["pending"] = rec.pending
        fields["deleted"] = rec.deleted
        fields["value_len"] = len(rec.value)
    if not fields.get("trailing"):
        fields.pop("trailing", None)
    return fields


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    for offset, h, value in iter_values(src, checker):
        if h == "header":
            yield {"layer": LAYER, "kind": "header", "offset": offset,
                   "fields": {"ident": octets(value.ident), "version": value.version,
                              "endian": value.endian.value, "flags": value.flags}}
        else:
            item = {"layer": LAYER, "kind": "end" if h.type == RecordType.END else "record",
                    "offset": h.offset, "type": record_name(h.type),
                    "type_value": h.type, "body_length": h.body_length}
            if value is not None:
                item["fields"] = describe_record(value)
            yield item


# -- text --------------------------------------------------------------------


def perm_text(perms: list[dict]) -> str:
    return " ".join(f"{p['perm']}{p['domid']}" + ("(stale)" if p["flags"] & PERM_STALE else "")
                    + (f"(flags 0x{p['flags']:02x})" if p["flags"] & ~PERM_STALE else "")
                    for p in perms)


def _access_text(access: int) -> str:
    words = [w for bit, w in ((ACCESS_READ, "read"), (ACCESS_WRITTEN, "written")) if access & bit]
    if access & ~ACCESS_KNOWN:
        words.append(f"0x{access & ~ACCESS_KNOWN:x}")
    return ", ".join(words) or "none"


def _quota_text(quota: list[dict]) -> str:
    return ", ".join(f"{q['name']}={q['value'] or 'unlimited'}" for q in quota) or "(none)"


def _node_line(f: dict, label: str) -> str:
    value = f' = "{f["value"]}"' if f["value_len"] else ""
    return f"{label}{value}  [{perm_text(f['perms'])}]"


class _Text:
    """What the text rendering gathers from the items before it prints them."""

    def __init__(self):
        self.header: dict | None = None
        self.conns: dict[int, dict] = {}
        self.watches: dict[int, list[dict]] = {}
        self.txs: dict[int, list[int]] = {}
        self.pending: dict[tuple[int, int], list[dict]] = {}
        self.nodes: list[dict] = []
        self.special: list[dict] = []
        self.other: list[str] = []

    def add(self, item: dict) -> None:
        kind, f = item.get("kind"), item.get("fields")
        if kind == "header":
            self.header = f
            return
        if kind == "end" or f is None:
            return
        t = item["type"]
        if t == "GLOBAL_DATA":
            self.other.append(f"global: rw-socket-fd {f['rw_socket_fd']}, evtchn-fd {f['evtchn_fd']}")
        elif t == "GLOBAL_QUOTA_DATA":
            self.other.append(f"global quota: per domain {_quota_text(f['dom_quota'])}; "
                              f"global {_quota_text(f['glob_quota'])}")
        elif t == "DOMAIN_DATA":
            self.other.append(f"domain {f['domid']}: features 0x{f['features']:08x}, "
                              f"quota {_quota_text(f['quota'])}")
        elif t == "CONNECTION_DATA":
            self.conns[f["conn_id"]] = f
        elif t in ("WATCH_DATA", "WATCH_DATA_EXTENDED"):
            self.watches.setdefault(f["conn_id"], []).append(f)
        elif t == "TRANSACTION_DATA":
            self.txs.setdefault(f["conn_id"], []).append(f["tx_id"])
        elif t == "NODE_DATA":
            if f["pending"]:
                self.pending.setdefault((f["conn_id"], f["tx_id"]), []).append(f)
            elif f["path"].startswith("@"):
                self.special.append(f)
            else:
                self.nodes.append(f)
        else:
            self.other.append(f"{t} at offset {item['offset']}: {item['body_length']} octets")

    def lines(self) -> Iterator[str]:
        header = self.header
        if header is not None:
            yield (f"xenstore stream, version {header['version']}, {header['endian']}-endian"
                   + (f", flags 0x{header['flags']:08x}" if header["flags"] & ~FLAG_ENDIAN else ""))
        yield from self.other
        watches, txs = dict(self.watches), dict(self.txs)
        if self.conns:
            yield "connections:"
        for cid, f in self.conns.items():
            yield _conn_line(cid, f)
            for w in watches.pop(cid, []):
                depth = w.get("depth")
                extra = "" if depth is None else (" depth unlimited" if depth == DEPTH_UNLIMITED
                                                   else f" depth {depth}")
                yield f'    watch "{w["wpath"]}" token "{w["token"]}"{extra}'
            for tx in txs.pop(cid, []):
                yield f"    transaction {tx}"
        for cid, ws in watches.items():
            for w in ws:
                yield f'  (unknown connection {cid}) watch "{w["wpath"]}" token "{w["token"]}"'
        if self.nodes:
            yield "nodes:"
            for f in sorted(self.nodes, key=lambda f: f["path"].split("/")):
                path = f["path"]
                depth = 0 if path == "/" else path.count("/")
                label = "/" if path == "/" else path.rsplit("/", 1)[1]
                yield "  " + "  " * depth + _node_line(f, label)
        if self.special:
            yield "special nodes:"
            for f in self.special:
                yield "  " + _node_line(f, f["path"])
        for (cid, tx), fs in self.pending.items():
            yield f"pending in transaction {tx} of connection #{cid}:"
            for f in fs:
                if f["deleted"]:
                    yield f"  {f['path']}  deleted"
                else:
                    yield "  " + _node_line(f, f["path"]) + f"  ({_access_text(f['access'])})"


def _conn_line(cid: int, f: dict) -> str:
    spec = f["spec"]
    if f["conn_type"] == "socket":
        line = f"  #{cid} socket fd {spec['socket_fd']}"
    else:
        target = "" if spec["tdomid"] == DOMID_INVALID else f", target domain {spec['tdomid']}"
        line = f"  #{cid} shared ring, domain {spec['domid']}, evtchn {spec['evtchn']}{target}"
    if f["unique_id"] is not None:
        line += f", unique-id 0x{f['unique_id']:016x}"
    if f["in_data_len"] or f["out_data_len"]:
        line += (f"; pending in {f['in_data_len']} octets, out {f['out_data_len']} octets"
                 f" (partial response {f['out_resp_len']})")
    return line


def render_text(items: Iterable[dict]) -> Iterator[str]:
    """The whole stream for a person; what was read so far when the stream stops early."""
    text = _Text()
    try:
        for item in items:
            text.add(item)
    except Exception:
        yield from text.lines()
        yield "(the stream cannot be read further: see the finding)"
        raise
    yield from text.lines()
