"""Processing a submitted asset: extract its text (or request its transcription), chunk it,
store the chunks, request embeddings.

Resumable and idempotent, because SQS delivers at least once: a message for an
asset already past a step skips that step, and a crash between steps is picked up
from the stored status on the next delivery. Permanent problems (no text in the
document) end in PROCESSING_ERROR; transient ones raise, so the message is retried
and, after the queue's maxReceiveCount, parked in the dead-letter queue.
"""

from __future__ import annotations

import logging

from allthethings.domain.assets import Chunk, Kind, Status
from allthethings.domain.chunking import chunk_text
from allthethings.domain.documents import SCHEME as DOCUMENT_SCHEME
from allthethings.domain.errors import ExtractionFailed, NotFound
from allthethings.services import Deps
from allthethings.services.assets import fail_asset
from allthethings.services.embeddings import chunk_window, request_embeddings
from allthethings.services.transcription import request_transcription

log = logging.getLogger(__name__)


def process_asset(asset_id: str, deps: Deps, *, webhook_base: str | None = None) -> Status | None:
    """Advance the asset as far as this step can take it; return its status (None if it is gone)."""
    asset = deps.store.get(asset_id)
    if asset is None:
        log.warning("asset %s no longer exists; dropping its processing message", asset_id)
        return None

    if asset.status in (Status.SUBMITTED, Status.PROCESSING) and asset.kind in (Kind.AUDIO, Kind.VIDEO):
        return request_transcription(asset, deps, webhook_base)

    if asset.status in (Status.SUBMITTED, Status.PROCESSING):
        deps.store.move(asset_id, Status.PROCESSING)
        try:
            chunks = _extract_chunks(asset_id, asset.staged_key, asset.content_type, asset.url, deps)
        except ExtractionFailed as exc:
            fail_asset(asset_id, Status.PROCESSING_ERROR, exc.message, deps)
            return Status.PROCESSING_ERROR
        title, chunks = chunks
        deps.store.put_chunks(asset_id, chunks)
        if not deps.store.move(asset_id, Status.PROCESSED, title=title, chunk_count=len(chunks)):
            return deps.store.get(asset_id).status  # a concurrent delivery got there first
        asset.status = Status.PROCESSED

    if asset.status is Status.PROCESSED:
        return request_embeddings(asset_id, deps, webhook_base)
    return asset.status


def _extract_chunks(asset_id: str, key: str | None, content_type: str | None, url: str,
                    deps: Deps) -> tuple[str | None, list[Chunk]]:
    if url.startswith(DOCUMENT_SCHEME):
        raise ExtractionFailed("the request that sent this document failed before its chunks were stored: "
                               "send the document again")
    if not key or not content_type:
        raise ExtractionFailed("the asset has no staged body")
    try:
        body = deps.blobs.get(key)
    except NotFound:
        raise ExtractionFailed("the staged body is gone (staged bodies expire): delete the asset and submit "
                               "the URL again") from None
    extracted = deps.extractor.extract(body, content_type, url)
    texts = chunk_text(extracted.text, deps.tokenizer.spans(extracted.text), *chunk_window(deps))
    if not texts:
        raise ExtractionFailed("the document holds no indexable text")
    return extracted.title, [Chunk(asset_id=asset_id, index=i, text=t) for i, t in enumerate(texts)]
