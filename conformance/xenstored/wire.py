"""A small client of the xenstore wire protocol (Xen's ``docs/misc/xenstore.txt``).

Each message is a header of four 32-bit words in the host's byte order
(``type``, ``req_id``, ``tx_id``, ``len``) and ``len`` octets of payload, at
most :data:`PAYLOAD_MAX` (``XENSTORE_PAYLOAD_MAX`` in ``xs_wire.h``).  A
request's strings are NUL-terminated; a reply echoes the request's type and
``req_id``, or is ``XS_ERROR`` with an errno name.  Watch events
(``XS_WATCH_EVENT``: path and token) may arrive between a request and its
reply; they are kept in :attr:`Client.events`.

This is what the conformance suite uses to read back the store a xenstored
restored (:mod:`.state`) and to build stores for real dumps (:mod:`.dumps`);
it trusts nothing it reads: a reply longer than :data:`PAYLOAD_MAX`, with
another ``req_id`` or of an unexpected type is a :class:`ProtocolError`, and
every read has a deadline.
"""

from __future__ import annotations

import enum
import socket
import struct
import time
from dataclasses import dataclass

HEADER = struct.Struct("=IIII")  # type, req_id, tx_id, len (host byte order)
PAYLOAD_MAX = 4096


class Op(enum.IntEnum):
    """``enum xsd_sockmsg_type`` (``xs_wire.h``)."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


class WireError(Exception):
    """Root of this module's errors."""


class XsError(WireError):
    """The daemon answered ``XS_ERROR`` (``errno`` is the name it sent, e.g. ``ENOENT``)."""

    def __init__(self, op: Op, path: str, errno_name: str):
        super().__init__(f"{op.name} {path}: {errno_name}")
        self.op, self.path, self.errno = op, path, errno_name


class ProtocolError(WireError):
    """The daemon broke the protocol, closed the connection (``closed``) or did not
    answer in time."""

    def __init__(self, message: str, closed: bool = False):
        super().__init__(message)
        self.closed = closed


@dataclass(frozen=True)
class Message:
    type: int
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return HEADER.pack(self.type, self.req_id, self.tx_id, len(self.payload)) + self.payload


def strings(*parts: bytes | str) -> bytes:
    """NUL-terminated strings, one after the other."""
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


def split_strings(payload: bytes) -> list[bytes]:
    """The NUL-terminated strings of a payload (a missing last NUL is tolerated)."""
    if not payload:
        return []
    parts = payload.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return parts


class Client:
    """One connection to a xenstored; requests are answered in order."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0):
        self.sock = sock
        self.timeout = timeout
        self.events: list[tuple[bytes, bytes]] = []
        self._req = 0
        self._buf = b""

    @classmethod
    def connect(cls, address: str | bytes, timeout: float = 5.0) -> "Client":
        """Connect to a unix socket path (or an abstract name starting with NUL)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return cls(sock, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- framing -----------------------------------------------------------
    def _recv_exact(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("no answer in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise ProtocolError("no answer in time") from None
            except OSError as exc:
                raise ProtocolError(f"connection failed: {exc.strerror or exc}") from None
            if not chunk:
                raise ProtocolError("the daemon closed the connection", closed=True)
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_message(self, deadline: float | None = None) -> Message:
        deadline = deadline if deadline is not None else time.monotonic() + self.timeout
        mtype, req_id, tx_id, length = HEADER.unpack(self._recv_exact(HEADER.size, deadline))
        if length > PAYLOAD_MAX:
            raise ProtocolError(f"message of type {mtype} claims {length} octets "
                                f"(more than {PAYLOAD_MAX})")
        return Message(mtype, req_id, tx_id, self._recv_exact(length, deadline))

    def send(self, op: Op, payload: bytes, tx_id: int = 0) -> int:
        self._req = (self._req + 1) & 0xFFFFFFFF
        msg = Message(int(op), self._req, tx_id, payload)
        try:
            self.sock.sendall(msg.encode())
        except OSError as exc:
            raise ProtocolError(f"cannot send {op.name}: {exc.strerror or exc}") from None
        return self._req

    def request(self, op: Op, payload: bytes, tx_id: int = 0, what: str = "") -> bytes:
        """Send one request and return its reply's payload; XsError for XS_ERROR."""
        if len(payload) > PAYLOAD_MAX:
            raise WireError(f"{op.name} payload of {len(payload)} octets is too long")
        req = self.send(op, payload, tx_id)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self.read_message(deadline)
            if msg.type == Op.WATCH_EVENT:
                parts = split_strings(msg.payload)
                if len(parts) >= 2:
                    self.events.append((parts[0], parts[1]))
                continue
            if msg.req_id != req:
                raise ProtocolError(f"reply to request {msg.req_id}, expected {req}")
            if msg.type == Op.ERROR:
                name = split_strings(msg.payload)
                raise XsError(op, what, name[0].decode("ascii", "replace") if name else "?")
            if msg.type != op:
                raise ProtocolError(f"{op.name} answered with type {msg.type}")
            return msg.payload

    def wait_event(self, timeout: float) -> tuple[bytes, bytes] | None:
        """The next watch event (kept ones first), or None after ``timeout``."""
        if self.events:
            return self.events.pop(0)
        try:
            msg = self.read_message(time.monotonic() + timeout)
        except ProtocolError:
            return None
        if msg.type == Op.WATCH_EVENT:
            parts = split_strings(msg.payload)
            if len(parts) >= 2:
                return parts[0], parts[1]
        return None

    # -- operations --------------------------------------------------------
    @staticmethod
    def _b(path: bytes | str) -> bytes:
        return path.encode() if isinstance(path, str) else path

    def directory(self, path: bytes | str, tx: int = 0) -> list[bytes]:
        p = self._b(path)
        try:
            return split_strings(self.request(Op.DIRECTORY, strings(p), tx, p.decode(errors="replace")))
        except XsError as exc:
            if exc.errno != "E2BIG":
                raise
        return self._directory_part(p, tx)

    def _directory_part(self, p: bytes, tx: int) -> list[bytes]:
        """XS_DIRECTORY_PART: the children of a node too large for one reply."""
        out: list[bytes] = []
        gen = None
        offset = 0
        for _ in range(1 << 16):
            reply = self.request(Op.DIRECTORY_PART, strings(p, str(offset)), tx,
                                 p.decode(errors="replace"))
            parts = reply.split(b"\0")
            if gen is None:
                gen = parts[0]
            elif parts[0] != gen:  # the node changed under us: start again
                out, offset, gen = [], 0, None
                continue
            names = parts[1:]
            # the last chunk ends with an empty name (two NULs)
            done = len(names) >= 2 and names[-1] == b"" and names[-2] == b""
            names = [n for n in names if n]
            out += names
            offset += sum(len(n) + 1 for n in names)
            if done or not names:
                return out
        raise ProtocolError(f"DIRECTORY_PART {p!r} does not end")

    def read(self, path: bytes | str, tx: int = 0) -> bytes:
        p = self._b(path)
        return self.request(Op.READ, strings(p), tx, p.decode(errors="replace"))

    def get_perms(self, path: bytes | str, tx: int = 0) -> list[str]:
        p = self._b(path)
        reply = self.request(Op.GET_PERMS, strings(p), tx, p.decode(errors="replace"))
        return [s.decode("ascii", "replace") for s in split_strings(reply)]

    def write(self, path: bytes | str, value: bytes, tx: int = 0) -> None:
        p = self._b(path)
        self.request(Op.WRITE, p + b"\0" + value, tx, p.decode(errors="replace"))

    def mkdir(self, path: bytes | str, tx: int = 0) -> None:
        p = self._b(path)
        self.request(Op.MKDIR, strings(p), tx, p.decode(errors="replace"))

    def rm(self, path: bytes | str, tx: int = 0) -> None:
        p = self._b(path)
        self.request(Op.RM, strings(p), tx, p.decode(errors="replace"))

    def set_perms(self, path: bytes | str, perms: list[str], tx: int = 0) -> None:
        p = self._b(path)
        self.request(Op.SET_PERMS, strings(p, *perms), tx, p.decode(errors="replace"))

    def watch(self, path: bytes | str, token: bytes | str) -> None:
        p = self._b(path)
        self.request(Op.WATCH, strings(p, self._b(token)), 0, p.decode(errors="replace"))

    def transaction_start(self) -> int:
        reply = split_strings(self.request(Op.TRANSACTION_START, b"\0"))
        try:
            return int(reply[0])
        except (IndexError, ValueError):
            raise ProtocolError(f"TRANSACTION_START answered {reply!r}") from None

    def introduce(self, domid: int, gfn: int, evtchn: int) -> None:
        self.request(Op.INTRODUCE, strings(str(domid), str(gfn), str(evtchn)), 0, f"domain {domid}")

    def release(self, domid: int) -> None:
        self.request(Op.RELEASE, strings(str(domid)), 0, f"domain {domid}")

    def set_target(self, domid: int, target: int) -> None:
        self.request(Op.SET_TARGET, strings(str(domid), str(target)), 0, f"domain {domid}")

    def is_domain_introduced(self, domid: int) -> bool:
        reply = split_strings(self.request(Op.IS_DOMAIN_INTRODUCED, strings(str(domid)), 0,
                                           f"domain {domid}"))
        if reply[:1] == [b"T"]:
            return True
        if reply[:1] == [b"F"]:
            return False
        raise ProtocolError(f"IS_DOMAIN_INTRODUCED answered {reply!r}")

    def control(self, *args: bytes | str) -> bytes:
        return self.request(Op.CONTROL, strings(*args), 0, " ".join(
            a if isinstance(a, str) else a.decode(errors="replace") for a in args))


__all__ = ["Client", "Message", "Op", "ProtocolError", "WireError", "XsError", "HEADER",
           "PAYLOAD_MAX", "strings", "split_strings"]
