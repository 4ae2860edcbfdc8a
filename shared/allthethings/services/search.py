"""Searching by meaning: embed the query, find the nearest chunks, and answer one result per asset.

Each asset is scored by its best chunk, whose text is the snippet.
"""

from __future__ import annotations

from allthethings.domain.errors import InvalidInput
from allthethings.services import Deps

MAX_QUERY_CHARS = 1000
MAX_LIMIT = 50
# Chunks fetched per wanted result: an asset may own several of the nearest chunks. When one
# long document owns all of them, the search widens until `limit` assets are found or the
# store has nothing more to give.
CHUNKS_PER_RESULT = 8
MAX_CHUNKS = 4096


def search(query: str | None, limit: int, deps: Deps) -> list[dict]:
    q = (query or "").strip()
    if not q:
        raise InvalidInput("q must be a non-empty search query")
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q must be at most {MAX_QUERY_CHARS} characters")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIMIT}")

    vector = deps.embedder.embed([q])[0]
    k = limit * CHUNKS_PER_RESULT
    while True:
        hits = deps.store.search(vector, k)
        best = {}
        for hit in hits:  # best first, so the first hit of an asset is its best chunk
            if hit.asset_id not in best:
                best[hit.asset_id] = hit
        if len(best) >= limit or len(hits) < k or k >= MAX_CHUNKS:
            break
        k = min(k * 4, MAX_CHUNKS)
    results = []
    for hit in list(best.values())[:limit]:
        asset = deps.store.get(hit.asset_id)
        if asset is None:
            continue
        result = {
            "asset": {"id": asset.id, "url": asset.url, "content_type": asset.content_type,
                      "kind": asset.kind.value if asset.kind else None, "title": asset.title},
            "score": round(hit.score, 6),
            "snippet": hit.text,
        }
        if hit.start_s is not None:
            result["start_s"], result["end_s"] = hit.start_s, hit.end_s
        results.append(result)
    return results
