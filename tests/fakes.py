"""Fakes that subclass the real ports, for unit tests of services and handlers (no network, no disk)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import re
import threading
from collections.abc import Sequence

from allthethings.config import Settings
from allthethings.domain import cursor as cursors
from allthethings.domain.assets import Asset, Chunk, ChunkHit, Status, now, sources_of
from allthethings.domain.errors import ContentTooLarge, NotFound, UnreachableUrl, UpstreamUnavailable
from allthethings.ports import (
    AssetStore,
    BlobStore,
    Embedder,
    Extracted,
    Extractor,
    Fetched,
    Fetcher,
    Metrics,
    Pending,
    Predictions,
    Secrets,
    TaskQueue,
    Tokenizer,
    Transcriber,
)
from allthethings.services import Deps


class FakeStore(AssetStore):
    def __init__(self):
        self.assets: dict[str, Asset] = {}
        self.chunk_rows: dict[str, list[Chunk]] = {}
        self.vectors: dict[str, list[list[float]]] = {}
        self.order: list[str] = []
        self.lock = threading.Lock()

    def add(self, asset):
        for existing in self.assets.values():
            if existing.url == asset.url:
                return existing
        self.assets[asset.id] = asset
        self.order.append(asset.id)
        return asset

    def get(self, asset_id):
        a = self.assets.get(asset_id)
        return None if a is None else Asset(**a.__dict__)

    def get_by_url(self, url):
        return next((Asset(**a.__dict__) for a in self.assets.values() if a.url == url), None)

    def find_by_digest(self, sha256):
        return next((self.get(i) for i in self.order
                     if self.assets[i].sha256 == sha256 and self.assets[i].status is Status.SEARCHABLE), None)

    def add_copy(self, asset, source_id):
        source = self.assets.get(source_id)
        if source is None or source.status is not Status.SEARCHABLE:
            return None
        stored = self.add(asset)
        if stored is asset:
            self.chunk_rows[asset.id] = [Chunk(asset.id, c.index, c.text, c.start_s, c.end_s)
                                         for c in self.chunk_rows.get(source_id, [])]
            self.vectors[asset.id] = [list(v) for v in self.vectors.get(source_id, [])]
        return stored

    def list(self, limit, cursor):
        start = cursors.decode(cursor, "n")["n"] if cursor else 0
        newest = list(reversed(self.order))
        page = newest[start:start + limit]
        more = start + limit < len(newest)
        return [self.get(i) for i in page], cursors.encode({"n": start + limit}) if more else None

    def stale(self, statuses, updated_before, limit):
        found = [a for a in self.assets.values() if a.status in statuses and a.updated_at < updated_before]
        return [dataclasses.replace(a) for a in sorted(found, key=lambda a: a.updated_at)[:limit]]

    def delete(self, asset_id):
        self.assets.pop(asset_id, None)
        self.chunk_rows.pop(asset_id, None)
        self.vectors.pop(asset_id, None)
        if asset_id in self.order:
            self.order.remove(asset_id)

    def move(self, asset_id, target, **fields):
        with self.lock:  # the port promises an atomic conditional update
            asset = self.assets.get(asset_id)
            if asset is None or asset.status not in sources_of(target):
                return False
            asset.status = target
            asset.updated_at = now()
            for k, v in fields.items():
                setattr(asset, k, v)
            return True

    def put_chunks(self, asset_id, chunks):
        self.chunk_rows[asset_id] = list(chunks)
        self.vectors.pop(asset_id, None)

    def chunks(self, asset_id):
        return list(self.chunk_rows.get(asset_id, []))

    def make_searchable(self, asset_id, vectors):
        if len(vectors) != len(self.chunk_rows.get(asset_id, [])):
            raise ValueError("count mismatch")
        if not self.move(asset_id, Status.SEARCHABLE):
            return False
        self.vectors[asset_id] = [list(v) for v in vectors]
        return True

    def _admitted(self, asset_id, search_filter):
        asset = self.assets[asset_id]
        if asset.status is not Status.SEARCHABLE:
            return False
        f = search_filter
        return f is None or ((not f.kinds or asset.kind in f.kinds) and (not f.host or asset.host == f.host)
                             and (not f.after or asset.created_at >= f.after)
                             and (not f.before or asset.created_at < f.before))

    def search(self, vector, limit, search_filter=None):
        hits = []
        for asset_id, vecs in self.vectors.items():
            if not self._admitted(asset_id, search_filter):
                continue
            for chunk, v in zip(self.chunk_rows[asset_id], vecs):
                score = sum(a * b for a, b in zip(vector, v))
                hits.append(ChunkHit(asset_id, chunk.index, chunk.text, score, chunk.start_s, chunk.end_s))
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]

    def keyword_search(self, query, limit, search_filter=None):
        from allthethings.domain.search import query_terms

        terms = query_terms(query)
        hits = []
        for asset_id in self.vectors:
            if not self._admitted(asset_id, search_filter):
                continue
            for chunk in self.chunk_rows[asset_id]:
                words = re.findall(r"\w+", chunk.text.lower())
                score = sum(words.count(t) for t in terms)
                if score:
                    hits.append(ChunkHit(asset_id, chunk.index, chunk.text, float(score), chunk.start_s, chunk.end_s))
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]


class FakeBlobs(BlobStore):
    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put(self, key, body, content_type):
        self.objects[key] = body.read()

    def get(self, key):
        if key not in self.objects:
            raise NotFound("the object does not exist")
        return self.objects[key]

    def delete(self, key):
        self.objects.pop(key, None)

    def presigned_url(self, key, expires_s):
        return f"https://staging.test/{key}?expires={expires_s}"


class FakeQueue(TaskQueue):
    def __init__(self, fail: bool = False):
        self.messages: list[dict] = []
        self.fail = fail

    def send(self, message):
        if self.fail:
            raise UpstreamUnavailable("queue down")
        self.messages.append(message)


class FakeFetcher(Fetcher):
    """Serves a dict of url -> (content type, bytes); anything else is unreachable."""

    def __init__(self, pages: dict[str, tuple[str | None, bytes]] | None = None):
        self.pages = pages or {}
        self.calls: list[str] = []

    def fetch(self, url, limits):
        self.calls.append(url)
        if url not in self.pages:
            raise UnreachableUrl("the URL answered HTTP 404")
        declared, body = self.pages[url]
        if len(body) > limits.for_body(body[:1445], declared, url):
            raise ContentTooLarge("the body is larger than the limit")
        return Fetched(url=url, final_url=url, declared_type=declared, body=io.BytesIO(body), size=len(body),
                       head=body[:1445], sha256=hashlib.sha256(body).hexdigest())


class FakeExtractor(Extractor):
    """Treats every body as UTF-8 text; a body of b"FAIL" has no text."""

    def extract(self, body, content_type, url):
        from allthethings.domain.errors import ExtractionFailed

        if body == b"FAIL":
            raise ExtractionFailed("no text")
        return Extracted(title="t", text=body.decode())


class WordTokenizer(Tokenizer):
    def spans(self, text):
        return [m.span() for m in re.finditer(r"\S+", text)]


def word_vector(text: str, dims: int = 16) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words point the same way."""
    v = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        v[int(hashlib.md5(word.encode()).hexdigest(), 16) % dims] += 1.0  # noqa: S324
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


class FakeEmbedder(Embedder):
    model = "fake"
    dimensions = 16
    max_tokens = 64

    def __init__(self, pending: bool = False, fail_times: int = 0):
        self.pending = pending
        self.fail_times = fail_times
        self.calls: list[list[str]] = []
        self.submitted: list[tuple[list[str], str]] = []

    def embed(self, texts: Sequence[str]):
        self.calls.append(list(texts))
        if self.fail_times:
            self.fail_times -= 1
            raise UpstreamUnavailable("model down")
        return [word_vector(t, self.dimensions) for t in texts]

    def submit(self, texts, webhook_url):
        if self.pending:
            self.submitted.append((list(texts), webhook_url))
            return Pending(prediction_id=f"p{len(self.submitted)}")
        return self.embed(texts)

    def vectors_from_output(self, output):
        if not isinstance(output, list):
            raise ValueError("bad output")
        return [o["embedding"] for o in output]


class FakeTranscriber(Transcriber):
    """Records requests; the test delivers the result as a webhook would."""

    def __init__(self):
        self.submitted: list[tuple[str, str]] = []

    def submit(self, audio_url, webhook_url):
        self.submitted.append((audio_url, webhook_url))
        return Pending(prediction_id=f"t{len(self.submitted)}")

    def segments_from_output(self, output):
        from allthethings.adapters.replicate import segments_from_output

        return segments_from_output(output)


class FakePredictions(Predictions):
    """Predictions by id, as a test sets them; an unknown id is NotFound, `down` an outage."""

    def __init__(self, predictions: dict[str, dict] | None = None):
        self.predictions = dict(predictions or {})
        self.down = False
        self.asked: list[str] = []

    def get(self, prediction_id):
        self.asked.append(prediction_id)
        if self.down:
            raise UpstreamUnavailable("the model API is down")
        if prediction_id not in self.predictions:
            raise NotFound(f"no prediction {prediction_id}")
        return dict(self.predictions[prediction_id])


class FakeMetrics(Metrics):
    """Keeps what was recorded: counts summed by name, latencies listed by name."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.latencies: dict[str, list[float]] = {}
        self.flushes = 0

    def count(self, name, value=1):
        self.counts[name] = self.counts.get(name, 0) + value

    def latency(self, name, seconds):
        self.latencies.setdefault(name, []).append(seconds)

    def flush(self):
        self.flushes += 1


class FakeSecrets(Secrets):
    """Secrets given directly, or held in `stored` by parameter name (as SSM would hold them)."""

    def __init__(self, stored: dict[str, str] | None = None):
        self.stored = dict(stored or {})
        self.read: list[str] = []

    def get(self, value, param, what):
        if value:
            return value
        if param and param in self.stored:
            self.read.append(param)
            return self.stored[param]
        raise ValueError(f"{what} is not configured: set {what} or {what}_PARAM")


def fake_deps(**overrides) -> Deps:
    from allthethings.adapters.signatures import ReplicateVerifier

    settings = overrides.pop("settings", Settings(chunk_tokens=20, chunk_overlap=4))
    parts = dict(settings=settings, store=FakeStore(), blobs=FakeBlobs(), queue=FakeQueue(), fetcher=FakeFetcher(),
                 extractor=FakeExtractor(), tokenizer=WordTokenizer(), embedder=FakeEmbedder(),
                 transcriber=FakeTranscriber(), webhooks=FakeQueue(), predictions=FakePredictions(),
                 metrics=FakeMetrics(), secrets=FakeSecrets(),
                 verifier=ReplicateVerifier(settings.replicate_webhook_secret))
    parts.update(overrides)
    return Deps(**parts)
