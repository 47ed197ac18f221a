"""An exact set of unsigned 64-bit integers in 8 to 24 octets each.

The xenstore reader remembers the conn-ids of the connections and the
``(conn-id, tx-id)`` pairs of the transactions it has seen: one per record,
so a stream of a million TRANSACTION_DATA records would hold a million
tuples in a ``set`` (about 150 MiB).  :class:`IntSet` keeps the integers
themselves in an open-addressing table (``array('Q')``, linear probing, at
most two thirds full), the slot chosen by a multiplicative mix of the key so
that neither sequential nor crafted keys pile up in one run of slots.  The
table grows while its :class:`.spill.Budget` allows (shared with the reader's
other sets); past that it takes no more keys and the new ones go to a temporary
file (:mod:`.spill`), so the set's memory is bounded whatever the stream.
"""

from __future__ import annotations

from array import array

from . import spill

_M64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_EMPTY = _M64              # the one key that cannot be stored in a slot: kept aside
_FIRST_BITS = 6


def pair(a: int, b: int) -> int:
    """Two 32-bit numbers as one key."""
    return a << 32 | b


class IntSet:
    __slots__ = ("_table", "_bits", "_len", "_has_empty", "_budget", "_disk")

    def __init__(self, keys=(), budget: spill.Budget | None = None):
        self._table = array("Q", [_EMPTY]) * (1 << _FIRST_BITS)
        self._bits = _FIRST_BITS
        self._len = 0
        self._has_empty = False
        #: the table grows while the budget allows; then new keys go to disk
        self._budget = spill.Budget() if budget is None else budget
        self._disk: spill.DiskSet | None = None
        if not self._budget.take(self, self.memory()):  # a budget lowered by tests
            self._disk = spill.DiskSet("the xenstore connections and transactions", "INTEGER")
            self.__class__ = _Spilled
        for k in keys:
            self.add(k)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: int) -> bool:
        if key == _EMPTY:
            return self._has_empty
        table, mask = self._table, (1 << self._bits) - 1
        j = ((key * _MIX) & _M64) >> (64 - self._bits)
        while True:
            k = table[j]
            if k == key:
                return True
            if k == _EMPTY:
                return False
            j = (j + 1) & mask

    def add(self, key: int) -> None:
        if not 0 <= key <= _M64:
            raise ValueError(f"{key} is not an unsigned 64-bit integer")
        if key == _EMPTY:
            self._len += not self._has_empty
            self._has_empty = True
            return
        table, mask = self._table, (1 << self._bits) - 1
        j = ((key * _MIX) & _M64) >> (64 - self._bits)
        while True:
            k = table[j]
            if k == key:
                return
            if k == _EMPTY:
                break
            j = (j + 1) & mask
        table[j] = key
        self._len += 1
        if self._len * 3 > len(table) * 2:
            self._grow()

    def _grow(self) -> None:
        size = len(self._table) * self._table.itemsize
        if not self._budget.take(self, 2 * size, size):  # the old table is there while the new one fills
            self._disk = spill.DiskSet("the xenstore connections and transactions", "INTEGER")
            self.__class__ = _Spilled
            return
        old = self._table
        self._bits += 1
        self._table = array("Q", [_EMPTY]) * (1 << self._bits)
        n, self._len = self._len - self._has_empty, self._has_empty
        for k in old:
            if k != _EMPTY:
                self._len += 1
                self._insert(k)
        assert self._len - self._has_empty == n

    def _insert(self, key: int) -> None:
        table, mask = self._table, (1 << self._bits) - 1
        j = ((key * _MIX) & _M64) >> (64 - self._bits)
        while table[j] != _EMPTY:
            j = (j + 1) & mask
        table[j] = key

    def memory(self) -> int:
        return self._table.buffer_info()[1] * self._table.itemsize

    def spilled(self) -> bool:
        """Whether keys past the budget went to a temporary file (see :mod:`.spill`)."""
        return self._disk is not None

    def close(self) -> None:
        """Let go of the temporary file, if any (the set answers no more questions)."""
        if self._disk is not None:
            self._disk.close()


class _Spilled(IntSet):
    """An :class:`IntSet` past its budget: the table (two thirds full) stays as it is and takes
    no more keys; a key not in it goes to the :class:`~.spill.DiskSet`."""

    __slots__ = ()

    def __contains__(self, key: int) -> bool:
        return IntSet.__contains__(self, key) or key in self._disk

    def add(self, key: int) -> None:
        if not 0 <= key <= _M64:
            raise ValueError(f"{key} is not an unsigned 64-bit integer")
        if not IntSet.__contains__(self, key):
            self._disk.add(key)  # counted by __len__: the disk keeps each key once

    def __len__(self) -> int:
        return self._len + len(self._disk)
