"""Sources: a feed or a sitemap whose items become assets, read again on a schedule.

A source is what a user adds (`POST /api/sources`): an RSS or Atom feed (podcasts included), a
sitemap or a sitemap index. Reading it lists items (`SourceItem`, what `parse_source` returns);
each item is remembered as an `Entry` of the source, keyed by its URL, so that a later read
submits only the URLs it has not seen. An entry is PENDING until the submission service has taken
it (SUBMITTED, with the asset it became) or refused it (REFUSED, with the reason a user reads: a
private address, a type we cannot index, an unreachable URL).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import datetime, timedelta

from allthethings.domain.assets import now
from allthethings.domain.errors import InvalidInput

MiB = 1024 * 1024


class SourceKind(str, enum.Enum):
    RSS = "rss"
    ATOM = "atom"
    SITEMAP = "sitemap"
    SITEMAP_INDEX = "sitemap_index"


@dataclasses.dataclass(frozen=True)
class SourceLimits:
    """How much one source may cost."""

    max_items: int = 1_000  # feed entries or sitemap URLs read, in document order; the rest are counted
    max_bytes: int = 50 * MiB  # the body, after gunzip (the sitemaps.org limit is 50 MB uncompressed)
    max_children: int = 1_000  # sitemaps listed by a sitemap index read; the rest are counted
    max_description_chars: int = 2_000


@dataclasses.dataclass(frozen=True)
class Transcript:
    """A publisher's transcript of a podcast episode (`<podcast:transcript>`)."""

    url: str
    type: str  # text/vtt, application/x-subrip, application/srt or application/json
    language: str | None = None
    rel: str | None = None  # "captions" when the file carries timings meant as captions

    def to_public(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_public(cls, raw: object) -> Transcript | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("url"), str) or not isinstance(raw.get("type"), str):
            return None
        return cls(raw["url"], raw["type"], raw.get("language"), raw.get("rel"))


# The publisher transcript formats read instead of transcribing (domain/transcripts.py).
TRANSCRIPT_TYPES = ("text/vtt", "application/x-subrip", "application/srt", "text/srt", "application/json")


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One thing a source lists, as the asset it will become."""

    url: str  # the enclosure of a podcast item, else the item's link; a sitemap's loc
    title: str | None = None
    published_at: datetime | None = None  # aware, in UTC; a feed's date or a sitemap's lastmod
    author: str | None = None
    description: str | None = None  # plain text, at most SourceLimits.max_description_chars
    guid: str | None = None
    transcripts: list[Transcript] = dataclasses.field(default_factory=list)


SKIP_REASONS = ("no_url", "duplicate", "over_limit", "bad_url")


@dataclasses.dataclass(frozen=True)
class ParsedSource:
    """What a source lists. `kind` is None for an HTML page, whose only use is `feed_link`."""

    kind: SourceKind | None
    title: str | None = None
    items: list[SourceItem] = dataclasses.field(default_factory=list)
    children: list[str] = dataclasses.field(default_factory=list)  # a sitemap index's sitemaps
    feed_link: str | None = None  # the feed an HTML page links to, absolute
    # Entries dropped, by reason (every reason present, zero or not); for a sitemap index, its sitemaps.
    skipped: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))


def new_source_id() -> str:
    return "src_" + uuid.uuid4().hex


def check_source_id(value: str) -> str:
    if not (isinstance(value, str) and len(value) == 36 and value.startswith("src_")
            and all(c in "0123456789abcdef" for c in value[4:])):
        raise InvalidInput("source id must be src_ and 32 lowercase hex characters", param="source")
    return value


MIN_INTERVAL_S = 300
MAX_INTERVAL_S = 30 * 24 * 3600


def check_interval(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise InvalidInput(f"refresh_interval_s must be a whole number of seconds from {MIN_INTERVAL_S} "
                           f"to {MAX_INTERVAL_S}", param="refresh_interval_s")
    return value


@dataclasses.dataclass
class Source:
    """A feed or sitemap a user added, and where its reading stands."""

    id: str
    url: str  # as the user gave it, normalised
    feed_url: str  # what is read: `url`, or the feed an HTML page at `url` links to
    kind: SourceKind
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    interval_s: int = 3600
    etag: str | None = None  # the validators of the last version read (a conditional GET sends them)
    last_modified: str | None = None
    last_refresh_at: datetime | None = None  # when a read last finished (changed or not)
    next_refresh_at: datetime | None = None  # when the schedule reads it next
    last_error: str | None = None  # why the last read failed (the source's assets are kept)
    skipped: dict | None = None  # items the last read dropped, by reason (no URL, duplicate, over the limit)

    @classmethod
    def new(cls, url: str, feed_url: str, kind: SourceKind, *, title: str | None, interval_s: int) -> Source:
        stamp = now()
        return cls(id=new_source_id(), url=url, feed_url=feed_url, kind=kind, created_at=stamp, updated_at=stamp,
                   title=title, interval_s=interval_s, next_refresh_at=stamp + timedelta(seconds=interval_s))

    def to_public(self) -> dict:
        body = {
            "id": self.id,
            "url": self.url,
            "feed_url": self.feed_url,
            "kind": self.kind.value,
            "title": self.title,
            "refresh_interval_s": self.interval_s,
            "created_at": self.created_at.isoformat(),
            "last_refresh_at": self.last_refresh_at.isoformat() if self.last_refresh_at else None,
            "next_refresh_at": self.next_refresh_at.isoformat() if self.next_refresh_at else None,
            "last_error": self.last_error,
        }
        if self.skipped:
            body["skipped"] = dict(self.skipped)
        return body


class EntryState(str, enum.Enum):
    PENDING = "PENDING"  # listed, not yet submitted
    SUBMITTED = "SUBMITTED"  # an asset (new, or one already known under its URL)
    REFUSED = "REFUSED"  # the submission refused it: `reason` says why


@dataclasses.dataclass
class Entry:
    """One item of a source, remembered by its URL (a source lists a URL once)."""

    source_id: str
    url: str
    state: EntryState
    created_at: datetime
    title: str | None = None
    published_at: datetime | None = None
    author: str | None = None
    description: str | None = None
    transcripts: list[Transcript] = dataclasses.field(default_factory=list)
    asset_id: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, source_id: str, item: SourceItem) -> Entry:
        return cls(source_id=source_id, url=item.url, state=EntryState.PENDING, created_at=now(),
                   title=item.title, published_at=item.published_at, author=item.author,
                   description=item.description, transcripts=list(item.transcripts))

    def asset_fields(self) -> dict:
        """What the asset this entry becomes keeps of it (domain/assets.ITEM_FIELDS)."""
        transcript = next((t for t in self.transcripts if t.type.split(";")[0].strip().lower() in TRANSCRIPT_TYPES),
                          None)
        fields = {"source_id": self.source_id, "title": self.title, "published_at": self.published_at,
                  "author": self.author, "description": self.description,
                  "transcript": transcript.to_public() if transcript else None}
        return {k: v for k, v in fields.items() if v is not None}

    def to_public(self) -> dict:
        body = {"url": self.url, "state": self.state.value, "title": self.title,
                "published_at": self.published_at.isoformat() if self.published_at else None}
        if self.asset_id:
            body["asset_id"] = self.asset_id
        if self.reason:
            body["reason"] = self.reason
        return body
