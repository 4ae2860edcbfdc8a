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
from allthethings.domain.assets import Asset, Chunk, ChunkHit, Kind, Status, now, sources_of
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.ports import AssetStore

_ASSET_FIELDS = ("url", "status", "content_type", "kind", "title", "error", "staged_key", "size_bytes",
                 "chunk_count", "prediction_id", "created_at", "updated_at")


def vector_index_definition(dimensions: int) -> dict:
    """The Atlas Vector Search index over chunk embeddings."""
    return {"fields": [
        {"type": "vector", "path": "embedding", "numDimensions": dimensions, "similarity": "cosine"},
        {"type": "filter", "path": "asset_id"},
    ]}


def vector_search_pipeline(index: str, vector: Sequence[float], limit: int) -> list[dict]:
    """`$vectorSearch` as MongoDB documents it: approximate search, candidates ~ 20x the limit."""
    return [
        {"$vectorSearch": {
            "index": index,
            "path": "embedding",
            "queryVector": [float(x) for x in vector],
            "numCandidates": min(max(limit * 20, 100), 10_000),
            "limit": limit,
        }},
        {"$project": {"_id": 0, "asset_id": 1, "index": 1, "text": 1, "start_s": 1, "end_s": 1,
                      "score": {"$meta": "vectorSearchScore"}}},
    ]


def _utc(value: datetime) -> datetime:
    # BSON dates come back naive (UTC) unless the client is tz_aware.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AtlasStore(AssetStore):
    def __init__(self, client_factory: Callable[[], object], database: str, vector_index: str):
        self._client_factory = client_factory
        self._database = database
        self.vector_index = vector_index
        self._db = None

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

    def ensure_indexes(self, dimensions: int) -> None:
        """Create the B-tree indexes the code relies on and the vector index (idempotent)."""
        from pymongo import ASCENDING, DESCENDING
        from pymongo.operations import SearchIndexModel

        self.db.assets.create_index([("url", ASCENDING)], unique=True, name="url_unique")
        self.db.assets.create_index([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")
        self.db.chunks.create_index([("asset_id", ASCENDING), ("index", ASCENDING)], unique=True,
                                    name="asset_chunk_unique")
        existing = {i["name"] for i in self.db.chunks.list_search_indexes()}
        model = SearchIndexModel(definition=vector_index_definition(dimensions), name=self.vector_index,
                                 type="vectorSearch")
        if self.vector_index in existing:
            self.db.chunks.update_search_index(self.vector_index, model.document["definition"])
        else:
            self.db.chunks.create_search_indexes([model])

    @staticmethod
    def _to_doc(asset: Asset) -> dict:
        return {"_id": asset.id, "url": asset.url, "status": asset.status.value,
                "content_type": asset.content_type, "kind": asset.kind.value if asset.kind else None,
                "title": asset.title, "error": asset.error, "staged_key": asset.staged_key,
                "size_bytes": asset.size_bytes, "chunk_count": asset.chunk_count,
                "prediction_id": asset.prediction_id, "created_at": asset.created_at,
                "updated_at": asset.updated_at}

    @staticmethod
    def _from_doc(doc: dict) -> Asset:
        return Asset(id=doc["_id"], url=doc["url"], status=Status(doc["status"]),
                     created_at=_utc(doc["created_at"]), updated_at=_utc(doc["updated_at"]),
                     content_type=doc.get("content_type"), kind=Kind(doc["kind"]) if doc.get("kind") else None,
                     title=doc.get("title"), error=doc.get("error"), staged_key=doc.get("staged_key"),
                     size_bytes=doc.get("size_bytes"), chunk_count=doc.get("chunk_count"),
                     prediction_id=doc.get("prediction_id"))

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

    def get(self, asset_id: str) -> Asset | None:
        doc = self._call(self.db.assets.find_one, {"_id": asset_id})
        return self._from_doc(doc) if doc else None

    def get_by_url(self, url: str) -> Asset | None:
        doc = self._call(self.db.assets.find_one, {"url": url})
        return self._from_doc(doc) if doc else None

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
        if self._call(self.db.assets.count_documents, waiting) == 0:
            return False
        # Vectors first, status second: a crash in between leaves an asset that is not yet
        # SEARCHABLE (search drops its chunks) and whose retry rewrites the same vectors.
        ops = [UpdateOne({"_id": f"{asset_id}:{i}"}, {"$set": {"embedding": [float(x) for x in v]}})
               for i, v in enumerate(vectors)]
        if ops:
            self._call(self.db.chunks.bulk_write, ops, ordered=False)
        return self.move(asset_id, Status.SEARCHABLE)

    def search(self, vector: Sequence[float], limit: int) -> list[ChunkHit]:
        hits = list(self._call(self.db.chunks.aggregate,
                               vector_search_pipeline(self.vector_index, vector, limit)))
        ids = sorted({h["asset_id"] for h in hits})
        searchable = {d["_id"] for d in self._call(
            self.db.assets.find, {"_id": {"$in": ids}, "status": Status.SEARCHABLE.value}, {"_id": 1})}
        return [ChunkHit(asset_id=h["asset_id"], index=h["index"], text=h["text"], score=float(h["score"]),
                         start_s=h.get("start_s"), end_s=h.get("end_s"))
                for h in hits if h["asset_id"] in searchable]
