"""Headers of stored instances, read from the object store and cached by content digest.

Objects are content-addressed (their name is the SHA-256 of their bytes), so a cached header
can never be stale: the cache needs no invalidation. Headers are read without the pixel data.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import pydicom
from pydicom import Dataset

from radcommons.store.objects import ObjectStore

#: How many headers are kept (a few KB each).
CACHE_SIZE = 4096


class HeaderCache:
    """A thread-safe LRU of ``object_id -> header`` over one object store."""

    def __init__(self, store: ObjectStore, size: int = CACHE_SIZE) -> None:
        self.store = store
        self.size = size
        self._items: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, object_id: str) -> Dataset:
        """The header of a stored instance (raises the store's ObjectNotFoundError when absent)."""
        with self._lock:
            found = self._items.get(object_id)
            if found is not None:
                self._items.move_to_end(object_id)
                return found
        with self.store.open_unverified(object_id) as handle:
            header = pydicom.dcmread(handle, stop_before_pixels=True)
        with self._lock:
            self._items[object_id] = header
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return header
