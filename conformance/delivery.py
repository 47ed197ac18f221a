"""How a stream reaches the implementation: the delivery modes.

Real readers get their streams from files, from pipes (``xl migrate`` over
ssh, ``xl restore`` from stdin) and from descriptors a toolstack hands to its
helpers (libxl's migration socket, a save file whose ``xl`` header it has
already read).  Each mode gives the implementation the same stream the way
one of those transports would:

``file``
    the stream's path on the command line (``-i PATH``);
``stdin``
    standard input redirected from the file (``-i 0``);
``pipe``
    standard input is a pipe, written one piece at a time: the runner writes
    a piece, waits until the reader has drained the pipe and for
    :data:`PIECE_PAUSE` more (time to ask for more), then writes the next.
    A reader therefore never gets more than one piece from one ``read()``:
    any read that spans a piece boundary comes back short.  Boundaries fall
    inside the first headers, inside record headers and inside bodies
    (:func:`pipe_pieces`);
``fd``
    the stream on an inherited descriptor (:data:`STREAM_FD`, ``-i 5``), a
    regular file positioned at :data:`FD_OFFSET`: the octets before it are
    not the stream's, as when ``xl restore`` hands libxl the save file after
    reading its own header.  A reader that seeks to 0 or reopens the file
    reads what is not its stream;
``socket``
    the stream on an inherited ``AF_UNIX`` stream socket
    (:data:`STREAM_FD`), written piece by piece like ``pipe``, then shut
    down for writing: the migration socket libxl gives its helpers.

A piece is never larger than :data:`PIECE_MAX` (below the smallest pipe
buffer), so a piece is written at once and the drain wait is what separates
two pieces.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
import termios
import time
from dataclasses import dataclass
from pathlib import Path

FILE, STDIN, PIPE, FD, SOCKET = "file", "stdin", "pipe", "fd", "socket"
MODES: tuple[str, ...] = (FILE, STDIN, PIPE, FD, SOCKET)

#: The descriptor number the stream is inherited on in ``fd`` and ``socket`` modes.
STREAM_FD = 5
#: In ``fd`` mode, octets (zeros) before the stream in the file; the
#: descriptor is positioned after them.
FD_OFFSET = 512

#: Pieces a stream is cut into (at least; more for long streams, see PIECE_MAX).
PIPE_PIECES = 12
#: Largest piece: smaller than a pipe buffer (64 KiB on Linux), so that one
#: write puts a whole piece in the pipe.
PIECE_MAX = 48 * 1024
#: Structure boundaries (record starts) that get a cut inside their header
#: and one inside their body, at most.
MARK_CUTS = 24
#: After the reader drained a piece: time it is given to ask for more.
PIECE_PAUSE = 0.001

_DESCRIPTIONS = {
    FILE: "its path on the command line",
    STDIN: "standard input redirected from the file",
    PIPE: "a pipe on standard input, written piece by piece (short reads)",
    FD: f"an inherited descriptor {STREAM_FD}, a file positioned at offset {FD_OFFSET}",
    SOCKET: f"an inherited socket on descriptor {STREAM_FD}, written piece by piece",
}


def describe(mode: str) -> str:
    return _DESCRIPTIONS.get(mode, mode)


def pipe_pieces(data: bytes, pieces: int = PIPE_PIECES, marks=None,
                max_piece: int = PIECE_MAX) -> list[bytes]:
    """Cut ``data`` into pieces of uneven, deterministic sizes.

    Cuts at small offsets (inside the first headers: some pieces of one
    octet), then for up to :data:`MARK_CUTS` of ``marks`` (offsets where a
    structure starts, as the reference reader sees them) one cut three octets
    into the structure's header and one in the middle of what follows it,
    then evenly spread cuts (each with one just after it), and no piece
    longer than ``max_piece``.
    """
    n = len(data)
    if n == 0:
        return []
    cuts: set[int] = set()
    for c in (1, 3, 8, 13, 24, 31):
        cuts.add(c)
    marks = sorted(m for m in (marks or ()) if 0 < m < n)
    if marks:
        step = max(1, len(marks) // MARK_CUTS)
        ends = marks[1:] + [n]
        for i in range(0, len(marks), step):
            start, end = marks[i], ends[i]
            cuts.add(start + 3)
            if end - start > 16:
                cuts.add(start + (end - start) // 2)
    step = max(1, n // max(1, pieces))
    for c in range(step, n, step):
        cuts.add(c)
        cuts.add(c + 1)
    edges = sorted(c for c in cuts if 0 < c < n)
    out: list[bytes] = []
    prev = 0
    for edge in [*edges, n]:
        while edge - prev > max_piece:
            out.append(data[prev:prev + max_piece])
            prev += max_piece
        if edge > prev:
            out.append(data[prev:edge])
            prev = edge
    return out


def unread(fd: int, kind: str) -> int:
    """Octets written to ``fd`` that its reader has not taken yet (0 when unknown)."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.TIOCOUTQ if kind == SOCKET else termios.FIONREAD, buf)
    except OSError:
        return 0
    return buf[0]


class Feeder:
    """Writes pieces on a non-blocking descriptor, one at a time, each after
    the reader has drained the previous one and had :data:`PIECE_PAUSE` to ask
    for more.  Driven by the caller's loop: :meth:`wants_write`,
    :meth:`write`, :meth:`wake_at`, :meth:`tick`."""

    def __init__(self, fd: int, pieces: list[bytes], kind: str = PIPE,
                 pause: float = PIECE_PAUSE):
        self.fd = fd
        self.kind = kind
        self.pause = pause
        self._pieces = list(reversed(pieces))
        self._pending = b""
        self._state = "idle"          # idle -> write -> drain -> pause -> idle ... -> done
        self._resume = 0.0
        self._poll = 0.00005
        self.written = 0
        self.broken = False           # the reader closed its end
        os.set_blocking(fd, False)

    @property
    def done(self) -> bool:
        return self._state == "done"

    def tick(self, now: float) -> None:
        """Advance the drain and pause states."""
        if self._state == "drain":
            if unread(self.fd, self.kind) == 0:
                self._state, self._resume = "pause", now + self.pause
            else:
                self._resume = now + self._poll
                self._poll = min(self._poll * 2, 0.002)
        if self._state == "pause" and now >= self._resume:
            self._state = "idle"
        if self._state == "idle":
            if self._pieces:
                self._pending = self._pieces.pop()
                self._state = "write"
            else:
                self.finish()

    def wants_write(self) -> bool:
        return self._state == "write"

    def wake_at(self) -> float | None:
        return self._resume if self._state in ("drain", "pause") else None

    def write(self) -> None:
        try:
            n = os.write(self.fd, self._pending)
        except BlockingIOError:
            return
        except OSError as exc:  # EPIPE, ECONNRESET: the reader is gone
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise
            self.broken = True
            self.finish()
            return
        self.written += n
        self._pending = self._pending[n:]
        if not self._pending:
            self._state, self._poll = "drain", 0.00005
            self._resume = time.monotonic()

    def finish(self) -> None:
        """Stop writing: end of stream for the reader."""
        if self._state == "done":
            return
        self._state = "done"
        self._pieces = []
        try:
            if self.kind == SOCKET:
                try:
                    socket.socket(fileno=os.dup(self.fd)).shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            os.close(self.fd)
        except OSError:
            pass


def feed_blocking(fd: int, pieces: list[bytes], kind: str = PIPE, *,
                  should_stop=lambda: False, pause: float = PIECE_PAUSE) -> None:
    """Run a :class:`Feeder` to its end on its own (a writer thread)."""
    import selectors

    feeder = Feeder(fd, pieces, kind, pause)
    with selectors.DefaultSelector() as sel:
        registered = False
        while not feeder.done and not should_stop():
            now = time.monotonic()
            feeder.tick(now)
            if feeder.done:
                break
            if feeder.wants_write():
                if not registered:
                    sel.register(feeder.fd, selectors.EVENT_WRITE)
                    registered = True
                if sel.select(0.05):
                    feeder.write()
                continue
            if registered:
                sel.unregister(feeder.fd)
                registered = False
            wake = feeder.wake_at()
            time.sleep(max(0.00005, min(0.01, (wake or now) - now)))
        if registered:
            sel.unregister(feeder.fd)
    feeder.finish()


@dataclass(frozen=True)
class Feed:
    """How a process gets the stream besides its command line.

    ``mode`` is one of :data:`MODES`; ``path`` the stream's file (``stdin``,
    ``fd``); ``data`` the stream (``pipe``, ``socket``, ``fd``); ``fd`` the
    child's descriptor number; ``marks`` structure boundaries for the cuts.
    """

    mode: str
    path: Path | None = None
    data: bytes | None = None
    fd: int = 0
    marks: tuple[int, ...] = ()

    @classmethod
    def for_mode(cls, mode: str, data: bytes, path: Path | None, marks=()) -> "Feed | None":
        if mode == FILE:
            return None
        if mode == STDIN:
            return cls(STDIN, path=path, fd=0)
        if mode == PIPE:
            return cls(PIPE, data=data, fd=0, marks=tuple(marks))
        if mode == FD:
            return cls(FD, data=data, fd=STREAM_FD)
        if mode == SOCKET:
            return cls(SOCKET, data=data, fd=STREAM_FD, marks=tuple(marks))
        raise ValueError(f"unknown delivery mode {mode!r}")

    def pieces(self) -> list[bytes]:
        return pipe_pieces(self.data or b"", marks=self.marks)
