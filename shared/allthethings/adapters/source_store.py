"""Where sources and their entries are kept: SQLite (beside the embedded asset store, in the same
file) or MongoDB (beside the Atlas asset store, in the same database).

Both keep two tables or collections: `sources`, one row per source (its URL unique), and
`source_entries`, one row per (source, URL), with a `seq` that grows in the order entries are
first listed. Both write a source and an entry through one mapping (`_encode_source`,
`_encode_entry` and their inverses) whose `Dialect` says how a time or a document is written:
SQLite keeps times as ISO 8601 text in UTC with microseconds (fixed width, so that comparing and
ordering the text compares the times) and `skipped` and the transcripts as JSON text; MongoDB
keeps BSON dates (milliseconds; read back aware, in UTC) and documents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from allthethings.adapters.records import Dialect
from allthethings.adapters.sqlite_tx import ThreadConnections, connect, write_transaction, writer_lock
from allthethings.domain import cursor as cursors
from allthethings.domain.assets import now
from allthethings.domain.errors import InvalidInput, UpstreamUnavailable
from allthethings.domain.sources import Entry, EntryState, Source, SourceKind, Transcript
from allthethings.ports import SourceStore

SOURCE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Source))
ENTRY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Entry))
# What `update` may set (the time of the change among them: it is set to now unless given).
SETTABLE = frozenset(SOURCE_FIELDS) - {"id", "url", "created_at"}

_SOURCE_TIMES = frozenset({"created_at", "updated_at", "last_refresh_at", "next_refresh_at"})
_ENTRY_TIMES = frozenset({"created_at", "published_at"})


def changes_of(fields: Mapping[str, object]) -> dict:
    """What `update` writes: the fields, checked, and the time of the change."""
    unknown = set(fields) - SETTABLE
    if unknown:
        raise ValueError(f"unknown source fields {sorted(unknown)}")
    return {"updated_at": now(), **fields}


def finished(state: EntryState) -> EntryState:
    """The state `finish_entry` may record: an entry is finished once, and never back to PENDING."""
    state = EntryState(state)
    if state is EntryState.PENDING:
        raise ValueError("an entry is finished as SUBMITTED or REFUSED, not PENDING")
    return state


def _utc(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _sql_time(value: datetime) -> str:
    return _utc(value).isoformat(timespec="microseconds")


SQL = Dialect("id", _sql_time, lambda raw: _utc(datetime.fromisoformat(raw)),
              lambda doc: json.dumps(doc, ensure_ascii=False), json.loads)
BSON = Dialect("_id", lambda value: value, _utc, lambda doc: doc, lambda doc: doc)


# -- the mapping both stores share ---------------------------------------------------------------

def _encode_source_value(field: str, value, dialect: Dialect):
    if value is None:
        return None
    if field == "kind":
        return SourceKind(value).value
    if field in _SOURCE_TIMES:
        return dialect.time_out(value)
    if field == "skipped":
        return dialect.document_out(dict(value))
    return value


def _encode_source_changes(changes: Mapping[str, object], dialect: Dialect) -> dict:
    return {dialect.key(f): _encode_source_value(f, v, dialect) for f, v in changes.items()}


def _encode_source(source: Source, dialect: Dialect) -> dict:
    return _encode_source_changes({f: getattr(source, f) for f in SOURCE_FIELDS}, dialect)


def _decode_source(record: Mapping, dialect: Dialect) -> Source:
    values = {}
    for field in SOURCE_FIELDS:
        raw = record.get(dialect.key(field))
        if raw is not None and field == "kind":
            raw = SourceKind(raw)
        elif raw is not None and field in _SOURCE_TIMES:
            raw = dialect.time_in(raw)
        elif raw is not None and field == "skipped":
            raw = dialect.document_in(raw)
        values[field] = raw
    return Source(**values)


def _encode_entry(entry: Entry, dialect: Dialect) -> dict:
    record = {}
    for field in ENTRY_FIELDS:
        value = getattr(entry, field)
        if field == "state":
            value = EntryState(value).value
        elif field in _ENTRY_TIMES and value is not None:
            value = dialect.time_out(value)
        elif field == "transcripts":
            value = dialect.document_out([t.to_public() for t in value])
        record[field] = value
    return record


def _decode_entry(record: Mapping, dialect: Dialect) -> Entry:
    values = {}
    for field in ENTRY_FIELDS:
        raw = record.get(field)
        if field == "state":
            raw = EntryState(raw)
        elif field in _ENTRY_TIMES and raw is not None:
            raw = dialect.time_in(raw)
        elif field == "transcripts":
            listed = dialect.document_in(raw) if raw is not None else []
            raw = [t for t in map(Transcript.from_public, listed) if t is not None]
        values[field] = raw
    return Entry(**values)


def first_listed(entries: Iterable[Entry]) -> dict[str, dict[str, Entry]]:
    """The entries by source, then by URL, each (source, URL) once: the first listed wins."""
    grouped: dict[str, dict[str, Entry]] = {}
    for entry in entries:
        grouped.setdefault(entry.source_id, {}).setdefault(entry.url, entry)
    return grouped


def _position(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) of the last source of the previous page."""
    pos = cursors.decode(cursor, "t", "id")
    try:
        if not isinstance(pos["id"], str):
            raise TypeError(pos["id"])
        return _utc(datetime.fromisoformat(pos["t"])), pos["id"]
    except (TypeError, ValueError):
        raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page") from None


def _next_cursor(page: Sequence[Source], more: bool) -> str | None:
    if not more:
        return None
    last = page[-1]
    return cursors.encode({"t": _utc(last.created_at).isoformat(), "id": last.id})


# -- SQLite --------------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sources (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        feed_url TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        title TEXT,
        interval_s INTEGER NOT NULL,
        etag TEXT, last_modified TEXT,
        last_refresh_at TEXT, next_refresh_at TEXT,
        last_error TEXT, skipped TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS sources_newest ON sources (created_at, id)",
    "CREATE INDEX IF NOT EXISTS sources_due ON sources (next_refresh_at) WHERE next_refresh_at IS NOT NULL",
    # seq is the rowid: a new row's is above every stored one's, which is the first-listed order.
    """CREATE TABLE IF NOT EXISTS source_entries (
        seq INTEGER PRIMARY KEY,
        source_id TEXT NOT NULL,
        url TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        title TEXT, published_at TEXT, author TEXT, description TEXT, transcripts TEXT,
        asset_id TEXT, reason TEXT,
        UNIQUE (source_id, url)
    )""",
    "CREATE INDEX IF NOT EXISTS source_entries_order ON source_entries (source_id, seq)",
    "CREATE INDEX IF NOT EXISTS source_entries_state ON source_entries (source_id, state, seq)",
)

_SOURCE_COLUMNS = ", ".join(SOURCE_FIELDS)
_ENTRY_COLUMNS = ", ".join(ENTRY_FIELDS)
_ENTRY_MARKS = ", ".join("?" * len(ENTRY_FIELDS))


class SqliteSourceStore(SourceStore):
    """Sources in the embedded store's SQLite file, in tables of their own. One connection per
    thread (see ThreadConnections), WAL journal, and writes in a transaction taken up front after
    this process's turn on the file's writer lock, the one the asset store takes too."""

    def __init__(self, path: str):
        self.path = path
        self._init_lock = threading.Lock()
        self._initialised = False
        self._writer = writer_lock(path)
        self._connections = ThreadConnections(self._open)

    def _open(self):
        if os.path.dirname(self.path):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        conn = connect(self.path)  # the asset store's library: never two copies of SQLite on one file
        try:
            with self._init_lock:
                if not self._initialised:
                    with write_transaction(conn, self._writer):
                        for statement in _SCHEMA:
                            conn.execute(statement)
                    self._initialised = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self):
        return self._connections.get()

    def _write(self):
        return write_transaction(self._conn(), self._writer)

    def close(self) -> None:
        """Close this thread's connection and the idle ones."""
        self._connections.close()

    # -- sources -----------------------------------------------------------------------------
    def _select(self, where: str, args: tuple) -> Source | None:
        row = self._conn().execute(f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE {where}", args).fetchone()
        return _source_row(row) if row else None

    def add(self, source: Source) -> Source:
        record = _encode_source(source, SQL)
        with self._write() as conn:
            cur = conn.execute(f"INSERT INTO sources ({', '.join(record)}) VALUES ({', '.join('?' * len(record))}) "
                               "ON CONFLICT (url) DO NOTHING", tuple(record.values()))
            if cur.rowcount == 1:
                return source
            row = conn.execute(f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE url = ?", (source.url,)).fetchone()
        return _source_row(row)

    def get(self, source_id: str) -> Source | None:
        return self._select("id = ?", (source_id,))

    def get_by_url(self, url: str) -> Source | None:
        return self._select("url = ?", (url,))

    def list(self, limit: int, cursor: str | None) -> tuple[list[Source], str | None]:
        where, args = "", ()
        if cursor:
            t, last_id = _position(cursor)
            where, args = "WHERE created_at < ? OR (created_at = ? AND id < ?)", (_sql_time(t), _sql_time(t), last_id)
        rows = self._conn().execute(f"SELECT {_SOURCE_COLUMNS} FROM sources {where} "
                                    "ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1)).fetchall()
        page = [_source_row(r) for r in rows[:limit]]
        return page, _next_cursor(page, len(rows) > limit)

    def update(self, source_id: str, **fields) -> bool:
        record = _encode_source_changes(changes_of(fields), SQL)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE sources SET {', '.join(f'{k} = ?' for k in record)} WHERE id = ?",
                               (*record.values(), source_id))
        return cur.rowcount == 1

    def claim_due(self, at: datetime, limit: int) -> list[Source]:
        if limit <= 0:
            return []
        # The select and the moves are one write transaction: a scheduler in another thread or
        # process waits for it, then finds these sources no longer due.
        with self._write() as conn:
            rows = conn.execute(f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE next_refresh_at <= ? "
                                "ORDER BY next_refresh_at, id LIMIT ?", (_sql_time(at), limit)).fetchall()
            due = [_source_row(r) for r in rows]
            claimed = []
            for source in due:
                cur = conn.execute("UPDATE sources SET next_refresh_at = ? WHERE id = ? AND next_refresh_at = ?",
                                   (_sql_time(at + timedelta(seconds=source.interval_s)), source.id,
                                    _sql_time(source.next_refresh_at)))
                if cur.rowcount == 1:
                    claimed.append(source)
        return claimed

    def delete(self, source_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM source_entries WHERE source_id = ?", (source_id,))
            conn.execute("DELETE FROM sources WHERE id = ?", (source_id,))

    # -- entries -----------------------------------------------------------------------------
    def add_entries(self, entries: Sequence[Entry]) -> int:
        grouped = first_listed(entries)
        if not grouped:
            return 0
        with self._write() as conn:
            # Entries of a source deleted meanwhile are dropped: nothing would ever delete them.
            known = {r[0] for r in conn.execute("SELECT id FROM sources WHERE id IN (SELECT value FROM json_each(?))",
                                                (json.dumps(list(grouped)),))}
            rows = [tuple(_encode_entry(e, SQL).values())
                    for source_id, by_url in grouped.items() if source_id in known for e in by_url.values()]
            before = conn.total_changes
            conn.executemany(f"INSERT INTO source_entries ({_ENTRY_COLUMNS}) VALUES ({_ENTRY_MARKS}) "
                             "ON CONFLICT (source_id, url) DO NOTHING", rows)
            return conn.total_changes - before

    def entries(self, source_id: str, state: EntryState | None, limit: int) -> list[Entry]:
        if limit <= 0:
            return []
        where, args = "source_id = ?", (source_id,)
        if state is not None:
            where, args = "source_id = ? AND state = ?", (source_id, EntryState(state).value)
        rows = self._conn().execute(f"SELECT {_ENTRY_COLUMNS} FROM source_entries WHERE {where} "
                                    "ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [_decode_entry(dict(zip(ENTRY_FIELDS, r)), SQL) for r in rows]

    def finish_entry(self, source_id: str, url: str, state: EntryState, *, asset_id: str | None = None,
                     reason: str | None = None) -> None:
        with self._write() as conn:
            conn.execute("UPDATE source_entries SET state = ?, asset_id = ?, reason = ? "
                         "WHERE source_id = ? AND url = ? AND state = ?",
                         (finished(state).value, asset_id, reason, source_id, url, EntryState.PENDING.value))

    def retry_refused(self, source_id: str) -> int:
        with self._write() as conn:
            return conn.execute("UPDATE source_entries SET state = ?, reason = NULL WHERE source_id = ? AND state = ?",
                                (EntryState.PENDING.value, source_id, EntryState.REFUSED.value)).rowcount

    def entry_counts(self, source_id: str) -> dict[EntryState, int]:
        rows = self._conn().execute("SELECT state, count(*) FROM source_entries WHERE source_id = ? GROUP BY state",
                                    (source_id,))
        return {EntryState(state): count for state, count in rows}


def _source_row(row: Sequence) -> Source:
    return _decode_source(dict(zip(SOURCE_FIELDS, row)), SQL)


# -- MongoDB -------------------------------------------------------------------------------------

# How many URLs one query asks about: far below the 16 MB a command may hold, even for long URLs.
_URLS_PER_QUERY = 1_000


class MongoSourceStore(SourceStore):
    """Sources in MongoDB: `sources` (`_id` the source id, `url` unique, and `entry_seq`, the last
    `seq` given to one of its entries) and `source_entries` ((`source_id`, `url`) unique). The
    database is a pymongo Database or a function that returns one (the asset store's client,
    built on first use); the indexes are created on first use too, once per container."""

    def __init__(self, database: object | Callable[[], object]):
        # A pymongo Database answers every attribute with a collection, so tell them apart by type.
        is_function = callable(database) and not hasattr(type(database), "get_collection")
        self._database_factory = database if is_function else (lambda: database)
        self._db = None
        self._lock = threading.Lock()

    @property
    def db(self):
        if self._db is None:
            with self._lock:
                if self._db is None:
                    db = self._database_factory()
                    self._call(self._ensure_indexes, db)
                    self._db = db
        return self._db

    @staticmethod
    def _ensure_indexes(db) -> list[str]:
        """The indexes the queries rely on; creating one that exists changes nothing."""
        from pymongo import ASCENDING, DESCENDING

        return [
            db.sources.create_index([("url", ASCENDING)], unique=True, name="url_unique"),
            db.sources.create_index([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"),
            db.sources.create_index([("next_refresh_at", ASCENDING)], name="due"),
            db.source_entries.create_index([("source_id", ASCENDING), ("url", ASCENDING)], unique=True,
                                           name="source_url_unique"),
            db.source_entries.create_index([("source_id", ASCENDING), ("seq", ASCENDING)], name="first_listed"),
            db.source_entries.create_index([("source_id", ASCENDING), ("state", ASCENDING), ("seq", ASCENDING)],
                                           name="state_first_listed"),
        ]

    @staticmethod
    def _call(fn, *args, **kwargs):
        from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

        try:
            return fn(*args, **kwargs)
        except (DuplicateKeyError, BulkWriteError):
            raise  # the callers' business: both are subclasses of OperationFailure
        except (ConnectionFailure, OperationFailure) as exc:
            raise UpstreamUnavailable(f"the database is unavailable ({type(exc).__name__})") from exc

    # -- sources -----------------------------------------------------------------------------
    def add(self, source: Source) -> Source:
        from pymongo.errors import DuplicateKeyError

        try:
            self._call(self.db.sources.insert_one, _encode_source(source, BSON))
            return source
        except DuplicateKeyError:
            known = self.get_by_url(source.url)
            if known is None:  # the id was taken, not the URL
                raise
            return known

    def get(self, source_id: str) -> Source | None:
        doc = self._call(self.db.sources.find_one, {"_id": source_id})
        return _decode_source(doc, BSON) if doc else None

    def get_by_url(self, url: str) -> Source | None:
        doc = self._call(self.db.sources.find_one, {"url": url})
        return _decode_source(doc, BSON) if doc else None

    def list(self, limit: int, cursor: str | None) -> tuple[list[Source], str | None]:
        query: dict = {}
        if cursor:
            t, last_id = _position(cursor)
            query = {"$or": [{"created_at": {"$lt": t}}, {"created_at": t, "_id": {"$lt": last_id}}]}
        docs = self._call(lambda: list(self.db.sources.find(query).sort([("created_at", -1), ("_id", -1)])
                                       .limit(limit + 1)))
        page = [_decode_source(d, BSON) for d in docs[:limit]]
        return page, _next_cursor(page, len(docs) > limit)

    def update(self, source_id: str, **fields) -> bool:
        result = self._call(self.db.sources.update_one, {"_id": source_id},
                            {"$set": _encode_source_changes(changes_of(fields), BSON)})
        return result.matched_count == 1

    def claim_due(self, at: datetime, limit: int) -> list[Source]:
        if limit <= 0:  # to MongoDB a limit of 0 is no limit
            return []
        docs = self._call(lambda: list(self.db.sources.find({"next_refresh_at": {"$lte": at}})
                                       .sort([("next_refresh_at", 1), ("_id", 1)]).limit(limit)))
        claimed = []
        for doc in docs:
            source = _decode_source(doc, BSON)
            # Conditional on the time read, and on its being still due: a scheduler that moved it
            # first (always past `at`) makes this match nothing.
            result = self._call(self.db.sources.update_one,
                                {"_id": source.id, "next_refresh_at": {"$eq": doc["next_refresh_at"], "$lte": at}},
                                {"$set": {"next_refresh_at": at + timedelta(seconds=source.interval_s)}})
            if result.matched_count == 1:
                claimed.append(source)
        return claimed

    def delete(self, source_id: str) -> None:
        # The source first: entries added meanwhile find no source and are dropped (see add_entries).
        self._call(self.db.sources.delete_one, {"_id": source_id})
        self._call(self.db.source_entries.delete_many, {"source_id": source_id})

    # -- entries -----------------------------------------------------------------------------
    def add_entries(self, entries: Sequence[Entry]) -> int:
        from pymongo import ReturnDocument
        from pymongo.errors import BulkWriteError

        documents = []
        for source_id, by_url in first_listed(entries).items():
            # A read lists mostly what the previous one did: ask which URLs are known rather than
            # send every entry to fail on the unique index (each failure is reported back, document
            # and all).
            urls = list(by_url)
            for i in range(0, len(urls), _URLS_PER_QUERY):
                for doc in self._call(self.db.source_entries.find,
                                      {"source_id": source_id, "url": {"$in": urls[i:i + _URLS_PER_QUERY]}},
                                      {"url": 1, "_id": 0}):
                    by_url.pop(doc["url"], None)
            if not by_url:
                continue
            # Reserve one seq per new entry on the source itself: atomic, so two readers of one source
            # never share a seq; a source deleted meanwhile matches nothing and its entries are dropped.
            counter = self._call(self.db.sources.find_one_and_update, {"_id": source_id},
                                 {"$inc": {"entry_seq": len(by_url)}}, projection={"entry_seq": 1},
                                 return_document=ReturnDocument.AFTER)
            if counter is None:
                continue
            first = counter["entry_seq"] - len(by_url) + 1
            documents += [{**_encode_entry(e, BSON), "seq": first + i} for i, e in enumerate(by_url.values())]
        if not documents:
            return 0
        try:
            return len(self._call(self.db.source_entries.insert_many, documents, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            # A reader of the same source inserted some of these first: those are not new.
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])) \
                    or exc.details.get("writeConcernErrors"):
                raise UpstreamUnavailable(f"the database refused entries ({type(exc).__name__})") from exc
            return exc.details["nInserted"]

    def entries(self, source_id: str, state: EntryState | None, limit: int) -> list[Entry]:
        if limit <= 0:  # to MongoDB a limit of 0 is no limit
            return []
        query: dict = {"source_id": source_id}
        if state is not None:
            query["state"] = EntryState(state).value
        docs = self._call(lambda: list(self.db.source_entries.find(query).sort("seq", 1).limit(limit)))
        return [_decode_entry(d, BSON) for d in docs]

    def finish_entry(self, source_id: str, url: str, state: EntryState, *, asset_id: str | None = None,
                     reason: str | None = None) -> None:
        self._call(self.db.source_entries.update_one,
                   {"source_id": source_id, "url": url, "state": EntryState.PENDING.value},
                   {"$set": {"state": finished(state).value, "asset_id": asset_id, "reason": reason}})

    def retry_refused(self, source_id: str) -> int:
        result = self._call(self.db.source_entries.update_many,
                            {"source_id": source_id, "state": EntryState.REFUSED.value},
                            {"$set": {"state": EntryState.PENDING.value, "reason": None}})
        return result.modified_count

    def entry_counts(self, source_id: str) -> dict[EntryState, int]:
        rows = self._call(lambda: list(self.db.source_entries.aggregate(
            [{"$match": {"source_id": source_id}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}])))
        return {EntryState(r["_id"]): r["n"] for r in rows}
