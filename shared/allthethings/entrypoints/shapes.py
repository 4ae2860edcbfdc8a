"""The JSON shapes of values the API answers with, where a service returns a typed value."""

from __future__ import annotations

from allthethings.domain.documents import shown_metadata
from allthethings.domain.search import SearchPage, SearchResult


def search_result(result: SearchResult) -> dict:
    """A result as GET /api/search shows it: the asset's public summary, the score, the snippet
    with its highlights, the relevance (when known), for a recording the snippet's start and end
    in seconds, and for a document where the snippet is (`location`: page, slide, sheet, section).
    An asset a source brought names it (`source_id`) with the item's date and author."""
    asset = result.asset
    body = {
        "asset": {"id": asset.id, "url": asset.url, "content_type": asset.content_type,
                  "kind": asset.kind.value if asset.kind else None, "title": asset.title,
                  "created_at": asset.created_at.isoformat(),
                  **({"thumbnail_url": asset.thumbnail_url} if asset.thumbnail_key else {}),
                  **({"metadata": shown_metadata(asset.metadata)} if asset.metadata is not None else {}),
                  **({"source_id": asset.source_id} if asset.source_id else {}),
                  **({"published_at": asset.published_at.isoformat()} if asset.published_at else {}),
                  **({"author": asset.author} if asset.author else {})},
        "score": result.score,
        "snippet": result.snippet,
        "highlights": [list(span) for span in result.highlights],
    }
    if result.relevance is not None:
        body["relevance"] = {"level": result.relevance.level.value, "similarity": result.relevance.similarity,
                             "keyword": result.relevance.keyword}
    if result.start_s is not None:
        body["start_s"], body["end_s"] = result.start_s, result.end_s
    if result.location is not None:
        body["location"] = result.location.to_public()
    return body


def search_page(page: SearchPage) -> dict:
    return {"results": [search_result(r) for r in page.results], "next_cursor": page.next_cursor}
