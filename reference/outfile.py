"""Writing files so that nothing is lost.

Every file the project writes goes through :class:`AtomicOutput` (or
:func:`write_atomic`): the content goes to a temporary file in the target's
own folder, which is flushed to disk and renamed over the target only when
everything was written.  A command that fails half-way, runs out of space or
is interrupted leaves the target as it was (a symbolic link is followed: its
target is replaced, the link stays).  Outputs that cannot be renamed over
(``/dev/null``, a FIFO, a terminal, a descriptor number) are written in
place.

:func:`refuse_same_file` refuses, before anything is opened for writing, an
output that is one of the inputs: the same file (device and inode), hard
links included.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stat(spec: str | os.PathLike | int) -> os.stat_result | None:
    try:
        if isinstance(spec, int):
            return os.fstat(spec)
        text = os.fspath(spec)
        if isinstance(text, str) and text.isdigit():
            return os.fstat(int(text))
        return os.stat(text)
    except (OSError, ValueError):
        return None


def same_file(a: str | os.PathLike | int, b: str | os.PathLike | int) -> bool:
    """Whether ``a`` and ``b`` (paths, or descriptor numbers as ``int`` or
    decimal strings) are the same regular file."""
    sa, sb = _stat(a), _stat(b)
    return (sa is not None and sb is not None and stat.S_ISREG(sa.st_mode)
            and os.path.samestat(sa, sb))


def refuse_same_file(output: str | os.PathLike | int, inputs) -> None:
    """:class:`UsageError` when ``output`` is one of ``inputs`` (paths or
    descriptor numbers)."""
    for spec in inputs:
        if spec is not None and same_file(output, spec):
            same = "" if os.fspath(spec) == os.fspath(output) else f" (as {spec})"
            raise UsageError(f"the output {output} is an input{same}: refusing to overwrite it")


def in_place(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and is not a regular file (a device, a FIFO):
    written in place, not replaced."""
    st = _stat(path)
    return st is not None and not stat.S_ISREG(st.st_mode)


class AtomicOutput:
    """``with AtomicOutput(path) as f: f.write(...)``: ``path`` gets the
    content only if the block ends without an exception.

    Errors (a missing folder, no space, no permission) are ``OSError`` naming
    ``path``, never the temporary file.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self._file: BinaryIO | None = None
        self._tmp: str | None = None
        self._direct = False

    def _fail(self, exc: OSError) -> OSError:
        return OSError(exc.errno, exc.strerror or str(exc), str(self.path))

    def __enter__(self) -> BinaryIO:
        if in_place(self.path):
            self._direct = True
            try:
                self._file = open(self.path, "wb")
            except OSError as exc:
                raise self._fail(exc) from None
            return self._file
        target = Path(os.path.realpath(self.path))
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                             dir=target.parent)
        except OSError as exc:
            raise self._fail(exc) from None
        self._target = target
        self._file = os.fdopen(fd, "wb")
        return self._file

    def __exit__(self, exc_type, exc, tb) -> bool:
        f = self._file
        if self._direct:
            try:
                f.close()
            except OSError as err:
                if exc_type is None:
                    raise self._fail(err) from None
            return False
        try:
            if exc_type is None:
                try:
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
                    f.close()
                    st = _stat(self._target)
                    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
                    os.chmod(self._tmp, mode)
                    os.replace(self._tmp, self._target)
                    self._tmp = None
                except OSError as err:
                    raise self._fail(err) from None
        finally:
            if not f.closed:
                try:
                    f.close()
                except OSError:
                    pass
            if self._tmp is not None:
                try:
                    os.unlink(self._tmp)
                except OSError:
                    pass
        return False


def write_atomic(path: str | os.PathLike, data: bytes | str, *, fsync: bool = True) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` atomically."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with AtomicOutput(path, fsync=fsync) as f:
        f.write(data)
