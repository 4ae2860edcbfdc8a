"""Searching: by meaning (vector), by words (keyword, BM25), or both fused by reciprocal rank
(hybrid, the default); filtered before ranking; one result per asset, scored by its best chunk,
which is the snippet, with the query's words marked and, for audio and video, its start and end
(the start moved to where the query's words are said in it, when they are).

A query finds something only if something matches it: a chunk that holds its words, or one whose
cosine similarity to it reaches the model's similarity floor (calibrated per model,
SEARCH_MIN_SIMILARITY overrides it). So a query about nothing the index holds finds nothing,
instead of the nearest noise: every vector search has nearest neighbours, however far. When
something matches, the ranking is the stores' as before, weaker neighbours included (each
result says how strong a match it is): the floor decides whether there is an answer, not its
order, so it costs a query that has one nothing of what it used to find.

Pages are asked for with an opaque cursor. A keyword search costs no embedding; a repeated
query's embedding comes from a cache. A hybrid search embeds the query while the store runs its
keyword half, so the embedding's time is not added to the full-text search's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime

from allthethings.domain.assets import Asset, ChunkHit, Kind
from allthethings.domain.embedding import CATALOG
from allthethings.domain.errors import InvalidInput
from allthethings.domain.search import (
    Mode,
    SearchFilter,
    SearchPage,
    SearchResult,
    best_per_asset,
    fingerprint,
    highlights,
    is_match,
    page_cursor,
    page_offset,
    parse_instant,
    passage_start,
    query_terms,
    relevance,
)
from allthethings.domain.sources import check_source_id
from allthethings.ports import LazyVector, QueryVector
from allthethings.services import Deps
from allthethings.services.assets import parse_limit

MAX_QUERY_CHARS = 1000
MAX_LIMIT = 50
MAX_HOST_CHARS = 253
# Chunks fetched per wanted result: an asset may own several of the nearest chunks. When a few
# long documents own all of them, the search widens until it has the assets it needs or the
# store has nothing more to give.
CHUNKS_PER_RESULT = 8
MAX_CHUNKS = 4096


@dataclasses.dataclass(frozen=True)
class SearchRequest:
    query: str
    mode: Mode = Mode.HYBRID
    search_filter: SearchFilter = SearchFilter()
    limit: int = 10
    cursor: str | None = None


def parse_request(params: Mapping[str, str], *, query_param: str = "q") -> SearchRequest:
    """A search request from query-string parameters; InvalidInput names the parameter at fault."""
    query = (params.get(query_param) or "").strip()
    if not query:
        raise InvalidInput(f"{query_param} must be a non-empty search query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"{query_param} must be at most {MAX_QUERY_CHARS} characters")
    try:
        mode = Mode((params.get("mode") or Mode.HYBRID.value).strip().lower())
    except ValueError:
        raise InvalidInput("mode must be one of vector, keyword, hybrid") from None
    kinds: list[Kind] = []
    for raw in filter(None, (part.strip().lower() for part in (params.get("kind") or "").split(","))):
        try:
            kinds.append(Kind(raw))
        except ValueError:
            raise InvalidInput(f"kind must be among {', '.join(k.value for k in Kind)} (comma-separated)") from None
    host = (params.get("host") or "").strip().lower() or None
    if host and (len(host) > MAX_HOST_CHARS or not all(c.isalnum() or c in ".-:[]" for c in host)):
        raise InvalidInput("host must be a host name, like en.wikipedia.org")
    after, before = _window(params, "after", "before")
    published_after, published_before = _window(params, "published_after", "published_before")
    source = (params.get("source") or "").strip() or None
    if source:
        check_source_id(source)
    limit = parse_limit((params.get("limit") or "").strip(), 10, MAX_LIMIT)
    return SearchRequest(query=query, mode=mode, limit=limit, cursor=params.get("cursor") or None,
                         search_filter=SearchFilter(kinds=tuple(dict.fromkeys(kinds)), host=host, after=after,
                                                    before=before, source=source, published_after=published_after,
                                                    published_before=published_before))


def _window(params: Mapping[str, str], start: str, end: str) -> tuple[datetime | None, datetime | None]:
    """The instants named `start` (at or after) and `end` (strictly before), each optional."""
    low = parse_instant(params[start], start) if params.get(start) else None
    high = parse_instant(params[end], end) if params.get(end) else None
    if low and high and low >= high:
        raise InvalidInput(f"{start} must be earlier than {end}")
    return low, high


def search(request: SearchRequest, deps: Deps) -> SearchPage:
    """A page of results, best first, and the cursor of the next page (None on the last)."""
    started = time.perf_counter()
    try:
        return _search(request, deps)
    finally:
        deps.metrics.latency("search_latency", time.perf_counter() - started)


def _search(request: SearchRequest, deps: Deps) -> SearchPage:
    key = fingerprint(request.query, request.mode, request.search_filter)
    offset = page_offset(request.cursor, key)
    want = offset + request.limit + 1  # one more than the page, to know whether another follows
    vector = _query_vector(request, deps)
    floor, strong = similarity_scale(deps)
    k = min(want * CHUNKS_PER_RESULT, MAX_CHUNKS)
    while True:
        hits = _ranked_chunks(request, vector, k, deps)
        if not any(is_match(hit, floor) for hit in hits):
            # The best of each list is in `hits`: when none of them matches, nothing further down
            # can (a vector list is best first, and any keyword hit is a match).
            groups = []
            break
        groups = best_per_asset(hits)
        if len(groups) >= want or len(hits) < k or k >= MAX_CHUNKS:
            break
        k = min(k * 4, MAX_CHUNKS)
    page = groups[offset:offset + request.limit]
    terms = query_terms(request.query)
    assets = deps.store.get_many([hit.asset_id for hit in page])  # one read for the page
    results = [_result(assets[hit.asset_id], hit, terms, floor, strong)
               for hit in page if hit.asset_id in assets]  # an asset deleted since the search is left out
    more = len(groups) > offset + request.limit
    return SearchPage(results, page_cursor(key, offset + request.limit) if more else None)


def _result(asset: Asset, hit: ChunkHit, terms: list[str], floor: float | None, strong: float | None) -> SearchResult:
    marks = tuple(highlights(hit.text, terms))
    start_s = hit.start_s
    if hit.start_s is not None and hit.end_s is not None:  # a recording: start where the words are said
        start_s = passage_start(hit.text, hit.start_s, hit.end_s, marks)
    return SearchResult(asset=asset, score=round(hit.score, 6), snippet=hit.text, highlights=marks,
                        start_s=start_s, end_s=hit.end_s, relevance=relevance(hit, terms, floor, strong),
                        location=hit.location)


def similarity_scale(deps: Deps) -> tuple[float | None, float | None]:
    """(floor, strong similarity) of the model that embeds the queries: SEARCH_MIN_SIMILARITY or
    the model's calibrated floor (-1 or an uncalibrated model: no floor), and its strong level."""
    spec = CATALOG.get(deps.embedder.model)
    floor = deps.settings.search_min_similarity
    if floor is None:
        floor = spec.similarity_floor if spec else None
    return (None if floor is not None and floor <= -1 else floor), (spec.strong_similarity if spec else None)


def _query_vector(request: SearchRequest, deps: Deps) -> QueryVector | None:
    """The query's vector (vector mode), the way to compute it (hybrid: the store runs its keyword
    half meanwhile), or None (keyword)."""
    if request.mode is Mode.KEYWORD:
        return None
    if request.mode is Mode.VECTOR:
        return deps.embedder.embed([request.query])[0]
    return LazyVector(lambda: deps.embedder.embed([request.query])[0])


def _ranked_chunks(request: SearchRequest, vector: QueryVector | None, k: int, deps: Deps):
    if request.mode is Mode.VECTOR:
        return deps.store.search(vector, k, request.search_filter)
    if request.mode is Mode.KEYWORD:
        return deps.store.keyword_search(request.query, k, request.search_filter)
    return deps.store.hybrid_search(vector, request.query, k, request.search_filter)
