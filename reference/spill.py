"""Where a set that outgrows its memory budget keeps the rest: a temporary file.

The xenstore reader's sets (:class:`~.pathset.PathSet`, :class:`~.intset.IntSet`)
grow by a few octets per record; kept in memory whatever the stream's size, a
stream of some two million nodes or transactions would take the process past
64 MiB.  The sets of one reader share a :class:`Budget` (:func:`budget`
octets, 24 MiB: a million nodes, 21.7 MiB, fit); a set that would pass it stops growing
in memory and from then on adds the new entries to a :class:`DiskSet`: a table keyed by the
value itself (a B-tree, so every answer is exact) in an SQLite database, with
a bounded page cache (:data:`CACHE_KIB`), no journal and no syncing (the file
is scratch: nobody reads it after the process).

The file lives in a private directory made in ``$TMPDIR`` (or, when that is
unset, where :func:`tempfile.gettempdir` says); both are unlinked as soon as
the database has opened them, so nothing is left behind, not even after
SIGKILL, and the space is freed when the connection closes.  A ``$TMPDIR``
that cannot take the directory is not silently replaced by another one (a
user who names it means it): :class:`SpillError`, an :class:`OSError` naming
the directory, which the command line reports in one line (exit status 2).

Streams whose sets stay under the budget never import :mod:`sqlite3`.
"""

from __future__ import annotations

import errno
import os
import sys

from .errors import UsageError

#: octets the sets of one reader may hold in memory together before the next to grow spills
BUDGET = 24 << 20
#: the environment variable that overrides :data:`BUDGET` (octets; tests set it tiny)
BUDGET_ENV = "XENSTREAM_SET_BUDGET"
#: the page cache of each spilled set's database, KiB
CACHE_KIB = 1024
#: keys gathered in memory before they are written in one transaction
BATCH = 4096
#: a one-probe filter of the keys on disk (bits; 2 MiB): a key whose bit is clear is not
#: there, so a question about a key that was never added rarely reaches the disk
FILTER_BITS = 1 << 24
_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: spreads sequential keys over the bits
_M64 = (1 << 64) - 1


def budget() -> int:
    """The budget in octets: ``$XENSTREAM_SET_BUDGET`` when set, else :data:`BUDGET`."""
    text = os.environ.get(BUDGET_ENV)
    if text:
        try:
            return max(0, int(text, 0))
        except ValueError:
            raise UsageError(f"{BUDGET_ENV}={text}: give a number of octets (e.g. {BUDGET})") from None
    return BUDGET


class Budget:
    """The memory the sets of one reader share: each says what it would hold, and is told no
    when that and what the others hold pass the limit (a set that is told no spills)."""

    __slots__ = ("limit", "_held")

    def __init__(self, limit: int | None = None):
        self.limit = budget() if limit is None else limit
        self._held: dict[int, int] = {}

    def take(self, owner: object, octets: int, passing: int = 0) -> bool:
        """Whether ``owner`` may hold ``octets`` (and, for a moment, ``passing`` more)."""
        held = self._held
        others = sum(held.values()) - held.get(id(owner), 0)
        if others + octets + passing > self.limit:
            return False
        held[id(owner)] = octets
        return True


class SpillError(OSError):
    """The temporary file a set spills to could not be made or written."""


class DiskSet:
    """A set of ``bytes`` (``kind`` "BLOB") or unsigned 64-bit integers ("INTEGER") in a temporary file."""

    __slots__ = ("_db", "_pending", "_ask", "_put", "_signed", "_what", "_where", "_bits", "_shift")

    def __init__(self, what: str, kind: str = "BLOB"):
        import tempfile

        try:
            import sqlite3
        except ImportError:  # an interpreter built without it
            raise SpillError(errno.ENOSYS, f"cannot hold {what} past {budget() >> 10} KiB of memory: "
                                           "this Python has no sqlite3 module", sys.executable) from None
        self._what = what
        self._signed = kind == "INTEGER"  # SQLite's integers are signed: stored as key - 2**63
        where = os.environ.get("TMPDIR") or tempfile.gettempdir()
        self._where = where
        try:
            d = tempfile.mkdtemp(prefix="xenstream-spill-", dir=where)
        except OSError as exc:
            raise SpillError(exc.errno or errno.EIO,
                             f"cannot make a temporary directory for {what} past "
                             f"{budget() >> 10} KiB of memory: {exc.strerror or exc}", where) from None
        path = os.path.join(d, "set.sqlite")
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                               f"cache_size=-{CACHE_KIB}", "temp_store=FILE"):
                    db.execute(f"PRAGMA {pragma}").fetchall()
                db.execute(f"CREATE TABLE s(k {kind} PRIMARY KEY)" + (" WITHOUT ROWID" if kind == "BLOB" else ""))
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise SpillError(errno.EIO, f"cannot open a temporary file for {what}: {exc}", where) from None
        finally:  # the open database keeps its file; its name goes now, so nothing outlives the process
            for gone in (path, d):
                try:
                    (os.unlink if gone is path else os.rmdir)(gone)
                except OSError:
                    pass
        self._db = db
        self._pending: set = set()
        self._bits = bytearray(max(1, FILTER_BITS >> 3))  # pages are touched as bits are set
        self._shift = 64 - (len(self._bits) * 8).bit_length() + 1
        self._ask = "SELECT 1 FROM s WHERE k = ?"
        self._put = "INSERT OR IGNORE INTO s VALUES (?)"

    def _key(self, k):
        return k - (1 << 63) if self._signed else k

    def add(self, k) -> None:
        i = ((hash(k) * _MIX) & _M64) >> self._shift
        self._bits[i >> 3] |= 1 << (i & 7)
        pending = self._pending
        pending.add(k)
        if len(pending) >= BATCH:
            self.flush()

    def __contains__(self, k) -> bool:
        i = ((hash(k) * _MIX) & _M64) >> self._shift
        if not self._bits[i >> 3] & 1 << (i & 7):
            return False
        if k in self._pending:
            return True
        try:
            return self._db.execute(self._ask, (self._key(k),)).fetchone() is not None
        except Exception as exc:  # sqlite3.Error: a full or failing disk
            raise self._failed(exc) from None

    def flush(self) -> None:
        if not self._pending:
            return
        keys = sorted(self._pending)  # in key order: each B-tree page is visited once per batch
        self._pending = set()
        db = self._db
        try:
            db.execute("BEGIN")
            if self._signed:
                db.executemany(self._put, [(k - (1 << 63),) for k in keys])
            else:
                db.executemany(self._put, [(k,) for k in keys])
            db.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error: a full or failing disk
            raise self._failed(exc) from None

    def __len__(self) -> int:
        self.flush()
        return self._db.execute("SELECT count(*) FROM s").fetchone()[0]

    def close(self) -> None:
        self._pending = set()
        self._db.close()

    def _failed(self, exc: Exception) -> SpillError:
        full = "full" in str(exc)
        return SpillError(errno.ENOSPC if full else errno.EIO,
                          f"the temporary file holding {self._what} failed: {exc}", self._where)
