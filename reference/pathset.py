"""An exact set of absolute xenstore paths in about 25 octets per path.

The xenstore reader's "known parent" rule needs every committed node's path
for the rest of the stream: a million nodes held as ``bytes`` in a ``set``
take about 100 MiB, and their ``hash()`` values alone about 70 MiB (and a
collision between two 64-bit hashes would let an orphan pass unreported).

:class:`PathSet` keeps each path once, as a tree: a path added while its
parent (``path[:cut]``, ``cut`` its last ``/`` past the first octet) is in
the set is stored as that parent's index and the last component; any other
path (a child of ``/``, an orphan) is stored whole.  The entries live in
``array`` columns and one ``bytearray`` of components, chained in buckets
chosen by ``hash()`` (a table of each bucket's last entry, and each entry's
next, both ``array('i')``: adding is a few appends, never a probe loop).  A hash
only chooses where to look: every match is confirmed by comparing the path
with the entry's component and its parents' (:meth:`PathSet._is`), so two
paths that share a hash never stand for each other.

A path's entry is ``R(i) = R(parent) + b"/" + component`` (the component has
no ``/``, so ``R(i)``'s last ``/`` is at ``len(R(parent))``), or the whole
path; a path ``P`` is entry ``i`` exactly when its last component equals the
entry's and ``P[:cut]`` is the parent's entry, which is what :meth:`_is`
walks.  Parents always have smaller indices, so the walk ends.
"""

from __future__ import annotations

from array import array

_SEP = 0x2F  # "/"
_MASK32 = 0xFFFFFFFF
_FIRST_TABLE = 1 << 12
_LOAD = 2    # entries per bucket at most, on average
_GROWTH = 4  # the bucket table grows by this factor (to half an entry per bucket)


class PathSet:
    """Add paths, ask for their index; nothing is ever removed.

    A path added twice takes two entries (either one is its index): that
    costs memory as any other path would, never an answer.
    """

    __slots__ = ("_hash", "_parent", "_off", "_arena", "_next", "_head", "_mask", "_limit")

    def __init__(self, paths=()):
        self._hash = array("I")       # low 32 bits of hash(path), per entry
        self._parent = array("i")     # index of the parent entry, or -1: the path is stored whole
        self._off = array("I", [0])   # entry i's octets are _arena[_off[i]:_off[i + 1]] ("q" past 4 GiB)
        self._arena = bytearray()
        self._next = array("i")       # the next entry in the same bucket, or -1
        self._head = array("i", [-1]) * _FIRST_TABLE  # the last entry added to each bucket, or -1
        self._mask = _FIRST_TABLE - 1
        self._limit = _FIRST_TABLE * _LOAD
        for p in paths:
            self.add(p)

    def __len__(self) -> int:
        return len(self._parent)

    def __contains__(self, path: bytes) -> bool:
        return self.find(path) >= 0

    def find(self, path: bytes) -> int:
        """The index of ``path``, or -1."""
        h = hash(path) & _MASK32
        hashes, nxt = self._hash, self._next
        i = self._head[h & self._mask]
        while i >= 0:
            if hashes[i] == h and self._is(i, path):
                return i
            i = nxt[i]
        return -1

    def add(self, path: bytes, parent: int = -1, cut: int = 0) -> int:
        """Add ``path``; its index.

        ``parent`` may be the index of ``path[:cut]`` (``cut`` the position of
        the last ``/``, > 0): the path is then stored as the parent's index and
        the last component.  With ``parent`` -1 it is stored whole.
        """
        h = hash(path) & _MASK32
        i = len(self._hash)
        head, b = self._head, h & self._mask
        self._next.append(head[b])
        head[b] = i
        self._hash.append(h)
        arena = self._arena
        if parent >= 0 and cut > 0:
            self._parent.append(parent)
            arena += path[cut + 1:]
        else:
            self._parent.append(-1)
            arena += path
        try:
            self._off.append(len(arena))
        except OverflowError:  # 4 GiB of components
            self._off = array("q", self._off)
            self._off.append(len(arena))
        if i >= self._limit:
            self._grow()
        return i

    def _is(self, i: int, path: bytes) -> bool:
        """Whether entry ``i`` is ``path`` (see the module docstring)."""
        parents, off, arena = self._parent, self._off, self._arena
        while True:
            p = parents[i]
            if p < 0:
                return len(path) == off[i + 1] - off[i] and arena[off[i]:off[i + 1]] == path
            cut = path.rfind(_SEP)
            if cut <= 0 or arena[off[i]:off[i + 1]] != path[cut + 1:]:
                return False
            path = path[:cut]
            i = p

    def _grow(self) -> None:
        size = (self._mask + 1) * _GROWTH
        head = array("i", [-1]) * size
        nxt, mask = self._next, size - 1
        for i, h in enumerate(self._hash):
            b = h & mask
            nxt[i] = head[b]
            head[b] = i
        self._head, self._mask, self._limit = head, mask, size * _LOAD

    def memory(self) -> int:
        """Octets held by the columns and the table (their allocated items)."""
        return sum(a.buffer_info()[1] * a.itemsize for a in (self._hash, self._parent, self._off, self._next,
                                                             self._head)) + len(self._arena)
