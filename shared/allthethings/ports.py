"""The interfaces the domain and services own; adapters implement them, tests fake them."""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import BinaryIO

from allthethings.domain.assets import Asset, Chunk, ChunkHit, Location, Status, now, sources_of
from allthethings.domain.chunking import Segment
from allthethings.domain.content import SizeLimits
from allthethings.domain.errors import UnreachableUrl
from allthethings.domain.listing import AssetFilter
from allthethings.domain.search import SearchFilter, reciprocal_rank_fusion
from allthethings.domain.sources import Entry, EntryState, ParsedSource, Source, SourceLimits


class LazyVector:
    """A query's vector, computed once, by whoever needs it first (see AssetStore.hybrid_search)."""

    def __init__(self, compute: Callable[[], Sequence[float]]):
        self._compute = compute
        self._value: Sequence[float] | None = None
        self._lock = threading.Lock()

    def get(self) -> Sequence[float]:
        with self._lock:
            if self._value is None:
                self._value = self._compute()
            return self._value


QueryVector = Sequence[float] | LazyVector


def resolved(vector: QueryVector) -> Sequence[float]:
    return vector.get() if isinstance(vector, LazyVector) else vector


# Runs a hybrid search's keyword half while the calling thread computes the query's vector.
_KEYWORD_HALF = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="keyword-half")


class AssetStore(abc.ABC):
    """Assets and their chunks, with vector search over the chunks.

    The rules every store shares live here, as template methods in the manner of a repository
    base class: `add` returns the known asset for a known URL, `move` checks the fields and takes
    its allowed sources from the transition table, `make_searchable` checks the vector count and
    the asset's status, `add_copy` copies only from a SEARCHABLE source, `get_many` of no ids asks
    nothing. Each store implements the primitive operations they call (the underscored abstract
    methods below, each a fixed number of queries, never one per item) and the reads whose
    queries are its own. The asset<->record mapping the stores share is adapters/records.py.
    """

    # The fields `move` may set besides the status and the time of the change, which it sets itself.
    SETTABLE = frozenset(f.name for f in dataclasses.fields(Asset)) - {"id", "status", "updated_at"}

    def add(self, asset: Asset) -> Asset:
        """Insert a new asset; if its URL is already known, return the existing one instead."""
        return asset if self._insert(asset) else self._known(asset)

    def get(self, asset_id: str) -> Asset | None:
        return self.get_many([asset_id]).get(asset_id)

    def get_many(self, asset_ids: Sequence[str]) -> dict[str, Asset]:
        """The stored assets among `asset_ids`, by id, in one query (none for no ids); an id that
        is not stored is simply absent."""
        wanted = list(dict.fromkeys(asset_ids))
        if not wanted:
            return {}
        found = {a.id: a for a in self._fetch(wanted)}
        return {i: found[i] for i in wanted if i in found}

    @abc.abstractmethod
    def get_by_url(self, url: str) -> Asset | None: ...

    @abc.abstractmethod
    def find_by_digest(self, sha256: str) -> Asset | None:
        """The oldest SEARCHABLE asset whose fetched body had this SHA-256, if any."""

    def add_copy(self, asset: Asset, source_id: str) -> Asset | None:
        """Insert the SEARCHABLE `asset` with copies of the chunks and vectors of the SEARCHABLE asset
        `source_id` (the same bytes behind another URL), all or nothing. If the URL is already known,
        return the existing asset instead; None if the source is no longer searchable."""
        if asset.status is not Status.SEARCHABLE:
            raise ValueError(f"a copy is inserted SEARCHABLE, not {asset.status.value}")
        with self._transaction():
            source = self.get(source_id)
            if source is None or source.status is not Status.SEARCHABLE:
                return None
            inserted = self._copy(asset, source_id)
        return asset if inserted else self._known(asset)

    def become_copy(self, asset_id: str, source_id: str, **fields) -> bool:
        """Make the FETCHING asset `asset_id` a SEARCHABLE copy of the SEARCHABLE asset `source_id`
        (its body turned out to be the same bytes): copies of the source's chunks and vectors, their
        count, the source's title, and `fields`. Return whether it happened (False: either asset moved
        on or is gone, and nothing changed)."""
        unknown = set(fields) - self.SETTABLE
        if unknown:
            raise ValueError(f"unknown asset fields {sorted(unknown)}")
        with self._transaction():
            found = self.get_many([asset_id, source_id])
            target, source = found.get(asset_id), found.get(source_id)
            if target is None or target.status is not Status.FETCHING or source is None \
                    or source.status is not Status.SEARCHABLE:
                return False
            # Chunks first, status second: search drops the chunks of an asset not yet SEARCHABLE.
            self._copy_chunks(target, source_id)
            changes = {"chunk_count": self._chunk_count(asset_id), "title": source.title, **fields}
            return self._update_if(asset_id, frozenset({Status.FETCHING}), self._changes(Status.SEARCHABLE, changes))

    @abc.abstractmethod
    def list(self, limit: int, cursor: str | None,
             listing_filter: AssetFilter | None = None) -> tuple[list[Asset], str | None]:
        """A page of assets, newest first, among those the filter admits (filtered in the store's
        own query, never by fetching and dropping), and an opaque cursor for the next page (or
        None). A cursor is a position in the newest-first order, so it pages correctly under the
        filter it came with."""

    @abc.abstractmethod
    def stale(self, statuses: Sequence[Status], updated_before: datetime, limit: int) -> list[Asset]:
        """Up to `limit` assets in one of `statuses` not updated since `updated_before`, least
        recently updated first (what the stuck-asset sweeper looks at)."""

    @abc.abstractmethod
    def delete(self, asset_id: str) -> None:
        """Remove an asset and its chunks (used to undo a submission that could not be queued)."""

    @abc.abstractmethod
    def link_source(self, asset_id: str, source_id: str, **item) -> bool:
        """Give an asset that belongs to no source yet `source_id` and the item's fields
        (`published_at`, `author`, `description`, and `title` where the asset has none), on the
        asset and on the search metadata of its chunks, so that a `source` filter finds it at
        once. Return whether it happened (False: the asset is gone or already has a source)."""

    @abc.abstractmethod
    def source_counts(self, source_id: str) -> dict[Status, int]:
        """How many of the source's assets are in each status (absent: none), in one query."""

    def move(self, asset_id: str, target: Status, **fields) -> bool:
        """Set status to `target` (and `fields`) only if the transition is allowed from the
        stored status; return whether it happened. Atomic: two racing callers cannot both win."""
        unknown = set(fields) - self.SETTABLE
        if unknown:
            raise ValueError(f"unknown asset fields {sorted(unknown)}")
        return self._update_if(asset_id, sources_of(target), self._changes(target, fields))

    @abc.abstractmethod
    def put_chunks(self, asset_id: str, chunks: Sequence[Chunk]) -> None:
        """Replace the asset's chunks (without vectors)."""

    @abc.abstractmethod
    def chunks(self, asset_id: str, limit: int | None = None) -> list[Chunk]:
        """The asset's chunks in order (without vectors); with `limit`, only the first `limit`."""

    def make_searchable(self, asset_id: str, vectors: Sequence[Sequence[float]]) -> bool:
        """Attach one vector to each stored chunk (in chunk order) and move the asset to SEARCHABLE,
        if that move is allowed; return whether it happened. ValueError if the counts differ.
        Only SEARCHABLE assets ever have vectors, so a search never ranks anything else."""
        sources = sources_of(Status.SEARCHABLE)
        with self._transaction():
            count = self._chunk_count(asset_id)
            if count != len(vectors):
                raise ValueError(f"asset {asset_id} has {count} chunks but {len(vectors)} vectors came")
            asset = self.get(asset_id)
            if asset is None or asset.status not in sources:
                return False
            # Vectors first, status second: where the two are not one transaction (Atlas), a crash
            # in between leaves an asset that is not yet SEARCHABLE (search drops its chunks) and
            # whose retry rewrites the same vectors.
            self._attach_vectors(asset, vectors)
            return self._update_if(asset_id, sources, self._changes(Status.SEARCHABLE, {}))

    @abc.abstractmethod
    def search(self, vector: Sequence[float], limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        """The `limit` chunks of SEARCHABLE assets nearest to `vector`, best first, among those the
        filter admits (filtered before ranking: never fewer results because of the filter)."""

    @abc.abstractmethod
    def keyword_search(self, query: str, limit: int, search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        """The `limit` chunks of SEARCHABLE assets that best match the query's words (BM25), best first."""

    def hybrid_search(self, vector: QueryVector, query: str, limit: int,
                      search_filter: SearchFilter | None = None) -> list[ChunkHit]:
        """Vector and keyword results fused by reciprocal rank; stores with a native fusion override it.
        Given a vector still to compute (LazyVector), the keyword half runs on another thread while
        this one computes it: the embedding's time is not added to the full-text search's."""
        if not isinstance(vector, LazyVector):
            return reciprocal_rank_fusion(self.search(vector, limit, search_filter),
                                          self.keyword_search(query, limit, search_filter))[:limit]
        keyword = _KEYWORD_HALF.submit(self.keyword_search, query, limit, search_filter)
        try:
            nearest = self.search(vector.get(), limit, search_filter)
        except BaseException:
            keyword.cancel()
            raise
        return reciprocal_rank_fusion(nearest, keyword.result())[:limit]

    # -- shared steps ------------------------------------------------------------------------
    @staticmethod
    def _changes(target: Status, fields: dict) -> dict:
        """What a move writes: the status, the time of the change, and the caller's fields."""
        return {**fields, "status": target, "updated_at": now()}

    def _known(self, asset: Asset) -> Asset:
        """The asset that holds `asset`'s URL, after an insert was refused because of it."""
        existing = self.get_by_url(asset.url)
        if existing is None:  # the refusal was not about the URL (an id taken), or it was deleted since
            raise RuntimeError(f"asset {asset.id} was refused, but no asset holds its URL")
        return existing

    # -- primitive operations, one per store ---------------------------------------------------
    def _transaction(self) -> contextlib.AbstractContextManager:
        """A block whose primitive writes commit together or not at all. The default is none: a
        store without multi-document transactions orders its writes so that a crash between them
        leaves nothing a search or a later call would trust (see `make_searchable`)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def _insert(self, asset: Asset) -> bool:
        """Insert the asset unless its URL is known (one write); return whether it was inserted."""

    @abc.abstractmethod
    def _fetch(self, asset_ids: Sequence[str]) -> list[Asset]:
        """The stored assets among these distinct ids, in any order (one query)."""

    @abc.abstractmethod
    def _copy(self, asset: Asset, source_id: str) -> bool:
        """Insert `asset` unless its URL is known, with copies of the chunks and vectors of
        `source_id` (checked SEARCHABLE) carrying `asset`'s search metadata; return whether it was
        inserted. All or nothing: nothing of the copy survives a refusal or a failure."""

    @abc.abstractmethod
    def _copy_chunks(self, asset: Asset, source_id: str) -> None:
        """Replace the stored `asset`'s chunks with copies of the chunks and vectors of `source_id`,
        carrying `asset`'s search metadata (a repeated call writes the same rows again)."""

    @abc.abstractmethod
    def _update_if(self, asset_id: str, sources: frozenset[Status], changes: dict) -> bool:
        """Set `changes` (asset fields, domain values) on the asset if its status is in `sources`,
        in one conditional write; return whether it matched."""

    @abc.abstractmethod
    def _chunk_count(self, asset_id: str) -> int: ...

    @abc.abstractmethod
    def _attach_vectors(self, asset: Asset, vectors: Sequence[Sequence[float]]) -> None:
        """Give each of the asset's chunks, in chunk order, its vector and the asset's search
        metadata (the counts are checked equal). The status is not this method's business."""


class SourceStore(abc.ABC):
    """Sources and their entries (the items each listed, by URL). One source per URL; one entry
    per (source, URL), kept in the order they were first listed."""

    @abc.abstractmethod
    def add(self, source: Source) -> Source:
        """Insert a new source; if its URL is already known, return the existing one instead."""

    @abc.abstractmethod
    def get(self, source_id: str) -> Source | None: ...

    @abc.abstractmethod
    def get_by_url(self, url: str) -> Source | None: ...

    @abc.abstractmethod
    def list(self, limit: int, cursor: str | None) -> tuple[list[Source], str | None]:
        """A page of sources, newest first, and an opaque cursor for the next page (or None)."""

    @abc.abstractmethod
    def update(self, source_id: str, **fields) -> bool:
        """Set fields of a source (any of Source's but `id`, `url` and `created_at`; `updated_at`
        is set too); return whether the source exists."""

    @abc.abstractmethod
    def claim_due(self, at: datetime, limit: int) -> list[Source]:
        """Up to `limit` sources whose `next_refresh_at` is at or before `at`, soonest first, each
        moved to `at + interval_s` in a conditional write, so that two schedulers running at once
        never claim one source twice. The sources are returned as they were before the claim."""

    @abc.abstractmethod
    def delete(self, source_id: str) -> None:
        """Remove the source and its entries (its assets are the caller's business)."""

    @abc.abstractmethod
    def add_entries(self, entries: Sequence[Entry]) -> int:
        """Insert the entries whose (source, URL) is not yet known; return how many were new."""

    @abc.abstractmethod
    def entries(self, source_id: str, state: EntryState | None, limit: int) -> list[Entry]:
        """Up to `limit` of the source's entries (in `state`, if given) in the order first listed."""

    @abc.abstractmethod
    def finish_entry(self, source_id: str, url: str, state: EntryState, *, asset_id: str | None = None,
                     reason: str | None = None) -> None:
        """Record what became of a PENDING entry: SUBMITTED with its asset, or REFUSED with a reason."""

    @abc.abstractmethod
    def retry_refused(self, source_id: str) -> int:
        """Make the source's REFUSED entries PENDING again (their reasons cleared), to be submitted
        once more; return how many."""

    @abc.abstractmethod
    def entry_counts(self, source_id: str) -> dict[EntryState, int]:
        """How many of the source's entries are in each state (absent: none), in one query."""


class SourceReader(abc.ABC):
    """Reads what a source's fetched bytes list (a feed's items, a sitemap's pages, a sitemap
    index's sitemaps, the feed an HTML page links to), with no network access of its own."""

    @abc.abstractmethod
    def parse(self, body: bytes, url: str, content_type: str | None, limits: SourceLimits) -> ParsedSource:
        """Raise ContentTooLarge, ExtractionFailed or UnsupportedContentType with a reason."""


class BlobStore(abc.ABC):
    """Where fetched bytes are staged between submission and processing."""

    @abc.abstractmethod
    def put(self, key: str, body: BinaryIO, content_type: str) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the staged object is still there (staged bodies expire; the local stack's
        emulator forgets them on restart)."""

    @abc.abstractmethod
    def presigned_url(self, key: str, expires_s: int) -> str:
        """A time-limited GET URL of the staged bytes, for a model to fetch them itself."""

    # -- staging a body too large for one request: a multipart upload, part by part --------------
    @abc.abstractmethod
    def start_upload(self, key: str, content_type: str) -> str:
        """Begin a multipart upload to `key`; its upload id."""

    @abc.abstractmethod
    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Store part `number` (from 1; every part but the last at least 5 MiB); its ETag. Storing a
        part number again replaces it."""

    @abc.abstractmethod
    def complete_upload(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        """Join the parts, numbered 1..len(etags), into the object at `key`."""

    @abc.abstractmethod
    def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and its parts (an unknown or finished one: nothing happens)."""

    @abc.abstractmethod
    def sha256(self, key: str) -> str:
        """The SHA-256 of the stored object, read back as a stream (for a body fetched in several
        invocations, whose hash could not be carried from one to the next)."""


class TaskQueue(abc.ABC):
    """A durable queue: between submission and processing, and between webhooks and their consumer."""

    @abc.abstractmethod
    def send(self, message: dict) -> None: ...


@dataclasses.dataclass
class Fetched:
    """A fetched body, spooled to a file object, with what the server said about it."""

    url: str
    final_url: str
    declared_type: str | None
    body: BinaryIO
    size: int
    head: bytes
    sha256: str  # of the whole body
    validator: Validator | None = None  # what identifies this version (its ETag and Last-Modified)


@dataclasses.dataclass(frozen=True)
class Validator:
    """What identifies one version of a body (RFC 9110 validators): a Range continuation must be
    of the same version, or the parts would splice two bodies together."""

    etag: str | None = None
    last_modified: str | None = None

    def if_range(self) -> str | None:
        """The If-Range header: a strong ETag, else the Last-Modified date (a weak ETag may not be used)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def differs_from(self, other: Validator) -> bool:
        """Whether the two certainly name different versions (what neither names cannot tell)."""
        if self.etag and other.etag:
            return self.etag != other.etag
        if self.last_modified and other.last_modified:
            return self.last_modified != other.last_modified
        return False

    def to_message(self) -> dict:
        return {"etag": self.etag, "last_modified": self.last_modified}


@dataclasses.dataclass
class Download:
    """An open response: what the origin said about the body, its first bytes, and the body
    itself as `pieces` from byte `start` on (the first bytes included). Reading `pieces` past
    the size limit raises ContentTooLarge; an origin that stops sending or drops the connection
    part-way raises Interrupted. Close it (or use it in a `with`) to give the connection back."""

    url: str
    final_url: str
    declared_type: str | None
    head: bytes  # the first bytes of what is served (SNIFF_BYTES, fewer for a shorter body)
    start: int  # the offset the served bytes begin at: 0 unless a Range request was honoured
    total: int | None  # the whole body's size, when the origin says it
    validator: Validator
    resumable: bool  # the origin takes Range requests (it said so, or honoured one)
    pieces: Iterator[bytes]
    close: Callable[[], None] = lambda: None
    not_modified: bool = False  # a conditional GET answered 304: nothing to read, `validator` still holds

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Fetcher(abc.ABC):
    @abc.abstractmethod
    def open(self, url: str, limits: SizeLimits, *, start: int = 0, validator: Validator | None = None,
             limit: int | None = None, unless: Validator | None = None) -> Download:
        """GET the URL (from byte `start` with a Range request, If-Range `validator`), following
        redirects; read the first bytes. With `unless` (the validators of a version already read),
        a conditional GET: an origin that answers 304 gives a Download that is `not_modified`.
        The body's limit is `limit` if given, else the one for the kind its first bytes show.
        Raise UnreachableUrl (no answer, an HTTP error), ContentTooLarge (the declared size over
        the limit), UnsupportedContentType (no limit applies: a type we cannot index), or
        InvalidInput (a URL or a redirect leading somewhere it may not go)."""

    def read(self, download: Download, *, until: float | None = None, max_bytes: int | None = None,
             spool_bytes: int = 8 * 1024 * 1024) -> Fetched | None:
        """The whole body of an open download, spooled and hashed; None if it is not all there by
        `until` (a time.monotonic() value) or is longer than `max_bytes`."""
        body = tempfile.SpooledTemporaryFile(max_size=spool_bytes)
        digest, size = hashlib.sha256(), 0
        try:
            for piece in download.pieces:
                size += len(piece)
                if (max_bytes is not None and size > max_bytes) or (until is not None and time.monotonic() > until):
                    body.close()
                    return None
                digest.update(piece)
                body.write(piece)
        except BaseException:
            body.close()
            raise
        body.seek(0)
        return Fetched(url=download.url, final_url=download.final_url, declared_type=download.declared_type,
                       body=body, size=size, head=download.head, sha256=digest.hexdigest(),
                       validator=download.validator)

    # How long `fetch` waits for a whole body unless told (HttpFetcher: three read timeouts), and
    # how much of it is held in memory before it spills to a temporary file.
    whole_body_s: float = 60.0
    spool_bytes: int = 8 * 1024 * 1024

    def fetch(self, url: str, limits: SizeLimits, *, limit: int | None = None, within_s: float | None = None,
              unless: Validator | None = None) -> Fetched | None:
        """The whole body in one go (`open` then `read`): UnreachableUrl unless it has all come
        within `within_s`, ContentTooLarge past `limit` (else the limit of the kind its first bytes
        show). With `unless`, None when a conditional GET says the version is unchanged."""
        seconds = self.whole_body_s if within_s is None else within_s
        with self.open(url, limits, limit=limit, unless=unless) as download:
            if download.not_modified:
                return None
            fetched = self.read(download, until=time.monotonic() + seconds, max_bytes=limit,
                                spool_bytes=self.spool_bytes)
        if fetched is None:
            size = f" or is over {limit} bytes" if limit is not None else ""
            raise UnreachableUrl(f"the URL did not finish sending within {seconds:.0f} s{size}")
        return fetched


@dataclasses.dataclass(frozen=True)
class Section:
    """A stretch of a document's text and where it is (a page, a slide, a sheet, a heading path).
    Chunks never span two sections, so each result says where its words are."""

    text: str
    location: Location | None = None


@dataclasses.dataclass(frozen=True)
class Extracted:
    """A document's title and text; `sections`, when given, are the text in its parts, in order
    (the text is then their texts joined). `unread_pages`: the PDF pages with no text layer to
    speak of (scans), for OCR. `content_type`: what the whole body proved to be, when the first
    bytes could only say less (an Office Open XML package is a DOCX, a PPTX or an XLSX)."""

    title: str | None
    text: str
    sections: tuple[Section, ...] = ()
    unread_pages: tuple[int, ...] = ()
    content_type: str | None = None

    @classmethod
    def of_sections(cls, title: str | None, sections: Sequence[Section], **more) -> Extracted:
        kept = tuple(s for s in sections if s.text.strip())
        return cls(title=title, text="\n\n".join(s.text for s in kept), sections=kept, **more)


class Extractor(abc.ABC):
    @abc.abstractmethod
    def extract(self, body: bytes, content_type: str, url: str) -> Extracted:
        """The main text of a document; raise ExtractionFailed when there is none."""


class Tokenizer(abc.ABC):
    @abc.abstractmethod
    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's tokens in `text`, special tokens excluded."""

    def count(self, text: str) -> int:
        """How many tokens the model reads for `text`, its two special tokens ([CLS], [SEP]) included."""
        return len(self.spans(text)) + 2


@dataclasses.dataclass(frozen=True)
class Pending:
    """A job accepted by a remote model; its result arrives by webhook. The id is None when the
    job went through a queue (Hookdeck) and the model has not named it yet."""

    prediction_id: str | None


class Transcriber(abc.ABC):
    """Speech to text with segment times (Whisper), always asynchronous: the result comes by webhook."""

    @abc.abstractmethod
    def submit(self, audio_url: str, webhook_url: str) -> Pending: ...

    @abc.abstractmethod
    def segments_from_output(self, output: object) -> list[Segment]:
        """The timed segments in a finished job's output; ValueError if it holds none."""

    @abc.abstractmethod
    def audio_url_of(self, prediction: dict) -> str | None:
        """The recording URL a delivered job was given (its echoed input), if it shows one: what
        binds a delivery to the asset whose staged recording it transcribed."""


@dataclasses.dataclass(frozen=True)
class Reading:
    """What a vision model read in an image: a description of what it shows (and where that
    description came from: `model`, or the image's own metadata such as `EXIF ImageDescription`)
    and the text visible in it. Either may be empty; a description is never invented."""

    description: str | None
    description_source: str | None
    text: str


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What an image becomes before the vision model sees it: its thumbnail (a small JPEG), and a
    JPEG copy of its first frame when the model may not decode the original (None: it can)."""

    thumbnail: bytes
    for_model: bytes | None


class Pictures(abc.ABC):
    """Opening an image before any model sees it: the checks a hostile file must pass (pixels,
    pages, truncation) and the derivatives made from it."""

    @abc.abstractmethod
    def prepare(self, body: bytes, content_type: str) -> Prepared:
        """The image checked and its derivatives made; ExtractionFailed (with a reason a user can
        read) for a decompression bomb, too many pages, a truncated or unreadable file."""


class ImageReader(abc.ABC):
    """An image's description and visible text from a vision model, always asynchronous: one
    prediction per image, its result by webhook (as a transcription)."""

    @abc.abstractmethod
    def submit(self, image_url: str, webhook_url: str) -> Pending: ...

    @abc.abstractmethod
    def reading_from_output(self, output: object) -> Reading:
        """The reading in a finished prediction's output; ValueError if the output is unusable."""

    @abc.abstractmethod
    def image_url_of(self, prediction: dict) -> str | None:
        """The image URL a delivered prediction was given (its echoed input), if it shows one."""


@dataclasses.dataclass(frozen=True)
class OcrNotice:
    """A text-detection job's completion notice, as it arrives on the webhook queue."""

    job_id: str
    status: str  # SUCCEEDED, FAILED, ERROR or PARTIAL_SUCCESS (Textract's words)
    job_tag: str | None  # the asset id the job was started for


class PageOcr(abc.ABC):
    """Text detection on the pages of a staged document (a scanned PDF), asynchronous: starting
    a job costs one call, and its completion arrives as a notice on the webhook queue; reading
    the finished job's text costs one call per 1,000 lines. Production: Amazon Textract's
    StartDocumentTextDetection with an SNS topic that feeds the queue; locally a stand-in that
    speaks the same API with a real OCR engine."""

    @abc.abstractmethod
    def start(self, staged_key: str, asset_id: str, attempt: str = "") -> str:
        """Start detecting the text of the staged object; the job's id. Starting again for the
        same asset, object and `attempt` (which a retry of the asset changes) returns the same job."""

    @abc.abstractmethod
    def pages(self, job_id: str) -> dict[int, str]:
        """A finished job's text by page number (from 1), lines joined by newlines; pages with no
        text are absent. ExtractionFailed if the job failed; UpstreamUnavailable if the service
        cannot answer (retried) or the job is still running."""

    @staticmethod
    @abc.abstractmethod
    def notice_of(message: dict) -> OcrNotice | None:
        """The completion notice a queued message carries, or None if it is not one."""


class WebhookVerifier(abc.ABC):
    @abc.abstractmethod
    def verify(self, body: bytes, headers: dict[str, str]) -> str:
        """Raise Unauthorized unless the delivery is authentic; return its delivery id."""


class Embedder(abc.ABC):
    """The sentence-embedding model, local or remote."""

    model: str
    dimensions: int
    max_tokens: int
    asynchronous = False  # whether submit() answers with a Pending job (its result comes by webhook)

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors for `texts`, synchronously (search queries, /v1/embeddings)."""

    def embed_counted(self, texts: Sequence[str]) -> tuple[list[list[float]], int | None]:
        """The vectors and, when the backend reports it, how many tokens it read (None: it does not)."""
        return self.embed(texts), None

    def submit(self, texts: Sequence[str], webhook_url: str) -> list[list[float]] | Pending:
        """Embed an asset's chunks: either the vectors now, or a Pending job whose result is
        POSTed to `webhook_url`. The default embeds synchronously."""
        return self.embed(texts)

    def vectors_from_output(self, output: object) -> list[list[float]]:
        """The vectors in a remote job's delivered output; ValueError if it holds none."""
        raise ValueError(f"{type(self).__name__} does not deliver results by webhook")

    def texts_of(self, prediction: dict) -> list[str] | None:
        """The texts a delivered job embedded (its echoed input), if it shows them: what binds a
        delivery to the asset whose chunks they are. None: the backend delivers no jobs."""
        return None


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """A model /v1/embeddings serves: its embedder, and its tokenizer when we have it (to count
    tokens and refuse over-long inputs before the model runs; without one the backend does both)."""

    embedder: Embedder
    tokenizer: Tokenizer | None


class Metrics(abc.ABC):
    """Counts and latencies for operators: CloudWatch (EMF) in Lambda, Prometheus locally."""

    @abc.abstractmethod
    def count(self, name: str, value: int = 1) -> None: ...

    @abc.abstractmethod
    def latency(self, name: str, seconds: float) -> None: ...

    def flush(self) -> None:
        """Publish what this invocation recorded (EMF writes one log line); default: nothing to do."""
        return None


class NoMetrics(Metrics):
    def count(self, name: str, value: int = 1) -> None:
        pass

    def latency(self, name: str, seconds: float) -> None:
        pass


# The statuses after which a prediction changes no more (Replicate's words).
PREDICTION_FINISHED = ("succeeded", "failed", "canceled")


class Predictions(abc.ABC):
    """The model API's record of a prediction, asked for when its webhook seems lost."""

    @abc.abstractmethod
    def get(self, prediction_id: str) -> dict:
        """The prediction as the model API holds it: {"id", "status", "output"?, "error"?}.
        NotFound if the API has no such prediction; UpstreamUnavailable if it cannot answer."""


class Secrets(abc.ABC):
    """Where credentials come from: a value given directly, or a parameter store read by name."""

    @abc.abstractmethod
    def get(self, value: str | None, param: str | None, what: str) -> str:
        """`value` if given, else the secret stored under `param`; ValueError if neither is
        configured (`what` names the setting). Every secret returned is kept out of the logs."""
