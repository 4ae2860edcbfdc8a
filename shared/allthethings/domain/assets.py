"""Assets, their statuses, and the only transitions allowed between them."""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from allthethings.domain.documents import shown_metadata
from allthethings.domain.errors import InvalidInput
from allthethings.domain.network import canonical_host


class Status(str, enum.Enum):
    FETCHING = "FETCHING"  # recorded; its body is being fetched behind the queue (fetched_bytes shows how far)
    SUBMITTED = "SUBMITTED"
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    GENERATING_EMBEDDINGS = "GENERATING_EMBEDDINGS"
    SEARCHABLE = "SEARCHABLE"
    PROCESSING_ERROR = "PROCESSING_ERROR"
    EMBEDDINGS_ERROR = "EMBEDDINGS_ERROR"

    @property
    def is_error(self) -> bool:
        return self in (Status.PROCESSING_ERROR, Status.EMBEDDINGS_ERROR)

    @property
    def is_final(self) -> bool:
        return self is Status.SEARCHABLE or self.is_error


# Status only moves forward. PROCESSING -> PROCESSING is allowed so that a queue
# message redelivered after a crash mid-processing can pick the work up again, FETCHING ->
# FETCHING so that a fetch records its progress, GENERATING_EMBEDDINGS -> GENERATING_EMBEDDINGS
# so that embeddings requested in groups move on to the next group's prediction. A fetch ends
# staged (SUBMITTED), failed, or SEARCHABLE at once when the body is one already indexed behind another URL. The one way
# back is a user's retry of a failed asset, to the step that failed: a failed processing
# starts again from SUBMITTED (the staged bytes), failed embeddings from PROCESSED (the
# stored chunks); a retry that fetches the URL again starts any failed asset from SUBMITTED
# (fetched at once) or FETCHING (fetched behind the queue).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.FETCHING: frozenset({Status.FETCHING, Status.SUBMITTED, Status.SEARCHABLE, Status.PROCESSING_ERROR}),
    Status.SUBMITTED: frozenset({Status.PROCESSING, Status.PROCESSING_ERROR}),
    Status.PROCESSING: frozenset({Status.PROCESSING, Status.PROCESSED, Status.PROCESSING_ERROR}),
    Status.PROCESSED: frozenset({Status.GENERATING_EMBEDDINGS, Status.SEARCHABLE, Status.EMBEDDINGS_ERROR}),
    Status.GENERATING_EMBEDDINGS: frozenset({Status.GENERATING_EMBEDDINGS, Status.SEARCHABLE,
                                             Status.EMBEDDINGS_ERROR}),
    Status.SEARCHABLE: frozenset(),
    Status.PROCESSING_ERROR: frozenset({Status.SUBMITTED, Status.FETCHING}),
    # SUBMITTED, FETCHING: fetched again
    Status.EMBEDDINGS_ERROR: frozenset({Status.PROCESSED, Status.SUBMITTED, Status.FETCHING}),
}

# Where a retry of each failed status restarts.
RETRY_FROM: dict[Status, Status] = {Status.PROCESSING_ERROR: Status.SUBMITTED,
                                    Status.EMBEDDINGS_ERROR: Status.PROCESSED}


def sources_of(target: Status) -> frozenset[Status]:
    """Every status from which `target` may be reached (for conditional updates)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def can_move(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


class Kind(str, enum.Enum):
    """What an asset is, for extraction and for search filters."""

    TEXT = "text"
    HTML = "html"
    PDF = "pdf"
    AUDIO = "audio"
    VIDEO = "video"
    IMAGE = "image"  # PNG, JPEG, WebP, GIF, TIFF, BMP, HEIC: its visible text and a description
    DOCUMENT = "document"  # word processing: DOCX, ODT, RTF
    PRESENTATION = "presentation"  # slides: PPTX, ODP
    SPREADSHEET = "spreadsheet"  # XLSX, ODS
    EBOOK = "ebook"  # EPUB


def now() -> datetime:
    return datetime.now(UTC)


def new_asset_id() -> str:
    return uuid.uuid4().hex


def is_asset_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def check_asset_id(value: str) -> str:
    if not is_asset_id(value):
        raise InvalidInput("asset id must be 32 lowercase hex characters")
    return value


MAX_URL_LENGTH = 2048


def host_of(url: str) -> str:
    """The URL's host, lower-cased: what the `host` search filter compares."""
    return (urlsplit(url).hostname or "").lower()


# An absolute file path (two or more segments) not inside a URL: after a word character, `:`
# or `/` a slash belongs to a URL or a ratio, not to the start of a path.
_FILE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.+~-]+/)+[\w.+~-]*")


def without_paths(message: str) -> str:
    """`message` with any server file path replaced by `<file>`."""
    return _FILE_PATH.sub("<file>", message)


def normalise_url(raw: object) -> str:
    """Validate a submitted URL and return it in one canonical spelling.

    Scheme and host are lower-cased, the fragment is dropped (it never reaches
    the server), and an empty path becomes "/" so that the duplicate check sees
    `http://A.com` and `http://a.com/#top` as one URL.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("url must be a non-empty string")
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise InvalidInput(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise InvalidInput("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url is malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://")
    # A browser reads a percent-escape in the host as the character (`127%2E0%2E0%2E1` is 127.0.0.1).
    host = canonical_host(unquote(parts.hostname or "").lower())
    if any(c in host for c in "%/\\@#?") or any(c.isspace() or ord(c) < 32 for c in host):
        raise InvalidInput("url has a host with characters a host name cannot hold")
    if not host:
        raise InvalidInput("url has no host")
    if parts.username or parts.password:
        raise InvalidInput("url must not carry credentials")
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default_port:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


@dataclasses.dataclass
class Asset:
    """One submitted URL and everything known about turning it into search results."""

    id: str
    url: str
    status: Status
    created_at: datetime
    updated_at: datetime
    content_type: str | None = None
    kind: Kind | None = None
    title: str | None = None
    error: str | None = None
    staged_key: str | None = None
    size_bytes: int | None = None
    chunk_count: int | None = None
    prediction_id: str | None = None
    sha256: str | None = None  # of the fetched body: the same bytes behind another URL reuse this work
    metadata: dict | None = None  # a document's own fields, given at ingestion; shown with every result
    fetched_bytes: int | None = None  # while FETCHING: how much of the body is staged (size_bytes: the total, if known)
    embedded_chunks: int | None = None  # while GENERATING_EMBEDDINGS in groups: how many chunks have vectors
    thumbnail_key: str | None = None  # an image's small staged derivative (GET /api/assets/{id}/thumbnail)
    # Of an asset a source listed (a feed's item, a sitemap's page): the source, and what the item said.
    source_id: str | None = None
    published_at: datetime | None = None  # the item's date (a feed's pubDate, a sitemap's lastmod)
    author: str | None = None
    description: str | None = None
    transcript: dict | None = None  # a publisher's transcript of a recording ({"url", "type"}), read before Whisper

    @classmethod
    def new(cls, url: str, *, content_type: str, kind: Kind, staged_key: str | None, size_bytes: int | None,
            asset_id: str | None = None, sha256: str | None = None, status: Status = Status.SUBMITTED,
            **item) -> Asset:
        """A submitted asset: SUBMITTED with its body staged, or FETCHING (its body on its way).
        `item`: what a source said of it (ITEM_FIELDS)."""
        stamp = now()
        return cls(id=asset_id or new_asset_id(), url=url, status=status,
                   created_at=stamp, updated_at=stamp, content_type=content_type, kind=kind,
                   staged_key=staged_key, size_bytes=size_bytes, sha256=sha256,
                   fetched_bytes=0 if status is Status.FETCHING else None, **_item_fields(item))

    def copied_to(self, url: str, *, size_bytes: int, content_type: str, **item) -> Asset:
        """A new SEARCHABLE asset for `url` whose body is byte for byte this one's: it shares this
        asset's chunks and vectors, and nothing is staged, transcribed or embedded for it."""
        stamp = now()
        fields = _item_fields(item)
        fields["title"] = self.title or fields.get("title")
        return Asset(id=new_asset_id(), url=url, status=Status.SEARCHABLE, created_at=stamp, updated_at=stamp,
                     content_type=self.content_type or content_type, kind=self.kind,
                     size_bytes=size_bytes, chunk_count=self.chunk_count, sha256=self.sha256, **fields)

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def thumbnail_url(self) -> str | None:
        """Where the API serves the thumbnail (a redirect to the staged derivative), if there is one."""
        return f"/api/assets/{self.id}/thumbnail" if self.thumbnail_key else None

    def to_public(self) -> dict:
        """The asset as the HTTP API shows it."""
        body = {
            "id": self.id,
            "url": self.url,
            "status": self.status.value,
            "content_type": self.content_type,
            "kind": self.kind.value if self.kind else None,
            "title": self.title,
            "size_bytes": self.size_bytes,
            "chunk_count": self.chunk_count,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
        if self.fetched_bytes is not None and self.status is Status.FETCHING:
            body["fetched_bytes"] = self.fetched_bytes
        if self.embedded_chunks is not None and self.status is Status.GENERATING_EMBEDDINGS:
            body["embedded_chunks"] = self.embedded_chunks
        if self.metadata is not None:
            body["metadata"] = shown_metadata(self.metadata)
        if self.thumbnail_key:
            body["thumbnail_url"] = self.thumbnail_url
        if self.source_id:
            body["source_id"] = self.source_id
        if self.published_at:
            body["published_at"] = self.published_at.isoformat()
        for name in ("author", "description"):
            if getattr(self, name):
                body[name] = getattr(self, name)
        if self.transcript:
            body["transcript"] = dict(self.transcript)
        if self.error:
            body["error"] = self.error
        return body


# What a source's item gives the asset it becomes.
ITEM_FIELDS = frozenset({"source_id", "title", "published_at", "author", "description", "transcript"})


def _item_fields(item: dict) -> dict:
    unknown = set(item) - ITEM_FIELDS
    if unknown:
        raise ValueError(f"unknown item fields {sorted(unknown)}")
    return item


@dataclasses.dataclass(frozen=True)
class Location:
    """Where in its document a piece of text is: the PDF (or TIFF) page, the slide, the sheet, or
    the section (a heading path such as `Part 2 › Safety`, an e-book's chapter, or what part of an
    image the text is: its visible text or its description). Numbers count from 1."""

    page: int | None = None
    slide: int | None = None
    sheet: str | None = None
    section: str | None = None

    def to_public(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_public(cls, raw: object) -> Location | None:
        """The location a stored `to_public()` dict describes (None for none or an empty one)."""
        if not isinstance(raw, dict):
            return None
        location = cls(page=_int_or_none(raw.get("page")), slide=_int_or_none(raw.get("slide")),
                       sheet=_str_or_none(raw.get("sheet")), section=_str_or_none(raw.get("section")))
        return location if location.to_public() else None

    def label(self) -> str:
        """How a person reads it: `page 3`, `slide 2`, `sheet Budget`, `Part 2 › Safety`."""
        parts = []
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.slide is not None:
            parts.append(f"slide {self.slide}")
        if self.sheet is not None:
            parts.append(f"sheet {self.sheet}")
        if self.section:
            parts.append(self.section)
        return " · ".join(parts)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A piece of an asset's text small enough for the embedding model."""

    asset_id: str
    index: int
    text: str
    start_s: float | None = None
    end_s: float | None = None
    location: Location | None = None


@dataclasses.dataclass(frozen=True)
class ChunkHit:
    """A chunk a search returned, with its score in that search (higher is better: a similarity,
    a BM25 score or a fused rank score) and what it matched by: `similarity` is its cosine
    similarity to the query when a vector search found it (None otherwise), `keyword` whether it
    holds the query's words (a keyword search found it). The score ranks; these two say whether
    the hit is a match at all (see services/search.py's similarity floor)."""

    asset_id: str
    index: int
    text: str
    score: float
    start_s: float | None = None
    end_s: float | None = None
    similarity: float | None = None
    keyword: bool = False
    location: Location | None = None
