"""An exact set of unsigned 64-bit integers in 8 to 24 octets each.

The xenstore reader remembers the conn-ids of the connections and the
``(conn-id, tx-id)`` pairs of the transactions it has seen: one per record,
so a stream of a million TRANSACTION_DATA records would hold a million
tuples in a ``set`` (about 150 MiB).  :class:`IntSet` keeps the integers
themselves in an open-addressing table (``array('Q')``, linear probing, at
most two thirds full), the slot chosen by a multiplicative mix of the key so
that neither sequential nor crafted keys pile up in one run of slots.
"""

from __future__ import annotations

from array import array

_M64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_EMPTY = _M64              # the one key that cannot be stored in a slot: kept aside
_FIRST_BITS = 6


def pair(a: int, b: int) -> int:
    """Two 32-bit numbers as one key."""
    return a << 32 | b


class IntSet:
    __slots__ = ("_table", "_bits", "_len", "_has_empty")

    def __init__(self, keys=()):
        self._table = array("Q", [_EMPTY]) * (1 << _FIRST_BITS)
        self._bits = _FIRST_BITS
        self._len = 0
        self._has_empty = False
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
