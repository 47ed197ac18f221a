"""The store a stream describes, the store a daemon holds, and their differences.

:func:`expected` reads a decoded stream as a restorer must (the spec,
xenstore-migration.md): the committed nodes (``conn-id`` 0) with their values
and permissions make the store; a pending transaction's nodes
(``conn-id``/``tx-id`` set, "NODE_DATA") and nodes it deleted
(``perm-count`` 0) change nothing committed, whatever becomes of the
transaction; each shared-ring CONNECTION_DATA introduces its domain; every
WATCH_DATA of a socket connection is a watch that must still fire.

:func:`read_store` walks a daemon's store over the wire protocol
(XS_DIRECTORY, XS_READ, XS_GET_PERMS) and :func:`compare` lists the
differences, one :class:`Difference` each (path, what, expected, restored),
which :func:`render` turns into the lines of a failure message.  What cannot
be observed over a privileged socket is not compared: the ``stale`` flag of a
permission (XS_GET_PERMS does not show it), the special nodes' permissions
when the daemon answers XS_GET_PERMS on them with an error (C xenstored 4.17
answers EINVAL; 4.20 answers), quotas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xenstream.reference.xenstore_records import (
    ConnectionData, NodeData, SharedRing, Socket, WatchData, WatchDataExtended, XenstoreStream,
)

from . import wire

#: Bounds of a walk: a daemon that claims more is not read further.
MAX_NODES = 200_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Node:
    value: bytes
    perms: tuple[str, ...]  # as XS_GET_PERMS gives them: "n0", "r5", ...
    error: str = ""         # a restored node the daemon cannot answer for ("GET_PERMS: EEXIST")


@dataclass
class Expected:
    """What a daemon must hold after restoring a stream."""

    nodes: dict[bytes, Node] = field(default_factory=dict)
    #: domains with a shared-ring connection (introduced) and other domains the stream names
    introduced: set[int] = field(default_factory=set)
    named: set[int] = field(default_factory=set)
    #: socket connection fd -> [(wpath, token)]
    watches: dict[int, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    #: special nodes (@releaseDomain, @introduceDomain) -> permissions
    special: dict[bytes, tuple[str, ...]] = field(default_factory=dict)
    #: path -> the pending node records about it, to explain a difference
    pending: dict[bytes, list[NodeData]] = field(default_factory=dict)
    has_root: bool = False


def perm_strings(node: NodeData) -> tuple[str, ...]:
    return tuple(f"{p.perm}{p.domid}" for p in node.perms)


def expected(stream: XenstoreStream) -> Expected:
    out = Expected()
    fds: dict[int, int] = {}
    for rec in stream.records:
        if isinstance(rec, ConnectionData):
            if isinstance(rec.spec, SharedRing):
                out.introduced.add(rec.spec.domid)
            elif isinstance(rec.spec, Socket):
                fds[rec.conn_id] = rec.spec.socket_fd
        elif isinstance(rec, (WatchData, WatchDataExtended)):
            fd = fds.get(rec.conn_id)
            if fd is not None:
                out.watches.setdefault(fd, []).append((rec.wpath, rec.token))
        elif isinstance(rec, NodeData):
            if rec.path[:1] == b"@" and not rec.pending:
                out.special[rec.path] = perm_strings(rec)
                continue
            if rec.path[:1] != b"/":
                continue
            if rec.pending:
                out.pending.setdefault(rec.path, []).append(rec)
                continue
            out.nodes[rec.path] = Node(rec.value, perm_strings(rec))
            if rec.perms:
                out.named.add(rec.perms[0].domid)
    out.has_root = b"/" in out.nodes
    out.named -= out.introduced
    return out


class WalkError(Exception):
    pass


def read_store(client: wire.Client, root: bytes = b"/") -> dict[bytes, Node]:
    """Every node under ``root`` with its value and permissions."""
    out: dict[bytes, Node] = {}
    todo = [(root, 0)]
    while todo:
        path, depth = todo.pop()
        if len(out) >= MAX_NODES:
            raise WalkError(f"more than {MAX_NODES} nodes")
        errors = []
        value, perms, children = b"", (), []
        try:
            value = client.read(path)
        except wire.XsError as exc:
            if exc.errno == "ENOENT":  # listed by its parent, yet not there
                out[path] = Node(b"", (), "READ: ENOENT")
                continue
            errors.append(f"READ: {exc.errno}")
        try:
            perms = tuple(client.get_perms(path))
        except wire.XsError as exc:
            errors.append(f"GET_PERMS: {exc.errno}")
        try:
            children = client.directory(path)
        except wire.XsError as exc:
            errors.append(f"DIRECTORY: {exc.errno}")
        out[path] = Node(value, perms, ", ".join(errors))
        if depth >= MAX_DEPTH:
            continue
        base = path if path.endswith(b"/") else path + b"/"
        for name in children:
            todo.append((base + name, depth + 1))
        # duplicated child names are a difference of their own
        if len(set(children)) != len(children):
            dups = sorted({n for n in children if children.count(n) > 1})
            out[path + b"\0duplicates"] = Node(b",".join(dups), ())
    return out


@dataclass(frozen=True)
class Difference:
    path: str
    what: str          # missing, extra, unreadable, value, perms, duplicate-child, introduced, watch
    expected: str
    restored: str
    note: str = ""

    def line(self) -> str:
        text = f"{self.path}: {self.what}: expected {self.expected}, restored {self.restored}"
        return f"{text} ({self.note})" if self.note else text

    def to_json(self) -> dict:
        d = {"path": self.path, "what": self.what, "expected": self.expected,
             "restored": self.restored}
        if self.note:
            d["note"] = self.note
        return d


def show(b: bytes) -> str:
    from xenstream.reference.xenstore_dump import octets

    return f'"{octets(b)}"'


def _perms(p: tuple[str, ...]) -> str:
    return "[" + " ".join(p) + "]"


def _pending_note(exp: Expected, path: bytes, restored: Node | None) -> str:
    recs = exp.pending.get(path)
    if not recs:
        return ""
    for r in recs:
        if r.deleted and restored is None:
            return f"deleted in pending transaction {r.tx_id} of connection {r.conn_id}"
        if restored is not None and not r.deleted and r.value == restored.value:
            return (f"the value written in pending transaction {r.tx_id} of connection "
                    f"{r.conn_id}")
        if restored is not None and r.deleted:
            return (f"a node deleted in pending transaction {r.tx_id} of connection {r.conn_id}, "
                    "restored as a committed node")
    r = recs[0]
    return f"a pending node of transaction {r.tx_id} of connection {r.conn_id}"


def compare(exp: Expected, restored: dict[bytes, Node]) -> list[Difference]:
    """Differences between the store a stream describes and the one restored,
    sorted by path.  ``/`` is compared only when the stream has it (a receiver
    already has a root of its own)."""
    diffs: list[Difference] = []
    restored = dict(restored)
    for key in [k for k in restored if k.endswith(b"\0duplicates")]:
        path = key[:-len(b"\0duplicates")]
        names = restored.pop(key).value
        diffs.append(Difference(path.decode(errors="replace"), "duplicate-child",
                                "each child listed once",
                                f"{names.decode(errors='replace')} listed more than once"))
    for path in sorted(set(exp.nodes) | set(restored)):
        if path == b"/" and not exp.has_root:
            continue
        want, got = exp.nodes.get(path), restored.get(path)
        name = path.decode(errors="replace")
        if got is not None and got.error:
            diffs.append(Difference(name, "unreadable", "no node" if want is None else
                                    f"{show(want.value)} {_perms(want.perms)}",
                                    f"a node the daemon answers errors for ({got.error})",
                                    _pending_note(exp, path, got)))
        elif want is None:
            diffs.append(Difference(name, "extra", "no node", f"{show(got.value)} {_perms(got.perms)}",
                                    _pending_note(exp, path, got)))
        elif got is None:
            diffs.append(Difference(name, "missing", f"{show(want.value)} {_perms(want.perms)}",
                                    "no node", _pending_note(exp, path, None)))
        else:
            if want.value != got.value:
                diffs.append(Difference(name, "value", show(want.value), show(got.value),
                                        _pending_note(exp, path, got)))
            if want.perms != got.perms:
                diffs.append(Difference(name, "perms", _perms(want.perms), _perms(got.perms)))
    diffs.sort(key=lambda d: (d.path, d.what))
    return diffs


def check_domains(client: wire.Client, exp: Expected) -> list[Difference]:
    out = []
    for domid in sorted(exp.introduced - {0}):
        if not client.is_domain_introduced(domid):
            out.append(Difference(f"domain {domid}", "introduced", "introduced (T)",
                                  "not introduced (F)", "it has a shared-ring CONNECTION_DATA"))
    for domid in sorted(exp.named - {0}):
        if domid >= 0x7FF0:
            continue
        if client.is_domain_introduced(domid):
            out.append(Difference(f"domain {domid}", "introduced", "not introduced (F)",
                                  "introduced (T)", "it owns nodes but has no shared ring"))
    return out


def check_special(client: wire.Client, exp: Expected) -> list[Difference]:
    out = []
    for path, want in sorted(exp.special.items()):
        try:
            got = tuple(client.get_perms(path))
        except wire.XsError:
            continue  # not readable over the wire in this daemon
        if got != want:
            out.append(Difference(path.decode(errors="replace"), "perms", _perms(want), _perms(got)))
    return out


def render(diffs: list[Difference], limit: int = 40) -> list[str]:
    lines = [d.line() for d in diffs[:limit]]
    if len(diffs) > limit:
        lines.append(f"... and {len(diffs) - limit} more")
    return lines


__all__ = ["Difference", "Expected", "Node", "WalkError", "check_domains", "check_special",
           "compare", "expected",
           "read_store", "render"]
