"""A forward-only reader over a file, pipe or bytes that never trusts a length.

:class:`Source` serves exact reads from an internal buffer that only grows by
what has actually arrived, so a hostile length field (``body_length =
0xffffffff`` at the end of a short input) costs what the input holds, never
what the field claims.  Skips over a regular file seek (after checking the
file's size); skips over a pipe go to /dev/null with ``splice(2)`` where the
system has it (never copied into the process), else read and discard through
one reused scratch buffer.
"""

from __future__ import annotations

import io
import os
try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None
import stat
import struct
from typing import BinaryIO, Iterator

#: Largest single read from the underlying file.
MAX_READ = 1 << 20
#: Read size when refilling for a small request (headers), after a skip of more
#: than a read past the buffer (large records whose contents are skipped: read
#: little ahead); it
#: doubles up to MAX_READ with each refill that follows no such skip (small
#: records read through: fewer, larger reads).
SMALL_READ = 64 << 10


class Truncated(Exception):
    """The input ended inside something that had to be read whole.

    Internal to the reference: format readers turn it into a
    :class:`~.errors.StreamError` naming their own truncation rule.
    """

    def __init__(self, offset: int, wanted: int, got: int, what: str):
        super().__init__(f"input ends after {got} of {wanted} octets of {what}")
        self.offset = offset  # where the incomplete item starts
        self.end = offset + got  # where the input ended
        self.wanted = wanted
        self.got = got
        self.what = what

    def describe(self) -> str:
        """The message of the truncation finding a format reader raises for it."""
        return (f"input ends inside the {self.what} that starts at offset {self.offset} "
                f"({self.got} of {self.wanted} octets present)")


class Source:
    """Forward reading with an absolute offset.

    ``raw`` is an unbuffered or buffered binary file object; reads on it never
    ask for more than :data:`MAX_READ` octets at a time.
    """

    __slots__ = ("_raw", "_buf", "_pos", "_base", "_eof", "_seekable", "_scratch", "_ahead", "_skipped",
                 "_pipe")

    def __init__(self, raw: BinaryIO, *, start_offset: int = 0):
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self._base = start_offset  # absolute offset of _buf[0]
        self._eof = False
        try:
            self._seekable = bool(raw.seekable()) and _is_regular(raw)
        except (AttributeError, OSError, ValueError):
            self._seekable = False
        self._scratch: bytearray | None = None
        #: the descriptor of an unbuffered pipe, whose skipped octets are spliced to /dev/null
        self._pipe = _pipe_fd(raw) if not self._seekable else None
        self._ahead = SMALL_READ  # read size for small requests
        self._skipped = False     # a skip went past the buffer since the last refill

    # construction helpers -------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> "Source":
        return cls(io.BytesIO(bytes(data)))

    @classmethod
    def open(cls, spec: str) -> "Source":
        """``spec`` is a path, or a decimal number meaning a file descriptor
        (the ``verify-stream-v2`` convention; ``0`` is stdin)."""
        if spec.isdigit():
            return cls(open(int(spec), "rb", buffering=0, closefd=False))
        return cls(open(spec, "rb", buffering=0))

    def close(self) -> None:
        try:
            self._raw.close()
        except OSError:
            pass

    # position ------------------------------------------------------------
    @property
    def offset(self) -> int:
        """Absolute offset of the next octet to be read."""
        return self._base + self._pos

    def _refill(self, need: int) -> None:
        """Make at least ``need`` octets available, or all that remain."""
        avail = len(self._buf) - self._pos
        if avail >= need or self._eof:
            return
        pieces = [self._buf[self._pos:]] if avail else []
        self._base += self._pos
        have = avail
        if self._skipped:
            self._ahead, self._skipped = SMALL_READ, False
        elif self._ahead < MAX_READ:
            self._ahead *= 2
        while have < need:
            ask = max(need - have, self._ahead)
            chunk = self._raw.read(min(ask, MAX_READ))
            if not chunk:
                self._eof = True
                break
            pieces.append(chunk)
            have += len(chunk)
        self._buf = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._pos = 0

    def at_eof(self) -> bool:
        """True when nothing is left (reads ahead at most one chunk)."""
        self._refill(1)
        return self._pos >= len(self._buf)

    # reading -------------------------------------------------------------
    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly ``n`` octets, or :class:`Truncated` naming ``what``.

        Memory grows with what arrives, not with ``n``.
        """
        if n <= len(self._buf) - self._pos:
            start = self._pos
            self._pos = start + n
            return self._buf[start:self._pos]
        start_offset = self.offset
        if n <= MAX_READ:
            self._refill(n)
            got = len(self._buf) - self._pos
            if got < n:
                self._pos = len(self._buf)
                raise Truncated(start_offset, n, got, what)
            start = self._pos
            self._pos = start + n
            return self._buf[start:self._pos]
        parts = []
        got = 0
        for chunk in self._chunks(n, start_offset, what):
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def unpack(self, layout: "struct.Struct", what: str) -> tuple:
        """``layout.unpack(self.read_exact(layout.size, what))`` without the copy when
        the octets are already buffered: the hot path of record headers."""
        n, pos, buf = layout.size, self._pos, self._buf
        if n <= len(buf) - pos:
            self._pos = pos + n
            return layout.unpack_from(buf, pos)
        return layout.unpack(self.read_exact(n, what))

    def window(self) -> tuple[bytes, int]:
        """The buffered octets and the index of the next one to be read, for a
        parser's fast path over records that have already arrived whole; it
        must hand back what it used with :meth:`consume_to`."""
        return self._buf, self._pos

    def consume_to(self, pos: int) -> None:
        """Mark the buffer up to ``pos`` (from :meth:`window`) as read."""
        if not self._pos <= pos <= len(self._buf):
            raise ValueError(f"consume_to({pos}) outside the buffered window")
        self._pos = pos

    def peek(self, n: int) -> bytes:
        """Up to ``n`` (at most :data:`MAX_READ`) octets ahead, without consuming them;
        fewer only at the end of the input.  For formats that must look ahead to
        tell their variants apart (legacy images)."""
        self._refill(min(n, MAX_READ))
        return self._buf[self._pos:self._pos + n]

    def read_upto(self, n: int) -> bytes:
        """Up to ``n`` octets; fewer only at the end of the input."""
        self._refill(min(n, MAX_READ))
        start = self._pos
        self._pos = min(len(self._buf), start + n)
        return self._buf[start:self._pos]

    def chunks(self, n: int, what: str, size: int = SMALL_READ) -> Iterator[bytes]:
        """Yield exactly ``n`` octets in pieces of ``size`` (the last one shorter);
        :class:`Truncated` at EOF, before any short piece, so that a piece always
        holds whole entries when ``size`` is a multiple of the entry size."""
        return self._chunks(n, self.offset, what, size)

    def _chunks(self, n: int, start_offset: int, what: str, size: int = MAX_READ) -> Iterator[bytes]:
        left = n
        while left:
            want = min(left, size)
            self._refill(want)
            avail = len(self._buf) - self._pos
            if avail < want:  # only at the end of the input: never hand out a short piece
                self._pos = len(self._buf)
                raise Truncated(start_offset, n, n - left + avail, what)
            start = self._pos
            self._pos = start + want
            left -= want
            yield self._buf[start:self._pos]

    def skip(self, n: int, what: str) -> None:
        """Consume ``n`` octets without keeping them; :class:`Truncated` at EOF."""
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return
        start_offset = self._base + self._pos
        left = n - avail
        if left >= self._ahead:
            self._skipped = True  # reading further ahead would have been wasted
        self._base += len(self._buf)
        self._buf = b""
        self._pos = 0
        if self._seekable and not self._eof:
            here = self._raw.tell()
            size = _size(self._raw)
            if here + left <= size:
                self._raw.seek(left, os.SEEK_CUR)
                self._base += left
                return
            self._raw.seek(size)
            self._base += size - here
            self._eof = True
            raise Truncated(start_offset, n, avail + size - here, what)
        if self._pipe is not None:
            left = self._splice_away(left)
            if not left:
                return
        if self._scratch is None:
            self._scratch = bytearray(MAX_READ)
        view = memoryview(self._scratch)
        readinto = getattr(self._raw, "readinto", None)
        while left and not self._eof:
            want = min(left, MAX_READ)
            if readinto is not None:
                got = readinto(view[:want])
            else:
                got = len(self._raw.read(want))
            if not got:
                self._eof = True
                break
            left -= got
            self._base += got
        if left:
            raise Truncated(start_offset, n, n - left, what)

    def _splice_away(self, left: int) -> int:
        """Pass up to ``left`` octets of the pipe to /dev/null inside the kernel (``splice``:
        the pages are never copied to this process); what is left when splicing is refused
        or the input ends, which the caller then reads and discards as from any input."""
        null = _devnull()
        while left and null is not None:
            try:
                got = os.splice(self._pipe, null, min(left, SPLICE_MAX))
            except OSError:
                self._pipe = None  # not spliceable after all: read and discard from now on
                break
            if not got:
                self._eof = True
                break
            left -= got
            self._base += got
        return left


#: Largest single splice of skipped pipe contents.
SPLICE_MAX = 1 << 30
_DEVNULL: list = []


def _devnull() -> int | None:
    """A descriptor of /dev/null for write, opened once per process (None where it cannot be)."""
    if not _DEVNULL:
        try:
            _DEVNULL.append(os.open(os.devnull, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)))
        except OSError:
            _DEVNULL.append(None)
    return _DEVNULL[0]


def _pipe_fd(raw) -> int | None:
    """The descriptor of ``raw`` when it is an unbuffered file object over a pipe (nothing
    buffered above the descriptor, so splicing from it loses nothing) and this system has
    ``splice``; widens the pipe's buffer (:func:`_widen_pipe`).  Else None."""
    if type(raw) is not io.FileIO:
        return None
    try:
        fd = raw.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except (OSError, ValueError):
        return None
    _widen_pipe(fd)
    return fd if hasattr(os, "splice") else None


def as_source(data) -> Source:
    """``data`` as a :class:`Source`: a Source itself, octets, or a binary file object."""
    if isinstance(data, Source):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Source.from_bytes(data)
    return Source(data)


def _widen_pipe(fd: int) -> None:
    """Ask for a pipe buffer of :data:`MAX_READ` octets (Linux): the writer fills it in
    fewer, larger writes and a read or splice moves up to that much at once instead of
    the default 64 KiB.  Where that is refused (another system, a lower
    ``/proc/sys/fs/pipe-max-size``) the pipe stays as it is."""
    if fcntl is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        if fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) < MAX_READ:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, MAX_READ)
    except OSError:
        pass


def _is_regular(raw) -> bool:
    fileno = getattr(raw, "fileno", None)
    if fileno is None:
        return True  # BytesIO and friends: seekable, sized
    try:
        return stat.S_ISREG(os.fstat(fileno()).st_mode)
    except (OSError, io.UnsupportedOperation):
        return True


def _size(raw) -> int:
    fileno = getattr(raw, "fileno", None)
    if fileno is not None:
        try:
            return os.fstat(fileno()).st_size
        except (OSError, io.UnsupportedOperation):
            pass
    here = raw.tell()
    end = raw.seek(0, os.SEEK_END)
    raw.seek(here)
    return end
