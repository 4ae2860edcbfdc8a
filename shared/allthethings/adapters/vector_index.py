"""The embedded store's vectors held in memory for search: one matrix product a query.

sqlite-vec's `vec0` table scans every stored vector in its own loop on each query: about 12 ms
at 10,000 384-d vectors and ten times that at 100,000 on the machine of BENCHMARKS.md, more than
the query's embedding itself. The same vectors in a NumPy matrix are one BLAS product. The
table stays the source of truth; this is a copy of it, kept current by the store:

- every write that changes the table records its rows here before it commits, while it holds
  SQLite's write lock, so the copy changes in the order the file does;
- the file's `vectors_version` (in `meta`) counts those writes; a search that finds a version
  other than the copy's (another process wrote, or a commit failed after its rows were recorded)
  reads the whole table again.

Rows are unit vectors (a similarity is a dot product), stored densely: a removed row's place is
taken by the last row. The filters' metadata rides along as arrays, so a filter is a mask over
the rows before ranking, as in the table. A row of no source has the empty source id and the
publication time NO_DATE, as in the table (its metadata columns cannot hold NULL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from allthethings.domain.search import SearchFilter

# The publication time of a chunk whose asset has none: never at or after any instant, and left
# out explicitly by a `published_before` filter (it is before every instant).
NO_DATE = float("-inf")


@dataclass(frozen=True)
class IndexedRow:
    """One searchable chunk as the index holds it: its rowid, vector and the filters' metadata."""

    rowid: int
    vector: bytes | Sequence[float]  # float32 bytes (as the table stores it) or floats
    kind: str
    host: str
    created_at: float
    source_id: str = ""
    published_at: float = NO_DATE


class VectorIndex:
    """An in-memory copy of the store's vector table at a known version (see the module docstring)."""

    def __init__(self, dimensions: int):
        self.dimensions = dimensions
        self.version: int | None = None  # None: nothing loaded yet
        self._lock = threading.Lock()
        self._size = 0
        self._positions: dict[int, int] = {}
        self._kinds: dict[str, int] = {}
        self._hosts: dict[str, int] = {}
        self._sources: dict[str, int] = {}
        self._allocate(0)

    def __len__(self) -> int:
        return self._size

    # -- keeping the copy --------------------------------------------------------------------
    def load(self, rows: Iterable[IndexedRow], version: int) -> None:
        """Replace the whole copy with `rows`, the table as it was at `version`."""
        fresh = VectorIndex(self.dimensions)
        fresh._add(list(rows))
        with self._lock:
            for name in ("_size", "_positions", "_kinds", "_hosts", "_sources", *_ARRAYS):
                setattr(self, name, getattr(fresh, name))
            self.version = version

    def apply(self, added: Sequence[IndexedRow], removed: Sequence[int], version: int) -> None:
        """A committed write's change: `removed` rowids leave, then `added` rows join, and the copy
        is at `version`. A copy not loaded yet, or not at the version before this one, is left
        for a full read (its version then differs from the file's)."""
        with self._lock:
            if self.version is None:
                return
            if self.version != version - 1:
                self.version = -1  # not a version the file has had: the next search reads it all
                return
            self._remove(removed)
            self._add(added)
            self.version = version

    def invalidate(self) -> None:
        with self._lock:
            self.version = -1 if self.version is not None else None

    def _allocate(self, capacity: int) -> None:
        import numpy as np

        self._matrix = np.zeros((capacity, self.dimensions), dtype=np.float32)
        self._rowids = np.zeros(capacity, dtype=np.int64)
        self._kind_codes = np.zeros(capacity, dtype=np.int16)
        self._host_codes = np.zeros(capacity, dtype=np.int32)
        self._created = np.zeros(capacity, dtype=np.float64)
        self._source_codes = np.zeros(capacity, dtype=np.int32)
        self._published = np.zeros(capacity, dtype=np.float64)

    def _grow(self, needed: int) -> None:
        import numpy as np

        capacity = len(self._rowids)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2, 1024)
        for name in _ARRAYS:
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:self._size] = old[:self._size]
            setattr(self, name, new)

    def _add(self, rows: Sequence[IndexedRow]) -> None:
        import numpy as np

        rows = [r for r in rows if r.rowid not in self._positions]
        if not rows:
            return
        self._grow(self._size + len(rows))
        vectors = np.stack([np.frombuffer(r.vector, dtype=np.float32) if isinstance(r.vector, bytes | bytearray)
                            else np.asarray(r.vector, dtype=np.float32) for r in rows])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        start = self._size
        end = start + len(rows)
        self._matrix[start:end] = vectors / norms
        for offset, row in enumerate(rows):
            at = start + offset
            self._rowids[at] = row.rowid
            self._kind_codes[at] = self._kinds.setdefault(row.kind, len(self._kinds))
            self._host_codes[at] = self._hosts.setdefault(row.host, len(self._hosts))
            self._created[at] = row.created_at
            self._source_codes[at] = self._sources.setdefault(row.source_id, len(self._sources))
            self._published[at] = row.published_at
            self._positions[row.rowid] = at
        self._size = end

    def _remove(self, rowids: Iterable[int]) -> None:
        for rowid in rowids:
            at = self._positions.pop(rowid, None)
            if at is None:
                continue
            last = self._size - 1
            if at != last:  # the last row takes the removed row's place
                for name in _ARRAYS:
                    array = getattr(self, name)
                    array[at] = array[last]
                self._positions[int(self._rowids[at])] = at
            self._size = last

    # -- searching ---------------------------------------------------------------------------
    def search(self, vector: Sequence[float], limit: int,
               search_filter: SearchFilter | None = None) -> list[tuple[int, float]]:
        """The `limit` rows most similar to `vector` that pass the filter: (rowid, cosine
        similarity), most similar first."""
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm:
            query = query / norm
        with self._lock:  # a consistent view; the product itself is a few milliseconds at most
            size = self._size
            if not size or limit <= 0:
                return []
            chosen = self._chosen(size, search_filter)
            if chosen is None:
                scores = self._matrix[:size] @ query
                rowids = self._rowids[:size]
            else:
                if not len(chosen):
                    return []
                scores = self._matrix[chosen] @ query
                rowids = self._rowids[chosen]
        top = np.argpartition(-scores, limit - 1)[:limit] if limit < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((rowids[top], -scores[top]))]  # best first; ties in rowid order
        return [(int(rowids[i]), float(scores[i])) for i in top]

    def _chosen(self, size: int, search_filter: SearchFilter | None):
        """The positions passing the filter (None: every row)."""
        import numpy as np

        if search_filter is None or search_filter.is_empty:
            return None
        mask = np.ones(size, dtype=bool)
        if search_filter.kinds:
            codes = [self._kinds[k.value] for k in search_filter.kinds if k.value in self._kinds]
            mask &= np.isin(self._kind_codes[:size], codes)
        if search_filter.host:
            code = self._hosts.get(search_filter.host.lower())
            if code is None:
                return np.zeros(0, dtype=np.int64)
            mask &= self._host_codes[:size] == code
        if search_filter.after:
            mask &= self._created[:size] >= search_filter.after.timestamp()
        if search_filter.before:
            mask &= self._created[:size] < search_filter.before.timestamp()
        if search_filter.source:
            code = self._sources.get(search_filter.source)
            if code is None:
                return np.zeros(0, dtype=np.int64)
            mask &= self._source_codes[:size] == code
        if search_filter.published_after:
            mask &= self._published[:size] >= search_filter.published_after.timestamp()
        if search_filter.published_before:
            published = self._published[:size]
            mask &= (published < search_filter.published_before.timestamp()) & (published > NO_DATE)
        return np.flatnonzero(mask)


# The per-row arrays, in one place: loading, growing and removing move them all together.
_ARRAYS = ("_matrix", "_rowids", "_kind_codes", "_host_codes", "_created", "_source_codes", "_published")
