"""An exact set of absolute xenstore paths in about 25 octets per path.

The xenstore reader's "known parent" rule needs every committed node's path
for the rest of the stream: a million nodes held as ``bytes`` in a ``set``
take about 100 MiB, and their ``hash()`` values alone about 70 MiB (and a
collision between two 64-bit hashes would let an orphan pass unreported).

:class:`PathSet` keeps each path once, as a tree: an entry is either a path
stored whole (``/`` and its children) or its parent's entry and its last
component (``path[:cut]`` and ``path[cut + 1:]``, ``cut`` the last ``/``,
past the first octet).  A path added while its parent is not in the set (an
orphan, whose parent comes later or never) gets entries for its missing
ancestors that are not members (``in`` says no for them) and become members
when those paths are added, so children share their parent's octets whether
or not it came first.  The entries live in ``array`` columns and one
``bytearray`` of components, chained in buckets chosen by ``hash()`` (a
table of each bucket's last entry, and each entry's next, both
``array('i')``: adding is a few appends, never a probe loop).

A hash only chooses where to look: every match is confirmed by comparing the
path with the entry's component and its parents' (:meth:`PathSet._is`), so
two paths that share a hash never stand for each other.  Entry ``i`` is
``R(i) = R(parent) + b"/" + component`` (the component has no ``/``, so
``R(i)``'s last ``/`` is at ``len(R(parent))``), or the whole path; a path
``P`` is entry ``i`` exactly when its last component equals the entry's and
``P[:cut]`` is the parent's entry, which is what :meth:`_is` walks.  Parents
always have smaller indices, so the walk ends.

Past its share of a :class:`.spill.Budget` (24 MiB with the reader's other
sets, some 1,100,000 paths; looked at every few thousand entries, when the
hot path already checks whether the table must grow) the columns stop growing: every new path goes
whole to a temporary file (:mod:`.spill`), and a path is a member when the
columns or the file say so.  A stream under the budget never touches it.
"""

from __future__ import annotations

from array import array

from . import spill

_SEP = 0x2F  # "/"
_ROOT = b"/"
#: the stored hash: 31 bits of hash() (the member flag is the lowest bit of the column)
_MASK32 = 0x7FFFFFFF
_FIRST_TABLE = 1 << 12
_LOAD = 2    # entries per bucket at most, on average
_GROWTH = 4  # the bucket table grows by this factor (to half an entry per bucket)
_MAX_STEP = 1 << 16  # entries between two looks at the memory held
_NEVER = 1 << 62
#: what :meth:`PathSet.find` gives for a member held on disk (any index will do as a parent)
ON_DISK = 1 << 61


class PathSet:
    """Add paths, ask whether (and where) they are; nothing is ever removed."""

    __slots__ = ("_hash", "_parent", "_off", "_arena", "_next", "_head", "_mask", "_limit", "_last", "_last_i",
                 "_budget", "_step", "_disk")

    def __init__(self, paths=(), budget: spill.Budget | None = None):
        self._hash = array("I")       # hash(path) & _MASK32, shifted left, | 1 for a member
        self._parent = array("i")     # index of the parent entry, or -1: the path is stored whole
        self._off = array("I", [0])   # entry i's octets are _arena[_off[i]:_off[i + 1]] ("q" past 4 GiB)
        self._arena = bytearray()
        self._next = array("i")       # the next entry in the same bucket, or -1
        self._head = array("i", [-1]) * _FIRST_TABLE  # the last entry added to each bucket, or -1
        self._mask = _FIRST_TABLE - 1
        self._budget = spill.Budget() if budget is None else budget
        # the columns' size is looked at every _step entries (and when the table fills)
        self._step = max(1, min(_MAX_STEP, self._budget.limit >> 8))
        self._limit = min(_FIRST_TABLE * _LOAD, self._step)
        self._disk: spill.DiskSet | None = None  # the paths past the budget (see _Spilled)
        # the last path whose entry was looked up or made, and its index: siblings come
        # together, and an entry, once there, is there for good (only its member flag changes)
        self._last: bytes | None = None
        self._last_i = -1
        for p in paths:
            self.add(p)

    def __len__(self) -> int:
        """The number of member entries (a path that :meth:`add_child` added twice counts twice)."""
        return sum(h & 1 for h in self._hash)

    def __contains__(self, path: bytes) -> bool:
        return self.find(path) >= 0

    def find(self, path: bytes) -> int:
        """The index of ``path`` when it is a member, else -1."""
        if path == self._last:
            return self._last_i if self._hash[self._last_i] & 1 else -1
        i = self._entry(path, hash(path) & _MASK32)
        if i >= 0 and self._hash[i] & 1:
            self._last, self._last_i = path, i
            return i
        return -1

    def _entry(self, path: bytes, h: int) -> int:
        """The index of ``path``'s entry (a member or not), ``h`` its stored hash; -1 when
        there is none."""
        hashes, nxt = self._hash, self._next
        i = self._head[h & self._mask]
        while i >= 0:
            if hashes[i] >> 1 == h and self._is(i, path):
                return i
            i = nxt[i]
        return -1

    def add(self, path: bytes, parent: int = -1, cut: int = -1) -> int:
        """Make ``path`` a member; its index.

        ``parent`` may be the index of the entry of ``path[:cut]`` (``cut`` the
        position of the last ``/``), as :meth:`find` gave it; with -1 the
        parent's entry is looked up, and made (not a member) when missing.
        """
        h = hash(path) & _MASK32
        i = self._entry(path, h)
        if i >= 0:
            self._hash[i] |= 1
            return i
        if cut < 0:
            cut = path.rfind(_SEP)
        if cut > 0 and parent < 0:
            parent = self._ancestors(path[:cut])
        return self.add_child(path, parent, cut, h)

    def add_child(self, path: bytes, parent: int, cut: int, h: int = -1) -> int:
        """Make ``path`` a member without looking for it first; its index.

        ``parent`` is the index of ``path[:cut]``'s entry (``cut`` the position
        of the last ``/``; with ``cut`` 0, ``path`` is a child of ``/`` and is
        stored whole).  The xenstore reader's hot path: a path that is already
        there gets a second entry, which costs memory as any other path would,
        never an answer (either entry is the path).
        """
        if h < 0:
            h = hash(path) & _MASK32
        if cut <= 0:
            parent, octets = -1, path
        else:
            octets = path[cut + 1:]
        return self._append(h, parent, octets, 1)

    def _ancestors(self, path: bytes) -> int:
        """The index of ``path``'s entry, made (with any missing ancestors, none of them members)
        when missing; iterative, since a path may have a thousand components."""
        if path == self._last:
            return self._last_i
        top, missing = path, []
        while True:
            h = hash(path) & _MASK32
            i = self._entry(path, h)
            if i >= 0:
                break
            cut = path.rfind(_SEP)
            missing.append((path, h, cut))
            if cut <= 0:
                break
            path = path[:cut]
        for path, h, cut in reversed(missing):
            i = self._append(h, -1, path, 0) if cut <= 0 else self._append(h, i, path[cut + 1:], 0)
        self._last, self._last_i = top, i
        return i

    def _append(self, h: int, parent: int, octets: bytes, member: int) -> int:
        """A new entry: ``parent``'s index (-1: ``octets`` is the whole path) and the
        last component; ``member`` 1 makes it a member, 0 an ancestor only."""
        i = len(self._hash)
        head, b = self._head, h & self._mask
        self._next.append(head[b])
        head[b] = i
        self._hash.append(h << 1 | member)
        self._parent.append(parent)
        arena = self._arena
        arena += octets
        try:
            self._off.append(len(arena))
        except OverflowError:  # 4 GiB of components
            self._off = array("q", self._off)
            self._off.append(len(arena))
        if i >= self._limit:
            self._checkpoint()
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

    def _checkpoint(self) -> None:
        """Entry ``len(self._hash) - 1`` reached ``_limit``: grow the table, or spill past the budget."""
        i = len(self._hash) - 1
        if not self._budget.take(self, self.memory()):
            self._disk = spill.DiskSet("the known xenstore paths")
            self.__class__ = _Spilled
            self._limit = _NEVER
            return
        if i >= (self._mask + 1) * _LOAD:
            self._grow()
        self._limit = min((self._mask + 1) * _LOAD, i + self._step)

    def _grow(self) -> None:
        size = (self._mask + 1) * _GROWTH
        head = array("i", [-1]) * size
        nxt, mask = self._next, size - 1
        for i, h in enumerate(self._hash):
            b = (h >> 1) & mask
            nxt[i] = head[b]
            head[b] = i
        self._head, self._mask = head, mask

    def entries(self) -> int:
        """The number of entries, members or not."""
        return len(self._hash)

    def memory(self) -> int:
        """Octets held by the columns and the table (their allocated items)."""
        return sum(a.buffer_info()[1] * a.itemsize for a in (self._hash, self._parent, self._off, self._next,
                                                             self._head)) + len(self._arena)

    def spilled(self) -> bool:
        """Whether paths past the budget went to a temporary file (see :mod:`.spill`)."""
        return self._disk is not None

    def close(self) -> None:
        """Let go of the temporary file, if any (the set answers no more questions)."""
        if self._disk is not None:
            self._disk.close()


class _Spilled(PathSet):
    """A :class:`PathSet` past its budget: the columns stay as they are (entries already there
    still become members when their paths are added), every other path goes whole to the
    :class:`~.spill.DiskSet`, and a path is a member when either says so.  A ``find``/``add_child``
    bound before the switch still works on the columns alone: it may miss a path on disk (the
    reader then asks again through the record's parser) and adds to the columns until the
    reader's run of nodes ends, a window's worth at most."""

    __slots__ = ()

    def find(self, path: bytes) -> int:
        i = PathSet.find(self, path)
        if i >= 0:
            return i
        return ON_DISK if path in self._disk else -1

    def add(self, path: bytes, parent: int = -1, cut: int = -1) -> int:
        h = hash(path) & _MASK32
        i = self._entry(path, h)
        if i >= 0:
            self._hash[i] |= 1
            return i
        self._disk.add(path)
        return ON_DISK

    def add_child(self, path: bytes, parent: int, cut: int, h: int = -1) -> int:
        self._disk.add(path)
        return ON_DISK

    def _checkpoint(self) -> None:
        self._limit = _NEVER

    def __len__(self) -> int:
        return PathSet.__len__(self) + len(self._disk)
