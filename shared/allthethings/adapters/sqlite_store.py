"""The embedded store: SQLite with the sqlite-vec extension, in one persistent file.

Assets and chunks are plain tables. A searchable chunk is also in two search tables keyed by
the chunk's rowid: `chunk_vectors` (sqlite-vec `vec0`, cosine distance) and `chunk_fts` (FTS5,
BM25), each carrying the asset's kind, host, creation time, source and publication time so that
filters apply inside the nearest-neighbour and full-text queries, before ranking. A vector
search reads a copy of `chunk_vectors` held in memory (`vector_index.py`), which each write
keeps current. One connection per thread, WAL journal, and every multi-statement write in a
transaction, so a crash never leaves half an asset behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Sequence
from datetime import UTC

from allthethings.adapters.records import (
    FIELDS,
    SQL,
    SearchMetadata,
    decode,
    encode,
    encode_changes,
    linked_fields,
    search_metadata,
)
from allthethings.adapters.sqlite_tx import ThreadConnections, connect, write_transaction, writer_lock
from allthethings.adapters.vector_index import NO_DATE, IndexedRow, VectorIndex
from allthethings.domain import cursor as cursors
from allthethings.domain.assets import Asset, Chunk, ChunkHit, Location, Status
from allthethings.domain.errors import InvalidInput
from allthethings.domain.listing import AssetFilter
from allthethings.domain.search import SearchFilter, query_terms
from allthethings.ports import AssetStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    content_type TEXT, kind TEXT, title TEXT, error TEXT, staged_key TEXT,
    size_bytes INTEGER, chunk_count INTEGER, prediction_id TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, sha256 TEXT, metadata TEXT,
    fetched_bytes INTEGER, embedded_chunks INTEGER, thumbnail_key TEXT,
    source_id TEXT, published_at TEXT, author TEXT, description TEXT, transcript TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    asset_id TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    start_s REAL, end_s REAL,
    location TEXT,
    UNIQUE (asset_id, idx)
);
"""

_COLUMNS = ", ".join(FIELDS)
# The asset's search metadata, as both search tables name their columns (see _search_columns).
_META = "kind, host, created_at, source_id, published_at"
_INSERT_VECTOR = f"INSERT INTO chunk_vectors (rowid, embedding, {_META}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_FTS = f"INSERT INTO chunk_fts (rowid, text, {_META}) VALUES (?, ?, ?, ?, ?, ?, ?)"


class SqliteStore(AssetStore):
    def __init__(self, path: str, dimensions: int, model: str):
        self.path = path
        self.dimensions = dimensions
        self.model = model
        self._local = threading.local()
        self._init_lock = threading.Lock()
        self._initialised = False
        self._index = VectorIndex(dimensions)
        self._load_lock = threading.Lock()
        self._writer = writer_lock(path)
        self._connections = ThreadConnections(self._open)

    # -- connection and schema -------------------------------------------------
    def _conn(self):
        """This thread's connection (see ThreadConnections)."""
        return self._connections.get()

    def _open(self):
        if os.path.dirname(self.path):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        conn = connect(self.path)
        with self._init_lock:
            if not self._initialised:
                try:
                    self._create_schema(conn)
                except BaseException:
                    conn.close()
                    raise
                self._initialised = True
        return conn

    def _vector_table(self) -> str:
        return (f"CREATE VIRTUAL TABLE IF NOT EXISTS chunk_vectors USING vec0(embedding float[{self.dimensions}] "
                "distance_metric=cosine, kind text, host text, created_at float, source_id text, published_at float)")

    def _create_schema(self, conn) -> None:
        conn.executescript(_SCHEMA)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(assets)")}
        if "sha256" not in columns:
            conn.execute("ALTER TABLE assets ADD COLUMN sha256 TEXT")  # a file made before content reuse
        if "metadata" not in columns:
            conn.execute("ALTER TABLE assets ADD COLUMN metadata TEXT")  # a file made before documents
        for column in ("fetched_bytes", "embedded_chunks"):  # a file made before fetching and embedding in steps
            if column not in columns:
                conn.execute(f"ALTER TABLE assets ADD COLUMN {column} INTEGER")
        if "thumbnail_key" not in columns:
            conn.execute("ALTER TABLE assets ADD COLUMN thumbnail_key TEXT")  # a file made before images
        for column in ("source_id", "published_at", "author", "description", "transcript"):
            if column not in columns:  # a file made before sources
                conn.execute(f"ALTER TABLE assets ADD COLUMN {column} TEXT")
        if "location" not in {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}:
            conn.execute("ALTER TABLE chunks ADD COLUMN location TEXT")  # a file made before locations
        # The search tables last: rebuilding them reads every asset column, the ones just added too.
        existing = {name: sql for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name IN ('chunk_vectors', 'chunk_fts')")}
        conn.execute(self._vector_table())
        conn.execute(_FTS_TABLE)
        if any("source_id" not in sql for sql in existing.values()):
            self._add_search_metadata(conn)
        conn.execute("CREATE INDEX IF NOT EXISTS assets_sha256 ON assets (sha256) WHERE sha256 IS NOT NULL")
        conn.execute("CREATE INDEX IF NOT EXISTS assets_source ON assets (source_id) WHERE source_id IS NOT NULL")
        conn.execute("CREATE INDEX IF NOT EXISTS assets_status_updated ON assets (status, updated_at)")
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('vectors_version', '0')")
        row = conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('model', ?)",
                         (json.dumps({"model": self.model, "dimensions": self.dimensions}),))
        else:
            stored = json.loads(row[0])
            if stored["dimensions"] != self.dimensions:
                raise RuntimeError(
                    f"{self.path} holds {stored['dimensions']}-d vectors of {stored['model']}, but the "
                    f"configured model {self.model} makes {self.dimensions}-d ones: use another DATA_DIR "
                    "or delete the file to re-index")

    def _add_search_metadata(self, conn) -> None:
        """Upgrade a file made before filters or before sources: rebuild both search tables with
        every column of the asset's search metadata (a virtual table's columns cannot be added)."""
        with write_transaction(conn, self._writer):
            rows = conn.execute(
                f"SELECT v.rowid, v.embedding, c.text, {', '.join(f'a.{f}' for f in FIELDS)} FROM chunk_vectors v "
                "JOIN chunks c ON c.rowid = v.rowid JOIN assets a ON a.id = c.asset_id").fetchall()
            conn.execute("DROP TABLE chunk_vectors")
            conn.execute(self._vector_table())
            conn.execute("DROP TABLE IF EXISTS chunk_fts")
            conn.execute(_FTS_TABLE)
            for rowid, embedding, text, *asset in rows:
                meta = _search_columns(search_metadata(_asset(asset)))
                conn.execute(_INSERT_VECTOR, (rowid, embedding, *meta))
                conn.execute(_INSERT_FTS, (rowid, text, *meta))
            _next_vectors_version(conn)  # any copy held in memory reads the table again

    def close(self) -> None:
        """Close this thread's connection and the idle ones."""
        self._connections.close()

    # -- assets ----------------------------------------------------------------
    def _select(self, where: str, args: tuple) -> Asset | None:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM assets WHERE {where}", args).fetchone()
        return _asset(row) if row else None

    def _insert(self, asset: Asset) -> bool:
        record = encode(asset, SQL)
        cur = self._conn().execute(
            f"INSERT INTO assets ({', '.join(record)}) VALUES ({', '.join('?' * len(record))}) "
            "ON CONFLICT (url) DO NOTHING", tuple(record.values()))
        return cur.rowcount == 1

    def _fetch(self, asset_ids: Sequence[str]) -> list[Asset]:
        # One parameter however many ids: json_each stays clear of SQLite's limit on bound variables.
        rows = self._conn().execute(f"SELECT {_COLUMNS} FROM assets WHERE id IN (SELECT value FROM json_each(?))",
                                    (json.dumps(list(asset_ids)),)).fetchall()
        return [_asset(r) for r in rows]

    def find_by_digest(self, sha256: str) -> Asset | None:
        return self._select("sha256 = ? AND status = ? ORDER BY seq LIMIT 1", (sha256, Status.SEARCHABLE.value))

    def _copy(self, asset: Asset, source_id: str) -> bool:
        # Inside add_copy's transaction: the asset and every copied row commit together.
        if not self._insert(asset):
            return False
        self._copy_chunks(asset, source_id)
        return True

    def _copy_chunks(self, asset: Asset, source_id: str) -> None:
        # Inside a transaction (add_copy's, become_copy's), with the asset's own write.
        conn = self._conn()
        self._delete_chunks(conn, asset.id)
        meta = _search_columns(search_metadata(asset))
        rows = conn.execute(
            "SELECT c.idx, c.text, c.start_s, c.end_s, c.location, v.embedding FROM chunks c "
            "JOIN chunk_vectors v ON v.rowid = c.rowid WHERE c.asset_id = ? ORDER BY c.idx",
            (source_id,)).fetchall()
        for idx, text, start_s, end_s, location, embedding in rows:
            rowid = conn.execute(
                "INSERT INTO chunks (asset_id, idx, text, start_s, end_s, location) VALUES (?, ?, ?, ?, ?, ?)",
                (asset.id, idx, text, start_s, end_s, location)).lastrowid
            conn.execute(_INSERT_VECTOR, (rowid, embedding, *meta))
            self._vector_changes().added.append(IndexedRow(rowid, embedding, *meta))
            conn.execute(_INSERT_FTS, (rowid, text, *meta))

    def get_by_url(self, url: str) -> Asset | None:
        return self._select("url = ?", (url,))

    def stale(self, statuses, updated_before, limit):
        marks = ", ".join("?" for _ in statuses)
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM assets WHERE status IN ({marks}) AND updated_at < ? "
            "ORDER BY updated_at LIMIT ?",
            (*(s.value for s in statuses), updated_before.astimezone(UTC).isoformat(), limit)).fetchall()
        return [_asset(r) for r in rows]

    def list(self, limit: int, cursor: str | None,
             listing_filter: AssetFilter | None = None) -> tuple[list[Asset], str | None]:
        before = cursors.decode(cursor, "seq")["seq"] if cursor else None
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page")
        where, args = _listing_sql(listing_filter)
        if before is not None:
            where.append("seq < ?")
            args.append(int(before))
        sql = f"SELECT seq, {_COLUMNS} FROM assets" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self._conn().execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        page = rows[:limit]
        next_cursor = cursors.encode({"seq": page[-1][0]}) if len(rows) > limit else None
        return [_asset(r[1:]) for r in page], next_cursor

    def _transaction(self):
        """The write transaction of `_write`: the template methods' primitives all use this thread's
        connection, so they run inside it."""
        return self._write()

    @contextlib.contextmanager
    def _write(self):
        """One write transaction, taken up front so that concurrent writers queue instead of failing.
        What it changes in `chunk_vectors` reaches the copy in memory just before it commits."""
        self._local.changes = _VectorChanges()
        try:
            with write_transaction(self._conn(), self._writer, self._publish_changes) as conn:
                yield conn
        except BaseException:
            if self._local.changes.published:
                self._index.invalidate()  # recorded, then not committed: read the table again
            raise
        finally:
            self._local.changes = None

    def _vector_changes(self) -> _VectorChanges:
        changes = getattr(self._local, "changes", None)
        if changes is None:
            raise RuntimeError("vectors change only inside the store's write transaction")
        return changes

    def _publish_changes(self, conn) -> None:
        changes = self._local.changes
        if changes.added or changes.removed:
            changes.published = True
            self._index.apply(changes.added, changes.removed, _next_vectors_version(conn))

    def _delete_chunks(self, conn, asset_id: str) -> None:
        rowids = [r[0] for r in conn.execute("SELECT rowid FROM chunks WHERE asset_id = ?", (asset_id,))]
        if not rowids:
            return
        conn.executemany("DELETE FROM chunk_vectors WHERE rowid = ?", [(r,) for r in rowids])
        conn.executemany("DELETE FROM chunk_fts WHERE rowid = ?", [(r,) for r in rowids])
        conn.execute("DELETE FROM chunks WHERE asset_id = ?", (asset_id,))
        self._vector_changes().removed.extend(rowids)

    def delete(self, asset_id: str) -> None:
        with self._write() as conn:
            self._delete_chunks(conn, asset_id)
            conn.execute("DELETE FROM assets WHERE id = ?", (asset_id,))

    def link_source(self, asset_id: str, source_id: str, **item) -> bool:
        fields = linked_fields(item)
        title = fields.pop("title", None)
        record = encode_changes({"source_id": source_id, **fields}, SQL)
        with self._write() as conn:  # the asset and its chunks' search metadata together
            cur = conn.execute(
                f"UPDATE assets SET {''.join(f'{k} = ?, ' for k in record)}title = coalesce(title, ?) "
                "WHERE id = ? AND source_id IS NULL", (*record.values(), title, asset_id))
            if cur.rowcount != 1:
                return False
            self._relabel_chunks(conn, self._select("id = ?", (asset_id,)))
        return True

    def _relabel_chunks(self, conn, asset: Asset) -> None:
        """Give the asset's searchable chunks its source and publication time, in both search
        tables and in the copy in memory (inside the caller's write transaction)."""
        meta = _search_columns(search_metadata(asset))
        source_id, published_at = meta[3], meta[4]
        rows = conn.execute("SELECT v.rowid, v.embedding FROM chunks c JOIN chunk_vectors v ON v.rowid = c.rowid "
                            "WHERE c.asset_id = ?", (asset.id,)).fetchall()
        for table in ("chunk_vectors", "chunk_fts"):
            conn.executemany(f"UPDATE {table} SET source_id = ?, published_at = ? WHERE rowid = ?",
                             [(source_id, published_at, rowid) for rowid, _ in rows])
        changes = self._vector_changes()  # the copy takes the rows out and back with their new metadata
        changes.removed.extend(rowid for rowid, _ in rows)
        changes.added.extend(IndexedRow(rowid, embedding, *meta) for rowid, embedding in rows)

    def source_counts(self, source_id: str) -> dict[Status, int]:
        rows = self._conn().execute("SELECT status, count(*) FROM assets WHERE source_id = ? GROUP BY status",
                                    (source_id,))
        return {Status(status): count for status, count in rows}

    def _update_if(self, asset_id: str, sources: frozenset[Status], changes: dict) -> bool:
        if not sources:
            return False
        record = encode_changes(changes, SQL)
        marks = ", ".join("?" * len(sources))
        cur = self._conn().execute(
            f"UPDATE assets SET {', '.join(f'{k} = ?' for k in record)} WHERE id = ? AND status IN ({marks})",
            (*record.values(), asset_id, *sorted(s.value for s in sources)))
        return cur.rowcount == 1

    # -- chunks ----------------------------------------------------------------
    def put_chunks(self, asset_id: str, chunks: Sequence[Chunk]) -> None:
        with self._write() as conn:
            self._delete_chunks(conn, asset_id)
            conn.executemany(
                "INSERT INTO chunks (asset_id, idx, text, start_s, end_s, location) VALUES (?, ?, ?, ?, ?, ?)",
                [(asset_id, c.index, c.text, c.start_s, c.end_s, _location_json(c.location)) for c in chunks])

    def chunks(self, asset_id: str, limit: int | None = None) -> list[Chunk]:
        rows = self._conn().execute(
            "SELECT idx, text, start_s, end_s, location FROM chunks WHERE asset_id = ? ORDER BY idx LIMIT ?",
            (asset_id, -1 if limit is None else limit))
        return [Chunk(asset_id=asset_id, index=r[0], text=r[1], start_s=r[2], end_s=r[3],
                      location=_location(r[4])) for r in rows]

    def _chunk_count(self, asset_id: str) -> int:
        return self._conn().execute("SELECT count(*) FROM chunks WHERE asset_id = ?", (asset_id,)).fetchone()[0]

    def _attach_vectors(self, asset: Asset, vectors: Sequence[Sequence[float]]) -> None:
        from sqlite_vec import serialize_float32

        # Inside make_searchable's transaction, with the status move that follows.
        conn = self._conn()
        rows = conn.execute("SELECT rowid, text FROM chunks WHERE asset_id = ? ORDER BY idx", (asset.id,)).fetchall()
        meta = _search_columns(search_metadata(asset))
        added = [IndexedRow(rid, serialize_float32(list(v)), *meta) for (rid, _), v in zip(rows, vectors)]
        conn.executemany(_INSERT_VECTOR, [(r.rowid, r.vector, *meta) for r in added])
        self._vector_changes().added.extend(added)
        conn.executemany(_INSERT_FTS, [(rid, text, *meta) for rid, text in rows])

    def search(self, vector: Sequence[float], limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        conn = self._conn()
        nearest = self._current_index(conn).search(vector, min(limit, MAX_KNN), search_filter)
        if not nearest:
            return []
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT rowid, asset_id, idx, text, start_s, end_s, location FROM chunks "
            "WHERE rowid IN (SELECT value FROM json_each(?))", (json.dumps([rowid for rowid, _ in nearest]),))}
        # A chunk deleted since the copy was read is left out.
        return [ChunkHit(asset_id=row[0], index=row[1], text=row[2], start_s=row[3], end_s=row[4], score=similarity,
                         similarity=similarity, location=_location(row[5]))
                for rowid, similarity in nearest if (row := rows.get(rowid)) is not None]

    def _current_index(self, conn) -> VectorIndex:
        """The copy of `chunk_vectors` in memory, read again whole if the file's version is not its."""
        if self._index.version != _vectors_version(conn):
            with self._load_lock:
                conn.execute("BEGIN")  # one snapshot: the rows and the version they are at
                try:
                    version = _vectors_version(conn)
                    if self._index.version != version:
                        rows = conn.execute(f"SELECT rowid, embedding, {_META} FROM chunk_vectors")
                        self._index.load((IndexedRow(*r) for r in rows), version)
                finally:
                    conn.execute("COMMIT")
        return self._index

    def keyword_search(self, query: str, limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        terms = query_terms(query)
        if not terms:
            return []
        where, args = _filter_sql(search_filter, "f")
        # Rank in the full-text table alone, then read the few chunks ranked (a join before the
        # LIMIT reads a chunk row for every match).
        rows = self._conn().execute(
            f"""
            WITH ranked AS (
                SELECT f.rowid AS rowid, bm25(chunk_fts) AS rank FROM chunk_fts f
                WHERE chunk_fts MATCH ? {where} ORDER BY rank LIMIT ?)
            SELECT c.asset_id, c.idx, c.text, c.start_s, c.end_s, ranked.rank, c.location
            FROM ranked JOIN chunks c ON c.rowid = ranked.rowid ORDER BY ranked.rank
            """, (" OR ".join(f'"{t}"' for t in terms), *args, limit)).fetchall()
        # BM25 here is lower-is-better and negative; flip it so that higher is better, as elsewhere.
        return [ChunkHit(asset_id=r[0], index=r[1], text=r[2], start_s=r[3], end_s=r[4], score=-r[5], keyword=True,
                         location=_location(r[6]))
                for r in rows]


def _location_json(location: Location | None) -> str | None:
    return json.dumps(location.to_public(), ensure_ascii=False) if location is not None else None


def _location(raw: str | None) -> Location | None:
    return Location.from_public(json.loads(raw)) if raw else None


# sqlite-vec answers at most this many neighbours in one query; the copy in memory keeps its limit.
MAX_KNN = 4096


@dataclasses.dataclass
class _VectorChanges:
    """What one write transaction changed in `chunk_vectors`, for the copy in memory."""

    added: list[IndexedRow] = dataclasses.field(default_factory=list)
    removed: list[int] = dataclasses.field(default_factory=list)
    published: bool = False


def _vectors_version(conn) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'vectors_version'").fetchone()
    return int(row[0]) if row else 0


def _next_vectors_version(conn) -> int:
    """Count one more change of `chunk_vectors` (inside the write transaction that makes it)."""
    version = _vectors_version(conn) + 1
    conn.execute("INSERT INTO meta (key, value) VALUES ('vectors_version', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(version),))
    return version


def _asset(row: Sequence) -> Asset:
    return decode(dict(zip(FIELDS, row)), SQL)


_FTS_TABLE = (f"CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(text, "
              f"{', '.join(f'{c} UNINDEXED' for c in _META.split(', '))}, tokenize='porter unicode61')")


def _search_columns(meta: SearchMetadata) -> tuple[str, str, float, str, float]:
    """The metadata as the search tables' columns hold it: times as Unix timestamps, and no NULL
    (sqlite-vec's metadata columns refuse it): no kind or source is "", no publication NO_DATE."""
    return (meta.kind or "", meta.host, meta.created_at.timestamp(), meta.source_id or "",
            meta.published_at.timestamp() if meta.published_at else NO_DATE)


def _filter_sql(search_filter: SearchFilter | None, alias: str) -> tuple[str, list]:
    """The filter as conditions on a search table's metadata columns (applied before ranking)."""
    if search_filter is None or search_filter.is_empty:
        return "", []
    parts, args = [], []
    if search_filter.kinds:
        parts.append(f"{alias}.kind IN ({', '.join('?' * len(search_filter.kinds))})")
        args += [k.value for k in search_filter.kinds]
    if search_filter.host:
        parts.append(f"{alias}.host = ?")
        args.append(search_filter.host.lower())
    if search_filter.after:
        parts.append(f"{alias}.created_at >= ?")
        args.append(search_filter.after.timestamp())
    if search_filter.before:
        parts.append(f"{alias}.created_at < ?")
        args.append(search_filter.before.timestamp())
    if search_filter.source:
        parts.append(f"{alias}.source_id = ?")
        args.append(search_filter.source)
    if search_filter.published_after:
        parts.append(f"{alias}.published_at >= ?")
        args.append(search_filter.published_after.timestamp())
    if search_filter.published_before:
        # NO_DATE is before every instant: an asset published at no known time is left out.
        parts += [f"{alias}.published_at < ?", f"{alias}.published_at > ?"]
        args += [search_filter.published_before.timestamp(), NO_DATE]
    return "AND " + " AND ".join(parts), args


def _like_pattern(text: str) -> str:
    """`%text%` with LIKE's own wildcards (and the escape character) in `text` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _listing_sql(listing_filter: AssetFilter | None) -> tuple[list[str], list]:
    """The listing filter as conditions on the assets table (a list scan: a substring has no index)."""
    if listing_filter is None or listing_filter.is_empty:
        return [], []
    parts: list[str] = []
    args: list = []
    if listing_filter.statuses:
        parts.append(f"status IN ({', '.join('?' * len(listing_filter.statuses))})")
        args += [s.value for s in listing_filter.statuses]
    if listing_filter.kinds:
        parts.append(f"kind IN ({', '.join('?' * len(listing_filter.kinds))})")
        args += [k.value for k in listing_filter.kinds]
    if listing_filter.source:
        parts.append("source_id = ?")
        args.append(listing_filter.source)
    if listing_filter.text:
        pattern = _like_pattern(listing_filter.folded_text)
        parts.append("(py_lower(url) LIKE ? ESCAPE '\\' OR py_lower(coalesce(title, '')) LIKE ? ESCAPE '\\')")
        args += [pattern, pattern]
    return parts, args
