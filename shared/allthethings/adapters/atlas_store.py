"""The production store: MongoDB Atlas through pymongo, searched with `$vectorSearch`.

`assets` holds one document per asset (`_id` is the asset id, `url` unique);
`chunks` one document per chunk (`_id` is `<asset id>:<index>`) whose
`embedding` field is covered by an Atlas Vector Search index, and which carries
its asset's search metadata (records.SearchMetadata) for the filters. The client
is built once per container, on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime

from allthethings.adapters.records import BSON, decode, encode, encode_changes, linked_fields, search_metadata
from allthethings.domain import cursor as cursors
from allthethings.domain.assets import Asset, Chunk, ChunkHit, Location, Status
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.domain.listing import AssetFilter
from allthethings.domain.search import SearchFilter
from allthethings.ports import AssetStore, QueryVector, resolved

# Chunk fields a search may filter on; each is declared in both search indexes.
FILTER_PATHS = ("asset_id", "kind", "host", "created_at", "source_id", "published_at")
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
        "created_at": {"type": "date"}, "source_id": {"type": "token"}, "published_at": {"type": "date"},
    }}}


def mql_filter(search_filter: SearchFilter | None) -> dict:
    """The filter in the MQL subset `$vectorSearch` accepts ($eq, $in, $gte, $lt, $and). A chunk
    whose `published_at` is null (an asset of no source) matches no bound on it: a comparison
    with a date matches only dates."""
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
    if search_filter.source:
        clauses.append({"source_id": {"$eq": search_filter.source}})
    if search_filter.published_after:
        clauses.append({"published_at": {"$gte": search_filter.published_after}})
    if search_filter.published_before:
        clauses.append({"published_at": {"$lt": search_filter.published_before}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def listing_conditions(listing_filter: AssetFilter | None) -> list[dict]:
    """The listing filter as MQL conditions on `assets` (to be joined with `$and`); the text is a
    case-insensitive regex of the escaped text, so its characters match only themselves."""
    if listing_filter is None or listing_filter.is_empty:
        return []
    conditions: list[dict] = []
    if listing_filter.statuses:
        conditions.append({"status": {"$in": [s.value for s in listing_filter.statuses]}})
    if listing_filter.kinds:
        conditions.append({"kind": {"$in": [k.value for k in listing_filter.kinds]}})
    if listing_filter.source:
        conditions.append({"source_id": listing_filter.source})
    if listing_filter.text:
        pattern = {"$regex": re.escape(listing_filter.text), "$options": "i"}
        conditions.append({"$or": [{"url": pattern}, {"title": pattern}]})
    return conditions


def search_filter_clauses(search_filter: SearchFilter | None) -> list[dict]:
    """The filter as Atlas Search operators for a compound `filter` (they do not affect the score)."""
    if search_filter is None or search_filter.is_empty:
        return []
    clauses: list[dict] = []
    if search_filter.kinds:
        clauses.append({"in": {"path": "kind", "value": [k.value for k in search_filter.kinds]}})
    if search_filter.host:
        clauses.append({"equals": {"path": "host", "value": search_filter.host.lower()}})
    clauses += _range("created_at", search_filter.after, search_filter.before)
    if search_filter.source:
        clauses.append({"equals": {"path": "source_id", "value": search_filter.source}})
    clauses += _range("published_at", search_filter.published_after, search_filter.published_before)
    return clauses


def _range(path: str, low: datetime | None, high: datetime | None) -> list[dict]:
    """A `range` operator from `low` (included) to `high` (excluded), or none without either;
    a document whose `path` is null or missing is out of every range."""
    bounds = {**({"gte": low} if low else {}), **({"lt": high} if high else {})}
    return [{"range": {"path": path, **bounds}}] if bounds else []


_HIT_FIELDS = {"_id": 0, "asset_id": 1, "index": 1, "text": 1, "start_s": 1, "end_s": 1, "location": 1}


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
                         "combination": {"weights": {"vector": 1, "text": 1}}, "scoreDetails": True}},
        {"$limit": limit},
        # The details say which pipelines found each chunk and the vector pipeline's score: the
        # similarity floor needs both (a fused score is a rank, not a similarity).
        {"$project": {**_HIT_FIELDS, "score": {"$meta": "score"}, "details": {"$meta": "scoreDetails"}}},
    ]


def cosine_of(vector_search_score: float) -> float:
    """Atlas scores a cosine index's hit (1 + cosine) / 2, to keep it in [0, 1]; the cosine back."""
    return 2.0 * vector_search_score - 1.0


def fused_matches(details: object) -> tuple[float | None, bool]:
    """(cosine similarity, matched by keyword) from `$rankFusion`'s scoreDetails: a chunk's entry
    per input pipeline that found it, with its rank and, for a scored pipeline, its score. Read in
    both shapes MongoDB has used: a list of entries named by `inputPipelineName`, or a document
    keyed by pipeline name. A pipeline that did not find the chunk is absent or ranks it 0."""
    entries = details.get("details") if isinstance(details, dict) else None
    if isinstance(entries, dict):
        entries = [{"inputPipelineName": name, **entry} for name, entry in entries.items() if isinstance(entry, dict)]
    found = {e.get("inputPipelineName"): e for e in entries or [] if isinstance(e, dict) and (e.get("rank") or 0) > 0}
    vector = found.get("vector")
    similarity = cosine_of(float(vector["value"])) if vector and isinstance(vector.get("value"), int | float) else None
    return similarity, "text" in found


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

    def ensure_btree_indexes(self) -> list[str]:
        """Create the B-tree indexes the code relies on (the unique URL and chunk keys among them);
        running it twice changes nothing. Returns their names. Any MongoDB has these, mongomock too."""
        from pymongo import ASCENDING, DESCENDING

        return [
            self.db.assets.create_index([("url", ASCENDING)], unique=True, name="url_unique"),
            self.db.assets.create_index([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"),
            self.db.assets.create_index([("sha256", ASCENDING), ("status", ASCENDING)], name="same_bytes",
                                        partialFilterExpression={"sha256": {"$type": "string"}}),
            self.db.assets.create_index([("status", ASCENDING), ("updated_at", ASCENDING)], name="stale"),
            # A source's assets: its listing (newest first) and its counts by status.
            self.db.assets.create_index([("source_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                                        name="by_source"),
            self.db.chunks.create_index([("asset_id", ASCENDING), ("index", ASCENDING)], unique=True,
                                        name="asset_chunk_unique"),
        ]

    def ensure_indexes(self, dimensions: int, *, wait_s: float = 0, poll_s: float = 5.0) -> list[str]:
        """Create or update the B-tree indexes (`ensure_btree_indexes`) and both search indexes; with
        `wait_s`, wait until the search indexes are queryable. Running it twice changes nothing.
        Returns what it did, one line per index."""
        import time

        from pymongo.operations import SearchIndexModel

        done = self.ensure_btree_indexes()
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

    def _insert(self, asset: Asset) -> bool:
        from pymongo.errors import DuplicateKeyError

        try:
            self._call(self.db.assets.insert_one, encode(asset, BSON))
            return True
        except DuplicateKeyError:
            return False

    def _fetch(self, asset_ids: Sequence[str]) -> list[Asset]:
        docs = self._call(lambda: list(self.db.assets.find({"_id": {"$in": list(asset_ids)}})))
        return [decode(d, BSON) for d in docs]

    def find_by_digest(self, sha256: str) -> Asset | None:
        doc = self._call(lambda: next(iter(self.db.assets.find(
            {"sha256": sha256, "status": Status.SEARCHABLE.value}).sort([("created_at", 1), ("_id", 1)]).limit(1)),
            None))
        return decode(doc, BSON) if doc else None

    def _copy(self, asset: Asset, source_id: str) -> bool:
        """Chunks first, the asset second (search drops chunks whose asset is not SEARCHABLE), and
        the chunks taken back if the asset cannot be inserted: no half-written copy survives."""
        from pymongo.errors import DuplicateKeyError

        copies = self._chunk_copies(asset, source_id)
        try:
            if copies:
                self._call(self.db.chunks.insert_many, copies, ordered=False)
            inserted = self._insert(asset)
        except DuplicateKeyError:  # a chunk id taken: as good as the asset refused
            inserted = False
        except BaseException:
            self._call(self.db.chunks.delete_many, {"asset_id": asset.id})
            raise
        if not inserted:
            self._call(self.db.chunks.delete_many, {"asset_id": asset.id})
        return inserted

    def _chunk_copies(self, asset: Asset, source_id: str) -> list[dict]:
        """The source's chunk documents, vectors included, as `asset`'s, with its search metadata."""
        meta = search_metadata(asset)._asdict()
        source = self._call(lambda: list(self.db.chunks.find({"asset_id": source_id}).sort("index", 1)))
        return [{**{k: v for k, v in doc.items() if k != "_id"}, **meta, "_id": f"{asset.id}:{doc['index']}",
                 "asset_id": asset.id} for doc in source]

    def _copy_chunks(self, asset: Asset, source_id: str) -> None:
        copies = self._chunk_copies(asset, source_id)
        self._call(self.db.chunks.delete_many, {"asset_id": asset.id})
        if copies:
            self._call(self.db.chunks.insert_many, copies, ordered=False)
        self._catch_up_with_link(asset)

    def get_by_url(self, url: str) -> Asset | None:
        doc = self._call(self.db.assets.find_one, {"url": url})
        return decode(doc, BSON) if doc else None

    def stale(self, statuses, updated_before, limit):
        docs = self._call(lambda: list(self.db.assets.find(
            {"status": {"$in": [s.value for s in statuses]}, "updated_at": {"$lt": updated_before}})
            .sort([("updated_at", 1), ("_id", 1)]).limit(limit)))
        return [decode(d, BSON) for d in docs]

    def list(self, limit: int, cursor: str | None,
             listing_filter: AssetFilter | None = None) -> tuple[list[Asset], str | None]:
        conditions = listing_conditions(listing_filter)
        if cursor:
            pos = cursors.decode(cursor, "t", "id")
            try:
                t = datetime.fromisoformat(pos["t"])
            except (TypeError, ValueError):
                from allthethings.domain.errors import InvalidInput

                raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page") from None
            conditions.append({"$or": [{"created_at": {"$lt": t}}, {"created_at": t, "_id": {"$lt": pos["id"]}}]})
        query = {"$and": conditions} if conditions else {}
        docs = list(self._call(lambda: self.db.assets.find(query).sort(
            [("created_at", -1), ("_id", -1)]).limit(limit + 1)))
        page = [decode(d, BSON) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = page[-1]
            next_cursor = cursors.encode({"t": last.created_at.isoformat(), "id": last.id})
        return page, next_cursor

    def delete(self, asset_id: str) -> None:
        self._call(self.db.chunks.delete_many, {"asset_id": asset_id})
        self._call(self.db.assets.delete_one, {"_id": asset_id})

    def link_source(self, asset_id: str, source_id: str, **item) -> bool:
        from pymongo import ReturnDocument

        fields = linked_fields(item)
        title = fields.pop("title", None)
        # The asset first (the one write that decides), its chunks second: there is no transaction,
        # and a crash between the two leaves chunks a `source` filter misses (until they are written
        # again), never one it wrongly finds.
        doc = self._call(self.db.assets.find_one_and_update, {"_id": asset_id, "source_id": None},
                         {"$set": encode_changes({"source_id": source_id, **fields}, BSON)},
                         projection={"source_id": 1, "published_at": 1, "title": 1},
                         return_document=ReturnDocument.AFTER)
        if doc is None:
            return False
        if title is not None and doc.get("title") is None:
            self._call(self.db.assets.update_one, {"_id": asset_id, "title": None}, {"$set": {"title": title}})
        self._relabel_chunks(asset_id, doc)
        return True

    def _relabel_chunks(self, asset_id: str, doc: dict) -> None:
        """Give the asset's chunks the source and publication time of its document `doc`."""
        self._call(self.db.chunks.update_many, {"asset_id": asset_id},
                   {"$set": {"source_id": doc.get("source_id"), "published_at": doc.get("published_at")}})

    def _catch_up_with_link(self, asset: Asset) -> None:
        """After chunks were written with the search metadata of `asset` as it was read: a
        `link_source` that gave it a source since then may have relabelled the chunks before this
        write replaced them, so relabel them again. (A link whose asset write comes after this
        read relabels the chunks itself, after this write.) An asset's source never changes."""
        if asset.source_id is not None:
            return
        doc = self._call(self.db.assets.find_one, {"_id": asset.id}, {"source_id": 1, "published_at": 1})
        if doc is not None and doc.get("source_id") is not None:
            self._relabel_chunks(asset.id, doc)

    def source_counts(self, source_id: str) -> dict[Status, int]:
        rows = self._call(lambda: list(self.db.assets.aggregate([
            {"$match": {"source_id": source_id}}, {"$group": {"_id": "$status", "count": {"$sum": 1}}}])))
        return {Status(r["_id"]): r["count"] for r in rows}

    def _update_if(self, asset_id: str, sources: frozenset[Status], changes: dict) -> bool:
        result = self._call(
            self.db.assets.update_one,
            {"_id": asset_id, "status": {"$in": sorted(s.value for s in sources)}},
            {"$set": encode_changes(changes, BSON)})
        return result.matched_count == 1

    def put_chunks(self, asset_id: str, chunks: Sequence[Chunk]) -> None:
        from pymongo import ReplaceOne

        ops = [ReplaceOne({"_id": f"{asset_id}:{c.index}"},
                          {"asset_id": asset_id, "index": c.index, "text": c.text,
                           "start_s": c.start_s, "end_s": c.end_s,
                           "location": c.location.to_public() if c.location else None}, upsert=True)
               for c in chunks]
        if ops:
            self._call(self.db.chunks.bulk_write, ops, ordered=False)
        self._call(self.db.chunks.delete_many, {"asset_id": asset_id, "index": {"$gte": len(chunks)}})

    def chunks(self, asset_id: str, limit: int | None = None) -> list[Chunk]:
        docs = self._call(lambda: list(self.db.chunks.find({"asset_id": asset_id}).sort("index", 1)
                                       .limit(limit or 0)))  # 0: no limit
        return [Chunk(asset_id=asset_id, index=d["index"], text=d["text"], start_s=d.get("start_s"),
                      end_s=d.get("end_s"), location=Location.from_public(d.get("location"))) for d in docs]

    def _chunk_count(self, asset_id: str) -> int:
        return self._call(self.db.chunks.count_documents, {"asset_id": asset_id})

    def _attach_vectors(self, asset: Asset, vectors: Sequence[Sequence[float]]) -> None:
        from pymongo import UpdateOne

        # The asset's filterable fields ride on each chunk: both search indexes filter on them.
        meta = search_metadata(asset)._asdict()
        ops = [UpdateOne({"_id": f"{asset.id}:{i}"}, {"$set": {"embedding": [float(x) for x in v], **meta}})
               for i, v in enumerate(vectors)]
        if ops:
            self._call(self.db.chunks.bulk_write, ops, ordered=False)
        self._catch_up_with_link(asset)

    def _searchable_hits(self, rows: list[dict], found_by: str) -> list[ChunkHit]:
        """ChunkHits of the rows a `vector`, `keyword` or `fused` search answered."""
        # Vectors are written just before the status moves; drop chunks caught in between.
        ids = sorted({h["asset_id"] for h in rows})
        searchable = {d["_id"] for d in self._call(
            self.db.assets.find, {"_id": {"$in": ids}, "status": Status.SEARCHABLE.value}, {"_id": 1})}
        hits = []
        for h in rows:
            if h["asset_id"] not in searchable:
                continue
            if found_by == "vector":
                similarity, keyword = cosine_of(float(h["score"])), False
            elif found_by == "keyword":
                similarity, keyword = None, True
            else:
                similarity, keyword = fused_matches(h.get("details"))
            hits.append(ChunkHit(asset_id=h["asset_id"], index=h["index"], text=h["text"], score=float(h["score"]),
                                 start_s=h.get("start_s"), end_s=h.get("end_s"), similarity=similarity,
                                 keyword=keyword, location=Location.from_public(h.get("location"))))
        return hits

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
        return self._searchable_hits(list(self._call(self.db.chunks.aggregate, pipeline)), "vector")

    def keyword_search(self, query: str, limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        pipeline = keyword_search_pipeline(self.text_index, query, limit, search_filter)
        return self._searchable_hits(list(self._call(self.db.chunks.aggregate, pipeline)), "keyword")

    def hybrid_search(self, vector: QueryVector, query: str, limit: int,
                      search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        if not self._fusion_on_server():
            return super().hybrid_search(vector, query, limit, search_filter)
        pipeline = hybrid_search_pipeline(self.vector_index, self.text_index, resolved(vector), query, limit,
                                          search_filter, self._exact(search_filter))
        return self._searchable_hits(list(self._call(self.db.chunks.aggregate, pipeline)), "fused")

    def _fusion_on_server(self) -> bool:
        """`$rankFusion` needs MongoDB 8.1 or later; older clusters fuse on the client."""
        if self.rank_fusion != "auto":
            return self.rank_fusion == "server"
        if self._server_fusion is None:
            version = self._call(self.db.command, "buildInfo").get("versionArray", [0, 0])
            self._server_fusion = tuple(version[:2]) >= (8, 1)
        return self._server_fusion
