"""A mapping bounded in bytes that forgets its least recently used entries one at a time.

The worker's in-process caches (text embeddings, profile chunk vectors, the pairs task evaluation sent) are bounded
by what they hold in memory rather than by a count of entries whose size varies, and evict the coldest entry when a
new one does not fit, so that a full cache never drops everything at once (and re-encodes it all in one burst).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MIB = 2**20
# What an OrderedDict entry costs beyond its key and value: the hash table slot and the linked-list node.
ENTRY_OVERHEAD = 100


def size_of(obj: object) -> int:
    """Bytes of ``obj`` (an array's buffer, a tuple's items, a string) without the interpreter's sharing."""
    if isinstance(obj, np.ndarray):
        return sys.getsizeof(obj) + (0 if obj.base is None and obj.flags.owndata else obj.nbytes)
    if isinstance(obj, tuple):
        return sys.getsizeof(obj) + sum(size_of(x) for x in obj)
    return sys.getsizeof(obj)


class ByteLRU(Generic[K, V]):
    """At most ``max_bytes`` of entries (each counted as its key's and value's :func:`size_of` plus the dict's
    own cost); ``get`` refreshes an entry, ``put`` evicts the least recently used until the new one fits. An
    entry larger than the whole bound is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K, default: V | None = None) -> V | None:
        found = self._data.get(key)
        if found is None:
            return default
        self._data.move_to_end(key)
        return found[0]

    def __getitem__(self, key: K) -> V:
        value, _ = self._data[key]
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V, size: int | None = None) -> None:
        size = (size_of(key) + size_of(value) if size is None else size) + ENTRY_OVERHEAD
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return
        self._data[key] = (value, size)
        self.bytes += size
        self._evict()

    def resize(self, max_bytes: int) -> None:
        """Bound the cache at ``max_bytes`` from now on, evicting the least recently used entries down to it."""
        self.max_bytes = max_bytes
        self._evict()

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        return len(self._data), self.bytes

    def _evict(self) -> None:
        while self.bytes > self.max_bytes:
            _, (_, size) = self._data.popitem(last=False)
            self.bytes -= size
            self.evictions += 1

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0
