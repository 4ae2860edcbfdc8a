"""Search semantics shared by every store: filters, modes, reciprocal rank fusion, grouping of
chunk hits into one result per asset, highlighting of the query's terms, and cursors."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from allthethings.domain import cursor as cursors
from allthethings.domain.assets import Asset, ChunkHit, Kind, Location
from allthethings.domain.errors import InvalidInput


class Mode(str, enum.Enum):
    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclasses.dataclass(frozen=True)
class SearchFilter:
    """Applied before ranking: a result must match every field that is set."""

    kinds: tuple[Kind, ...] = ()
    host: str | None = None
    after: datetime | None = None  # created at or after
    before: datetime | None = None  # created strictly before
    source: str | None = None  # the id of the source that listed the asset
    # Of the asset's publication date (a source's item's): an asset without one matches neither.
    published_after: datetime | None = None  # published at or after
    published_before: datetime | None = None  # published strictly before

    @property
    def is_empty(self) -> bool:
        return not (self.kinds or self.host or self.after or self.before or self.source
                    or self.published_after or self.published_before)

    def fingerprint(self) -> dict:
        def instant(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"kinds": sorted(k.value for k in self.kinds), "host": self.host,
                "after": instant(self.after), "before": instant(self.before), "source": self.source,
                "published_after": instant(self.published_after), "published_before": instant(self.published_before)}


RRF_K = 60  # the constant of Cormack, Clarke and Büttcher (2009), also MongoDB's $rankFusion default


def reciprocal_rank_fusion(*ranked: Sequence[ChunkHit], k: int = RRF_K) -> list[ChunkHit]:
    """One list from several best-first lists: each chunk scores the sum of 1 / (k + rank), and
    keeps what each list knew of it (its vector similarity, whether it matched by keyword)."""
    scores: dict[tuple[str, int], float] = {}
    first_seen: dict[tuple[str, int], ChunkHit] = {}
    for hits in ranked:
        for rank, hit in enumerate(hits, start=1):
            key = (hit.asset_id, hit.index)
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
            seen = first_seen.setdefault(key, hit)
            if seen is not hit:
                first_seen[key] = dataclasses.replace(
                    seen, keyword=seen.keyword or hit.keyword,
                    similarity=seen.similarity if seen.similarity is not None else hit.similarity)
    fused = [dataclasses.replace(first_seen[key], score=score) for key, score in scores.items()]
    fused.sort(key=lambda h: (-h.score, h.asset_id, h.index))
    return fused


def best_per_asset(hits: Iterable[ChunkHit]) -> list[ChunkHit]:
    """Each asset once, at the rank of its best chunk (hits are best first)."""
    seen: dict[str, ChunkHit] = {}
    for hit in hits:
        seen.setdefault(hit.asset_id, hit)
    return list(seen.values())


_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset((
    "a an and are as at be by for from has have how i in is it of on or that the this to was what when where which "
    "who why will with you your").split())


def query_terms(query: str) -> list[str]:
    """The words of a query that are worth matching (lower-cased, no stopwords, no repeats)."""
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if len(word) > 1 and word not in _STOPWORDS and word not in terms:
            terms.append(word)
    return terms


def highlights(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of `text` where a query term starts a word (so "keeper" marks "keepers")."""
    if not terms:
        return []
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE | re.UNICODE)
    return [m.span() for m in pattern.finditer(text)]


# How many characters of a transcript around a query word count as one place it is said, and how
# many seconds before that place a player starts (a word's first syllable is not cut off).
_PASSAGE_REACH = 200
_PASSAGE_LEAD_S = 1.0


def passage_start(text: str, start_s: float, end_s: float, spans: Sequence[tuple[int, int]]) -> float:
    """Where in a timed chunk the query's words are said: the chunk's start moved to the place its
    text holds the most distinct query words (`spans`, the highlights), in proportion to the
    characters before it, less a second of lead-in; the chunk's own start when no word matched
    (a match by meaning alone). Never before the chunk's start nor after its end."""
    if not spans or not text or end_s <= start_s:
        return start_s

    def held(at: int) -> int:
        return len({text[a:b].lower() for a, b in spans if at <= a < at + _PASSAGE_REACH})

    densest = max(spans, key=lambda span: (held(span[0]), -span[0]))[0]
    moved = start_s + (end_s - start_s) * densest / len(text) - _PASSAGE_LEAD_S
    return round(min(max(start_s, moved), end_s), 2)


def fingerprint(query: str, mode: Mode, search_filter: SearchFilter) -> str:
    raw = json.dumps([query, mode.value, search_filter.fingerprint()], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def page_cursor(query_fingerprint: str, offset: int) -> str:
    return cursors.encode({"q": query_fingerprint, "o": offset})


def page_offset(cursor: str | None, query_fingerprint: str) -> int:
    if not cursor:
        return 0
    position = cursors.decode(cursor, "q", "o")
    if position["q"] != query_fingerprint or not isinstance(position["o"], int) or position["o"] < 0:
        raise InvalidInput("cursor belongs to another search: pass the same q, mode and filters with it")
    return position["o"]


def parse_instant(raw: str, name: str) -> datetime:
    """An ISO 8601 date or date-time; a date means midnight UTC, a naive time means UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 date or date-time, like 2026-11-21 or "
                           "2026-11-21T08:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class Level(str, enum.Enum):
    """How well a result matches, in words a person reads (a fused score is a rank, not a measure)."""

    STRONG = "strong"
    GOOD = "good"
    WEAK = "weak"


_ORDER = (Level.WEAK, Level.GOOD, Level.STRONG)


@dataclasses.dataclass(frozen=True)
class Relevance:
    """Why a result is shown: its best chunk's cosine similarity to the query (None when no
    vector search found it), whether it holds the query's words, and the level both give."""

    level: Level
    similarity: float | None = None
    keyword: bool = False


def is_match(hit: ChunkHit, floor: float | None) -> bool:
    """Whether a hit is a match: it holds the query's words, or its similarity reaches the floor.
    A hit that says neither (a store that could not tell) is kept: better shown than lost."""
    if floor is None or hit.keyword or hit.similarity is None:
        return True
    return hit.similarity >= floor


def relevance(hit: ChunkHit, terms: Sequence[str], floor: float | None, strong: float | None) -> Relevance | None:
    """The level by meaning (strong from `strong` up, good from halfway between the floor and
    `strong`, else weak) and by words (good when the snippet holds every query term, weak when it
    holds some): the better of the two. None when neither is known (an uncalibrated model)."""
    levels = []
    if hit.similarity is not None and strong is not None:
        good = ((floor if floor is not None else 0.0) + strong) / 2
        levels.append(Level.STRONG if hit.similarity >= strong else Level.GOOD if hit.similarity >= good
                      else Level.WEAK)
    if hit.keyword and terms:
        text = {w for w in _WORD.findall(hit.text.lower())}
        whole = all(any(w.startswith(t) for w in text) for t in terms)  # "keeper" matches "keepers"
        levels.append(Level.GOOD if whole else Level.WEAK)
    if not levels:
        return None
    similarity = round(hit.similarity, 4) if hit.similarity is not None else None
    return Relevance(max(levels, key=_ORDER.index), similarity, hit.keyword)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """One asset found: its best chunk (the snippet, with the query's words at `highlights`),
    that chunk's score (a rank score in hybrid mode: it orders, it does not measure), how
    relevant it is in words (None when the model is not calibrated and no word matched), for a
    recording where in it the chunk starts and ends, and for a document the chunk's location."""

    asset: Asset
    score: float
    snippet: str
    highlights: tuple[tuple[int, int], ...] = ()
    start_s: float | None = None
    end_s: float | None = None
    relevance: Relevance | None = None
    location: Location | None = None  # where in its document the snippet is: page, slide, sheet, section


@dataclasses.dataclass(frozen=True)
class SearchPage:
    """A page of results, best first, and the cursor of the next page (None on the last)."""

    results: list[SearchResult]
    next_cursor: str | None

