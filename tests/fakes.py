"""Fakes that subclass the real ports, for unit tests of services and handlers (no network, no disk)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
import threading
from collections.abc import Sequence

from allthethings.adapters.records import SearchMetadata, linked_fields, search_metadata
from allthethings.config import Settings
from allthethings.domain import cursor as cursors
from allthethings.domain.assets import Asset, Chunk, ChunkHit, Status
from allthethings.domain.errors import (
    ContentTooLarge,
    Interrupted,
    InvalidInput,
    NotFound,
    UnreachableUrl,
    UpstreamUnavailable,
)
from allthethings.domain.search import query_terms
from allthethings.ports import (
    AssetStore,
    BlobStore,
    Download,
    Embedder,
    Extracted,
    Extractor,
    Fetcher,
    ImageReader,
    Metrics,
    OcrNotice,
    PageOcr,
    Pending,
    Predictions,
    Secrets,
    TaskQueue,
    Tokenizer,
    Transcriber,
    Validator,
)
from allthethings.services import Deps


class FakeStore(AssetStore):
    """The AssetStore in memory: only the primitives and reads, the rules come from the port.

    It runs under the same contract suite as the real stores (tests/integration/test_store_contract.py).
    Vector search is cosine similarity over the stored vectors; keyword search ranks the chunks that
    hold any of the query's words by how often they hold them (no stemming, unlike BM25 engines).
    Tests may read and change `assets`, `chunk_rows` and `vectors` directly.
    """

    def __init__(self):
        self.assets: dict[str, Asset] = {}
        self.chunk_rows: dict[str, list[Chunk]] = {}
        self.vectors: dict[str, list[list[float]]] = {}
        self.search_meta: dict[str, SearchMetadata] = {}  # what rides on an asset's vectors, as in the real stores
        self.seq: dict[str, int] = {}  # insertion order, which `list` pages through newest first
        self.lock = threading.RLock()  # the real stores' transactions and conditional updates

    @staticmethod
    def _copy_of(asset):
        return None if asset is None else copy.deepcopy(asset)

    def _transaction(self):
        return self.lock

    def _insert(self, asset):
        with self.lock:
            if any(a.url == asset.url for a in self.assets.values()):
                return False
            self.assets[asset.id] = copy.deepcopy(asset)
            self.seq[asset.id] = max(self.seq.values(), default=0) + 1
            return True

    def _fetch(self, asset_ids):
        return [self._copy_of(self.assets[i]) for i in asset_ids if i in self.assets]

    def get_by_url(self, url):
        return self._copy_of(next((a for a in self.assets.values() if a.url == url), None))

    def find_by_digest(self, sha256):
        found = [a for a in self.assets.values() if a.sha256 == sha256 and a.status is Status.SEARCHABLE]
        return self._copy_of(min(found, key=lambda a: self.seq[a.id], default=None))

    def _copy(self, asset, source_id):
        if not self._insert(asset):
            return False
        self._copy_chunks(asset, source_id)
        return True

    def _copy_chunks(self, asset, source_id):
        self.chunk_rows[asset.id] = [dataclasses.replace(c, asset_id=asset.id) for c in self.chunks(source_id)]
        self.vectors[asset.id] = [list(v) for v in self.vectors.get(source_id, [])]
        self.search_meta[asset.id] = search_metadata(asset)

    def list(self, limit, cursor, listing_filter=None):
        before = cursors.decode(cursor, "seq")["seq"] if cursor else None
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page")
        newest = sorted((i for i, a in self.assets.items() if (before is None or self.seq[i] < before)
                         and (listing_filter is None or listing_filter.admits(a))),
                        key=lambda i: -self.seq[i])
        page = newest[:limit]
        next_cursor = cursors.encode({"seq": self.seq[page[-1]]}) if len(newest) > limit else None
        return [self._copy_of(self.assets[i]) for i in page], next_cursor

    def stale(self, statuses, updated_before, limit):
        found = [a for a in self.assets.values() if a.status in statuses and a.updated_at < updated_before]
        return [self._copy_of(a) for a in sorted(found, key=lambda a: (a.updated_at, a.id))[:limit]]

    def delete(self, asset_id):
        with self.lock:
            for held in (self.assets, self.chunk_rows, self.vectors, self.search_meta, self.seq):
                held.pop(asset_id, None)

    def link_source(self, asset_id, source_id, **item):
        fields = linked_fields(item)
        with self.lock:
            asset = self.assets.get(asset_id)
            if asset is None or asset.source_id is not None:
                return False
            asset.source_id = source_id
            for k, v in fields.items():
                if k != "title" or asset.title is None:
                    setattr(asset, k, v)
            if asset_id in self.search_meta:
                self.search_meta[asset_id] = search_metadata(asset)
            return True

    def source_counts(self, source_id):
        counts = {}
        for asset in self.assets.values():
            if asset.source_id == source_id:
                counts[asset.status] = counts.get(asset.status, 0) + 1
        return counts

    def _update_if(self, asset_id, sources, changes):
        with self.lock:
            asset = self.assets.get(asset_id)
            if asset is None or asset.status not in sources:
                return False
            for k, v in changes.items():
                setattr(asset, k, v)
            return True

    def put_chunks(self, asset_id, chunks):
        with self.lock:
            self.chunk_rows[asset_id] = sorted(chunks, key=lambda c: c.index)
            self.vectors.pop(asset_id, None)
            self.search_meta.pop(asset_id, None)

    def chunks(self, asset_id, limit=None):
        return list(self.chunk_rows.get(asset_id, []))[:limit]

    def _chunk_count(self, asset_id):
        return len(self.chunk_rows.get(asset_id, []))

    def _attach_vectors(self, asset, vectors):
        self.vectors[asset.id] = [list(v) for v in vectors]
        self.search_meta[asset.id] = search_metadata(asset)

    def _searchable(self, search_filter):
        """The chunks and vectors a search ranks: of SEARCHABLE assets whose search metadata the
        filter admits (so the filter applies before ranking, as in the real stores)."""
        f = search_filter
        for asset_id, vecs in list(self.vectors.items()):
            asset, meta = self.assets.get(asset_id), self.search_meta.get(asset_id)
            if asset is None or asset.status is not Status.SEARCHABLE or meta is None:
                continue
            if f is not None and not ((not f.kinds or meta.kind in {k.value for k in f.kinds})
                                      and (not f.host or meta.host == f.host.lower())
                                      and (not f.after or meta.created_at >= f.after)
                                      and (not f.before or meta.created_at < f.before)
                                      and (not f.source or meta.source_id == f.source)
                                      and (not f.published_after or (meta.published_at is not None
                                                                     and meta.published_at >= f.published_after))
                                      and (not f.published_before or (meta.published_at is not None
                                                                      and meta.published_at < f.published_before))):
                continue
            yield from zip(self.chunk_rows.get(asset_id, []), vecs)

    def search(self, vector, limit, search_filter=None):
        hits = [ChunkHit(c.asset_id, c.index, c.text, _cosine(vector, v), c.start_s, c.end_s,
                         similarity=_cosine(vector, v), location=c.location)
                for c, v in self._searchable(search_filter)]
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]

    def keyword_search(self, query, limit, search_filter=None):
        terms = query_terms(query)
        hits = []
        for c, _ in self._searchable(search_filter):
            words = re.findall(r"\w+", c.text.lower())
            score = sum(words.count(t) for t in terms)
            if score:
                hits.append(ChunkHit(c.asset_id, c.index, c.text, float(score), c.start_s, c.end_s, keyword=True,
                                     location=c.location))
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]


def _cosine(a, b) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norms if norms else 0.0


class FakeBlobs(BlobStore):
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}  # unfinished multipart uploads: their parts by number

    def put(self, key, body, content_type):
        self.objects[key] = body.read()

    def get(self, key):
        if key not in self.objects:
            raise NotFound("the object does not exist")
        return self.objects[key]

    def delete(self, key):
        self.objects.pop(key, None)

    def exists(self, key):
        return key in self.objects

    def presigned_url(self, key, expires_s):
        return f"https://staging.test/{key}?expires={expires_s}"

    def start_upload(self, key, content_type):
        upload_id = f"upload-{len(self.uploads) + 1}"
        self.uploads[upload_id] = {}
        return upload_id

    def put_part(self, key, upload_id, number, data):
        if upload_id not in self.uploads:
            raise NotFound("no such upload")
        self.uploads[upload_id][number] = bytes(data)
        return f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324 - S3's part ETag

    def complete_upload(self, key, upload_id, etags):
        parts = self.uploads.pop(upload_id)
        self.objects[key] = b"".join(parts[n] for n in range(1, len(etags) + 1))

    def abort_upload(self, key, upload_id):
        self.uploads.pop(upload_id, None)

    def sha256(self, key):
        return hashlib.sha256(self.get(key)).hexdigest()


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
        self.starts: list[int] = []  # the byte each request asked to start at
        self.interrupt_at = {}

    piece_bytes = 64 * 1024
    ranges = True  # whether Range requests are honoured (False: the whole body again, with 200)
    # url -> the byte after which the origin stops sending, once (Interrupted)
    interrupt_at: dict[str, int]

    def open(self, url, limits, *, start=0, validator=None, limit=None, unless=None):
        self.calls.append(url)
        self.starts.append(start)
        if url not in self.pages:
            raise UnreachableUrl("the URL answered HTTP 404")
        declared, body = self.pages[url]
        tag = Validator(etag=f'"{hashlib.md5(body).hexdigest()}"')  # noqa: S324
        if not self.ranges or (validator is not None and validator.if_range() != tag.etag):
            start = 0  # If-Range: another version is served whole
        served = body[start:]
        limit = limits.for_body(served[:1445], declared, url) if limit is None else limit
        if len(body) > limit:
            raise ContentTooLarge("the body is larger than the limit")
        return Download(url=url, final_url=url, declared_type=declared, head=served[:1445], start=start,
                        total=len(body), validator=tag, resumable=self.ranges,
                        pieces=self._pieces(url, served, start))

    def _pieces(self, url, served, start):
        stop = self.interrupt_at.pop(url, None)
        for i in range(0, len(served), self.piece_bytes):
            piece = served[i:i + self.piece_bytes]
            if stop is not None and start + i + len(piece) > stop:
                yield piece[:stop - start - i]
                raise Interrupted(f"the URL stopped sending at byte {stop}", received=stop - start)
            yield piece


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
        self.asynchronous = pending  # as a real backend says: its submit() answers with a Pending job
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

    def texts_of(self, prediction):
        from allthethings.adapters.replicate import texts_of

        return texts_of(prediction)


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

    def audio_url_of(self, prediction):
        from allthethings.adapters.replicate import audio_url_of

        return audio_url_of(prediction)


class FakeImageReader(ImageReader):
    """Records requests; the test delivers the result as a webhook would (the real parser reads it)."""

    def __init__(self):
        self.submitted: list[tuple[str, str]] = []

    def submit(self, image_url, webhook_url):
        self.submitted.append((image_url, webhook_url))
        return Pending(prediction_id=f"v{len(self.submitted)}")

    def reading_from_output(self, output):
        from allthethings.adapters.images import reading_from_output

        return reading_from_output(output)

    def image_url_of(self, prediction):
        media = (prediction.get("input") or {}).get("media")
        return media if isinstance(media, str) else None


class FakePageOcr(PageOcr):
    """Text detection whose jobs a test finishes: `results[job_id]` is {page: text}; a job not in
    `results` is still running (UpstreamUnavailable); `forgotten` jobs are NotFound."""

    def __init__(self):
        self.started: list[tuple[str, str]] = []
        self.results: dict[str, dict[int, str]] = {}
        self.forgotten: set[str] = set()

    def start(self, staged_key, asset_id, attempt=""):
        self.started.append((staged_key, asset_id))
        return f"job{len(self.started)}"

    def pages(self, job_id):
        if job_id in self.forgotten:
            raise NotFound(f"no job {job_id}")
        if job_id not in self.results:
            raise UpstreamUnavailable(f"job {job_id} is still running")
        return dict(self.results[job_id])

    @staticmethod
    def notice_of(message):
        if message.get("API") != "StartDocumentTextDetection":
            return None
        return OcrNotice(job_id=message["JobId"], status=message["Status"], job_tag=message.get("JobTag"))


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


def _pictures():
    """The real image checks: Pillow on bytes in memory, no I/O."""
    from allthethings.adapters.images import PillowPictures

    return PillowPictures()


def fake_deps(**overrides) -> Deps:
    from allthethings.adapters.feeds import FeedReader
    from allthethings.adapters.signatures import ReplicateVerifier
    from tests.fake_sources import FakeSourceStore

    settings = overrides.pop("settings", Settings(chunk_tokens=20, chunk_overlap=4))
    parts = dict(settings=settings, store=FakeStore(), blobs=FakeBlobs(), queue=FakeQueue(), fetcher=FakeFetcher(),
                 extractor=FakeExtractor(), tokenizer=WordTokenizer(), embedder=FakeEmbedder(),
                 transcriber=FakeTranscriber(), webhooks=FakeQueue(), fetches=FakeQueue(),
                 image_reader=FakeImageReader(), pictures=_pictures(),
                 predictions=FakePredictions(), metrics=FakeMetrics(), secrets=FakeSecrets(),
                 verifier=ReplicateVerifier(settings.replicate_webhook_secret),
                 sources=FakeSourceStore(), source_reader=FeedReader(), source_queue=FakeQueue())
    parts.update(overrides)
    return Deps(**parts)
