"""Ingesting documents (text without a URL) and embedding them in batches.

Ingestion chunks each document, stores it as a PROCESSED asset with its chunks, and queues
one message for the whole request; the processing step then embeds every chunk of the batch
in one model call (or, with a backend that answers by webhook, one prediction per group of at
most `embedding_group_chunks` chunks of each document, never more chunks in one prediction).
Sending a document again is idempotent on its id: unchanged (the same title, text and
metadata) does nothing; changed replaces the indexed version; failed is indexed again.
Either every new record of a request is stored and queued, or (the queue refusing) none is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import timedelta

from allthethings.domain.assets import Asset, Chunk, Kind, Status, new_asset_id, now
from allthethings.domain.chunking import chunk_text
from allthethings.domain.documents import Document, parse_batch
from allthethings.domain.tasks import EmbedDocuments, to_message
from allthethings.services import Deps
from allthethings.services.embeddings import chunk_window, complete_embeddings, request_embeddings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Ingested:
    document_id: str
    asset: Asset
    result: str  # created | updated | unchanged

    def to_public(self) -> dict:
        return {"id": self.document_id, "asset_id": self.asset.id, "status": self.asset.status.value,
                "result": self.result}


def ingest_documents(body: object, deps: Deps, *, webhook_base: str | None = None) -> list[Ingested]:
    settings = deps.settings
    documents = parse_batch(body, settings.documents_max_per_request, settings.document_max_chars)
    results, created = [], []
    try:
        for doc in documents:
            outcome = _store(doc, deps)
            results.append(outcome)
            if outcome.result != "unchanged":
                created.append(outcome.asset.id)
        if created:
            deps.queue.send(to_message(EmbedDocuments(tuple(created), webhook_base)))
    except BaseException:
        for asset_id in created:
            deps.store.delete(asset_id)
        raise
    deps.metrics.count("assets_submitted", len(created))
    return results


# A document still PROCESSING this long after it was stored was left by a request that died
# before its chunks were in: sending it again replaces it.
ABANDONED_AFTER = timedelta(minutes=5)


def _store(doc: Document, deps: Deps) -> Ingested:
    existing = deps.store.get_by_url(doc.url)
    if existing is not None and existing.sha256 == doc.digest and not existing.status.is_error \
            and not (existing.status is Status.PROCESSING and now() - existing.updated_at > ABANDONED_AFTER):
        return Ingested(doc.id, existing, "unchanged")
    if existing is not None:
        deps.store.delete(existing.id)  # a new version, or another try after a failure
    stamp = now()
    body = doc.text.encode("utf-8")
    # Stored as PROCESSING until its chunks are in: a crash in between leaves an asset that the
    # sweeper fails visibly (it has no staged body to process), never a PROCESSED one without chunks.
    asset = Asset(id=new_asset_id(), url=doc.url, status=Status.PROCESSING, created_at=stamp, updated_at=stamp,
                  content_type="text/plain; charset=utf-8", kind=Kind.TEXT, title=doc.title,
                  size_bytes=len(body), sha256=doc.digest, metadata=doc.metadata)
    stored = deps.store.add(asset)
    if stored.id != asset.id:  # the same document sent concurrently: that request's record stands
        return Ingested(doc.id, stored, "unchanged")
    try:
        pieces = chunk_text(doc.text, deps.tokenizer.spans(doc.text), *chunk_window(deps))
        chunks = [Chunk(asset.id, i, piece) for i, piece in enumerate(pieces)]
        deps.store.put_chunks(asset.id, chunks)
        deps.store.move(asset.id, Status.PROCESSED, chunk_count=len(chunks))
    except BaseException:
        deps.store.delete(asset.id)
        raise
    asset.status, asset.chunk_count = Status.PROCESSED, len(chunks)
    return Ingested(doc.id, asset, "created" if existing is None else "updated")


def embed_documents(asset_ids: Sequence[str], deps: Deps, *, webhook_base: str | None = None) -> dict[str, Status]:
    """Embed the PROCESSED assets among `asset_ids`: all their chunks in one call of a synchronous
    backend, or each in groups of predictions with a webhook backend. Raises (to be retried) if the model
    fails; assets that moved on or are gone are skipped. Returns each asset's status."""
    statuses: dict[str, Status] = {}
    waiting = []
    for asset_id in asset_ids:
        asset = deps.store.get(asset_id)
        if asset is None:
            log.warning("document asset %s no longer exists; skipping it", asset_id)
        elif asset.status is Status.PROCESSED:
            waiting.append(asset)
        else:
            statuses[asset_id] = asset.status
    if deps.embedder.asynchronous:
        for asset in waiting:
            statuses[asset.id] = request_embeddings(asset.id, deps, webhook_base)
        return statuses
    texts = [[c.text for c in deps.store.chunks(asset.id)] for asset in waiting]
    vectors = deps.embedder.embed([t for group in texts for t in group]) if waiting else []
    start = 0
    for asset, group in zip(waiting, texts, strict=True):
        statuses[asset.id] = complete_embeddings(asset.id, vectors[start:start + len(group)], deps).status
        start += len(group)
    return statuses
