"""The production store: MongoDB Atlas through pymongo, searched with `$vectorSearch`.

`assets` holds one document per asset (`_id` is the asset id, `url` unique);
`chunks` one document per chunk (`_id` is `<asset id>:<index>`) whose
`embedding` field is covered by an Atlas Vector Search index. The client is
built once per container, on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from allthethings.domain import cursor as cursors
from allthethings.domain.assets import Asset, Chunk, ChunkHit, Kind, Status, host_of, now, sources_of
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.domain.search import SearchFilter
from allthethings.ports import AssetStore

_ASSET_FIELDS = ("url", "status", "content_type", "kind", "title", "error", "staged_key", "size_bytes",
                 "chunk_count", "prediction_id", "created_at", "updated_at", "sha256", "metadata")


# Chunk fields a search may filter on; each is declared in both search indexes.
FILTER_PATHS = ("asset_id", "kind", "host", "created_at")
# A filtered vector search over at most this many chunks is exact rather than approximate.
EXACT_SEARCH_MAX = 10_000


def vector_index_definition(dimensions: int) -> dict:
    """The Atlas Vector Search index over chunk embeddings, with every filter path declared."""
    return {"fields": [
        {"type": "vector", "path": "embedding", "numDimensions": dimensions, "similarity": "cosine"},
        *({"type": "filter", "path": path} for path in FILTER_PATHS),
    ]}


def search_index_definition() -> dict:
    """The Atlas Search (full-text, BM25) index over chunk text, with the same filter paths."""
    return {"mappings": {"dynamic": False, "fields": {
        "text": {"type": "string", "analyzer": "lucene.english"},
        "asset_id": {"type": "token"}, "kind": {"type": "token"}, "host": {"type": "token"},
        "created_at": {"type": "date"},
    }}}


def mql_filter(search_filter: SearchFilter | None) -> dict:
    """The filter in the MQL subset `$vectorSearch` accepts ($eq, $in, $gte, $lt, $and)."""
    if search_filter is None or search_filter.is_empty:
        return {}
    clauses: list[dict] = []
    if search_filter.kinds:
        clauses.append({"kind": {"$in": [k.value for k in search_filter.kinds]}})
    if search_filter.host:
        clauses.append({"host": {"$eq": search_filter.host.lower()}})
    if search_filter.after:
        clauses.append({"created_at": {"$gte": search_filter.after}})
    if search_filter.before:
        clauses.append({"created_at": {"$lt": search_filter.before}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def search_filter_clauses(search_filter: SearchFilter | None) -> list[dict]:
    """The filter as Atlas Search operators for a compound `filter` (they do not affect the score)."""
    if search_filter is None or search_filter.is_empty:
        return []
    clauses: list[dict] = []
    if search_filter.kinds:
        clauses.append({"in": {"path": "kind", "value": [k.value for k in search_filter.kinds]}})
    if search_filter.host:
        clauses.append({"equals": {"path": "host", "value": search_filter.host.lower()}})
    if search_filter.after or search_filter.before:
        bounds = {}
        if search_filter.after:
            bounds["gte"] = search_filter.after
        if search_filter.before:
            bounds["lt"] = search_filter.before
        clauses.append({"range": {"path": "created_at", **bounds}})
    return clauses


_HIT_FIELDS = {"_id": 0, "asset_id": 1, "index": 1, "text": 1, "start_s": 1, "end_s": 1}


def vector_search_pipeline(index: str, vector: Sequence[float], limit: int,
                           search_filter: SearchFilter | None = None, exact: bool = False) -> list[dict]:
    """`$vectorSearch` as MongoDB documents it: approximate with ~20x candidates, or exact (ENN)
    when a selective filter leaves few chunks; the filter is applied inside the search."""
    stage: dict = {"index": index, "path": "embedding", "queryVector": [float(x) for x in vector], "limit": limit}
    if exact:
        stage["exact"] = True
    else:
        stage["numCandidates"] = min(max(limit * 20, 100), 10_000)
    where = mql_filter(search_filter)
    if where:
        stage["filter"] = where
    return [{"$vectorSearch": stage}, {"$project": {**_HIT_FIELDS, "score": {"$meta": "vectorSearchScore"}}}]


def keyword_search_pipeline(index: str, query: str, limit: int,
                            search_filter: SearchFilter | None = None) -> list[dict]:
    """Atlas Search `$search`: a `text` query over chunk text, BM25-scored, filters in `compound.filter`."""
    compound: dict = {"must": [{"text": {"query": query, "path": "text"}}]}
    clauses = search_filter_clauses(search_filter)
    if clauses:
        compound["filter"] = clauses
    return [{"$search": {"index": index, "compound": compound}}, {"$limit": limit},
            {"$project": {**_HIT_FIELDS, "score": {"$meta": "searchScore"}}}]


def hybrid_search_pipeline(vector_index: str, text_index: str, vector: Sequence[float], query: str, limit: int,
                           search_filter: SearchFilter | None = None, exact: bool = False) -> list[dict]:
    """`$rankFusion` (MongoDB 8.1+) over the vector and keyword pipelines: reciprocal rank fusion
    on the server. Clusters without it use the client-side fusion of the two lists instead."""
    vector_stage = vector_search_pipeline(vector_index, vector, limit, search_filter, exact)[:1]
    text_stages = keyword_search_pipeline(text_index, query, limit, search_filter)[:2]
    return [
        {"$rankFusion": {"input": {"pipelines": {"vector": vector_stage, "text": text_stages}},
                         "combination": {"weights": {"vector": 1, "text": 1}}}},
        {"$limit": limit},
        {"$project": {**_HIT_FIELDS, "score": {"$meta": "score"}}},
    ]


def _utc(value: datetime) -> datetime:
    # BSON dates come back naive (UTC) unless the client is tz_aware.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AtlasStore(AssetStore):
    def __init__(self, client_factory: Callable[[], object], database: str, vector_index: str,
                 text_index: str = "chunk_text", rank_fusion: str = "auto"):
        self._client_factory = client_factory
        self._database = database
        self.vector_index = vector_index
        self.text_index = text_index
        self.rank_fusion = rank_fusion  # auto (by server version) | server | client
        self._db = None
        self._server_fusion: bool | None = None

    @property
    def db(self):
        if self._db is None:
            self._db = self._client_factory()[self._database]
        return self._db

    def _call(self, fn, *args, **kwargs):
        from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure

        try:
            return fn(*args, **kwargs)
        except DuplicateKeyError:
            raise
        except (ConnectionFailure, OperationFailure) as exc:
            raise UpstreamUnavailable(f"the database is unavailable ({type(exc).__name__})") from exc

    def ensure_indexes(self, dimensions: int, *, wait_s: float = 0, poll_s: float = 5.0) -> list[str]:
        """Create or update the B-tree indexes the code relies on and both search indexes; with
        `wait_s`, wait until the search indexes are queryable. Running it twice changes nothing.
        Returns what it did, one line per index."""
        import time

        from pymongo import ASCENDING, DESCENDING
        from pymongo.operations import SearchIndexModel

        done = [
            self.db.assets.create_index([("url", ASCENDING)], unique=True, name="url_unique"),
            self.db.assets.create_index([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"),
            self.db.assets.create_index([("sha256", ASCENDING), ("status", ASCENDING)], name="same_bytes",
                                        partialFilterExpression={"sha256": {"$type": "string"}}),
            self.db.assets.create_index([("status", ASCENDING), ("updated_at", ASCENDING)], name="stale"),
            self.db.chunks.create_index([("asset_id", ASCENDING), ("index", ASCENDING)], unique=True,
                                        name="asset_chunk_unique"),
        ]
        existing = {i["name"]: i for i in self.db.chunks.list_search_indexes()}
        for name, kind, definition in ((self.vector_index, "vectorSearch", vector_index_definition(dimensions)),
                                       (self.text_index, "search", search_index_definition())):
            if name not in existing:
                self.db.chunks.create_search_indexes([SearchIndexModel(definition=definition, name=name, type=kind)])
                done.append(f"{name} created")
            elif existing[name].get("latestDefinition") != definition:
                self.db.chunks.update_search_index(name, definition)
                done.append(f"{name} updated")
            else:
                done.append(f"{name} unchanged")
        deadline = time.monotonic() + wait_s
        while wait_s and time.monotonic() < deadline:
            states = {i["name"]: i.get("queryable") for i in self.db.chunks.list_search_indexes()}
            if all(states.get(n) for n in (self.vector_index, self.text_index)):
                break
            time.sleep(poll_s)
        else:
            if wait_s:
                raise UpstreamUnavailable(f"the search indexes were not queryable within {wait_s:.0f} s")
        return done

    @staticmethod
    def _to_doc(asset: Asset) -> dict:
        return {"_id": asset.id, "url": asset.url, "status": asset.status.value,
                "content_type": asset.content_type, "kind": asset.kind.value if asset.kind else None,
                "title": asset.title, "error": asset.error, "staged_key": asset.staged_key,
                "size_bytes": asset.size_bytes, "chunk_count": asset.chunk_count,
                "prediction_id": asset.prediction_id, "created_at": asset.created_at,
                "updated_at": asset.updated_at, "sha256": asset.sha256, "metadata": asset.metadata}

    @staticmethod
    def _from_doc(doc: dict) -> Asset:
        return Asset(id=doc["_id"], url=doc["url"], status=Status(doc["status"]),
                     created_at=_utc(doc["created_at"]), updated_at=_utc(doc["updated_at"]),
                     content_type=doc.get("content_type"), kind=Kind(doc["kind"]) if doc.get("kind") else None,
                     title=doc.get("title"), error=doc.get("error"), staged_key=doc.get("staged_key"),
                     size_bytes=doc.get("size_bytes"), chunk_count=doc.get("chunk_count"),
                     prediction_id=doc.get("prediction_id"), sha256=doc.get("sha256"), metadata=doc.get("metadata"))

    def add(self, asset: Asset) -> Asset:
        from pymongo.errors import DuplicateKeyError

        try:
            self._call(self.db.assets.insert_one, self._to_doc(asset))
            return asset
        except DuplicateKeyError:
            existing = self.get_by_url(asset.url)
            if existing is None:
                raise
            return existing

    def find_by_digest(self, sha256: str) -> Asset | None:
        doc = self._call(lambda: next(iter(self.db.assets.find(
            {"sha256": sha256, "status": Status.SEARCHABLE.value}).sort([("created_at", 1), ("_id", 1)]).limit(1)),
            None))
        return self._from_doc(doc) if doc else None

    def add_copy(self, asset: Asset, source_id: str) -> Asset | None:
        """Chunks first, the asset second (search drops chunks whose asset is not SEARCHABLE), and
        the chunks taken back if the asset cannot be inserted: no half-written copy survives."""
        from pymongo.errors import DuplicateKeyError

        if self._call(self.db.assets.find_one, {"_id": source_id, "status": Status.SEARCHABLE.value}) is None:
            return None
        meta = {"kind": asset.kind.value if asset.kind else None, "host": host_of(asset.url),
                "created_at": asset.created_at}
        source = self._call(lambda: list(self.db.chunks.find({"asset_id": source_id}).sort("index", 1)))
        copies = [{**{k: v for k, v in doc.items() if k != "_id"}, **meta, "_id": f"{asset.id}:{doc['index']}",
                   "asset_id": asset.id} for doc in source]
        try:
            if copies:
                self._call(self.db.chunks.insert_many, copies, ordered=False)
            self._call(self.db.assets.insert_one, self._to_doc(asset))
            return asset
        except DuplicateKeyError:
            self._call(self.db.chunks.delete_many, {"asset_id": asset.id})
            return self.get_by_url(asset.url)
        except BaseException:
            self._call(self.db.chunks.delete_many, {"asset_id": asset.id})
            raise

    def get(self, asset_id: str) -> Asset | None:
        doc = self._call(self.db.assets.find_one, {"_id": asset_id})
        return self._from_doc(doc) if doc else None

    def get_by_url(self, url: str) -> Asset | None:
        doc = self._call(self.db.assets.find_one, {"url": url})
        return self._from_doc(doc) if doc else None

    def stale(self, statuses, updated_before, limit):
        docs = self._call(lambda: list(self.db.assets.find(
            {"status": {"$in": [s.value for s in statuses]}, "updated_at": {"$lt": updated_before}})
            .sort([("updated_at", 1), ("_id", 1)]).limit(limit)))
        return [self._from_doc(d) for d in docs]

    def list(self, limit: int, cursor: str | None) -> tuple[list[Asset], str | None]:
        query: dict = {}
        if cursor:
            pos = cursors.decode(cursor, "t", "id")
            try:
                t = datetime.fromisoformat(pos["t"])
            except (TypeError, ValueError):
                from allthethings.domain.errors import InvalidInput

                raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page") from None
            query = {"$or": [{"created_at": {"$lt": t}}, {"created_at": t, "_id": {"$lt": pos["id"]}}]}
        docs = list(self._call(lambda: self.db.assets.find(query).sort(
            [("created_at", -1), ("_id", -1)]).limit(limit + 1)))
        page = [self._from_doc(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = page[-1]
            next_cursor = cursors.encode({"t": last.created_at.isoformat(), "id": last.id})
        return page, next_cursor

    def delete(self, asset_id: str) -> None:
        self._call(self.db.chunks.delete_many, {"asset_id": asset_id})
        self._call(self.db.assets.delete_one, {"_id": asset_id})

    def move(self, asset_id: str, target: Status, **fields) -> bool:
        fields = {k: (v.value if isinstance(v, (Status, Kind)) else v) for k, v in fields.items()}
        unknown = set(fields) - set(_ASSET_FIELDS)
        if unknown:
            raise ValueError(f"unknown asset fields {sorted(unknown)}")
        result = self._call(
            self.db.assets.update_one,
            {"_id": asset_id, "status": {"$in": sorted(s.value for s in sources_of(target))}},
            {"$set": {**fields, "status": target.value, "updated_at": now()}})
        return result.matched_count == 1

    def put_chunks(self, asset_id: str, chunks: Sequence[Chunk]) -> None:
        from pymongo import ReplaceOne

        ops = [ReplaceOne({"_id": f"{asset_id}:{c.index}"},
                          {"asset_id": asset_id, "index": c.index, "text": c.text,
                           "start_s": c.start_s, "end_s": c.end_s}, upsert=True) for c in chunks]
        if ops:
            self._call(self.db.chunks.bulk_write, ops, ordered=False)
        self._call(self.db.chunks.delete_many, {"asset_id": asset_id, "index": {"$gte": len(chunks)}})

    def chunks(self, asset_id: str) -> list[Chunk]:
        docs = self._call(lambda: list(self.db.chunks.find({"asset_id": asset_id}).sort("index", 1)))
        return [Chunk(asset_id=asset_id, index=d["index"], text=d["text"], start_s=d.get("start_s"),
                      end_s=d.get("end_s")) for d in docs]

    def make_searchable(self, asset_id: str, vectors: Sequence[Sequence[float]]) -> bool:
        from pymongo import UpdateOne

        count = self._call(self.db.chunks.count_documents, {"asset_id": asset_id})
        if count != len(vectors):
            raise ValueError(f"asset {asset_id} has {count} chunks but {len(vectors)} vectors came")
        waiting = {"_id": asset_id, "status": {"$in": sorted(s.value for s in sources_of(Status.SEARCHABLE))}}
        asset = self._call(self.db.assets.find_one, waiting, {"kind": 1, "url": 1, "created_at": 1})
        if asset is None:
            return False
        # The asset's filterable fields ride on each chunk: both search indexes filter on them.
        meta = {"kind": asset.get("kind"), "host": host_of(asset["url"]),
                "created_at": asset["created_at"]}
        # Vectors first, status second: a crash in between leaves an asset that is not yet
        # SEARCHABLE (search drops its chunks) and whose retry rewrites the same vectors.
        ops = [UpdateOne({"_id": f"{asset_id}:{i}"}, {"$set": {"embedding": [float(x) for x in v], **meta}})
               for i, v in enumerate(vectors)]
        if ops:
            self._call(self.db.chunks.bulk_write, ops, ordered=False)
        return self.move(asset_id, Status.SEARCHABLE)

    def _searchable_hits(self, rows: list[dict]) -> list[ChunkHit]:
        # Vectors are written just before the status moves; drop chunks caught in between.
        ids = sorted({h["asset_id"] for h in rows})
        searchable = {d["_id"] for d in self._call(
            self.db.assets.find, {"_id": {"$in": ids}, "status": Status.SEARCHABLE.value}, {"_id": 1})}
        return [ChunkHit(asset_id=h["asset_id"], index=h["index"], text=h["text"], score=float(h["score"]),
                         start_s=h.get("start_s"), end_s=h.get("end_s"))
                for h in rows if h["asset_id"] in searchable]

    def _exact(self, search_filter: SearchFilter | None) -> bool:
        """Exact search when a filter leaves few enough chunks that scanning them all is cheap."""
        where = mql_filter(search_filter)
        if not where:
            return False
        count = self._call(self.db.chunks.count_documents, {**where, "embedding": {"$exists": True}},
                           limit=EXACT_SEARCH_MAX + 1)
        return count <= EXACT_SEARCH_MAX

    def search(self, vector: Sequence[float], limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        pipeline = vector_search_pipeline(self.vector_index, vector, limit, search_filter, self._exact(search_filter))
        return self._searchable_hits(list(self._call(self.db.chunks.aggregate, pipeline)))

    def keyword_search(self, query: str, limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        pipeline = keyword_search_pipeline(self.text_index, query, limit, search_filter)
        return self._searchable_hits(list(self._call(self.db.chunks.aggregate, pipeline)))

    def hybrid_search(self, vector: Sequence[float], query: str, limit: int,
                      search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        if not self._fusion_on_server():
            return super().hybrid_search(vector, query, limit, search_filter)
        pipeline = hybrid_search_pipeline(self.vector_index, self.text_index, vector, query, limit, search_filter,
                                          self._exact(search_filter))
        return self._searchable_hits(list(self._call(self.db.chunks.aggregate, pipeline)))

    def _fusion_on_server(self) -> bool:
        """`$rankFusion` needs MongoDB 8.1 or later; older clusters fuse on the client."""
        if self.rank_fusion != "auto":
            return self.rank_fusion == "server"
        if self._server_fusion is None:
            version = self._call(self.db.command, "buildInfo").get("versionArray", [0, 0])
            self._server_fusion = tuple(version[:2]) >= (8, 1)
        return self._server_fusion
