"""Embedding an asset's chunks: requesting it, attaching the vectors and making the asset
SEARCHABLE, or recording why that failed.

The request is one call for all of an asset's chunks (one prediction on Replicate). The
result arrives at once from a local model or later by webhook; a second delivery of the
same result changes nothing, and a result for an asset that is already searchable or
failed cannot move it backwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from allthethings.domain.assets import Asset, Status, check_asset_id
from allthethings.domain.errors import NotFound
from allthethings.ports import Pending
from allthethings.services import Deps
from allthethings.services.assets import fail_asset

_WAITING = (Status.PROCESSED, Status.GENERATING_EMBEDDINGS)


def _load(asset_id: str, deps: Deps) -> Asset:
    asset = deps.store.get(check_asset_id(asset_id))
    if asset is None:
        raise NotFound(f"no asset with id {asset_id}")
    return asset


def chunk_window(deps: Deps) -> tuple[int, int]:
    """Chunk size and overlap in tokens: the setting, capped so a chunk always fits the model
    (two positions of its window hold the [CLS]/[SEP] special tokens)."""
    max_tokens = min(deps.settings.chunk_tokens, deps.embedder.max_tokens - 2)
    return max_tokens, min(deps.settings.chunk_overlap, max_tokens // 2 - 1)


def webhook_url(deps: Deps, webhook_base: str | None, kind: str, asset_id: str) -> str:
    base = (deps.settings.public_base_url or webhook_base or "").rstrip("/")
    return f"{base}/webhooks/{kind}/{asset_id}"


def request_embeddings(asset_id: str, deps: Deps, webhook_base: str | None) -> Status:
    """Embed a PROCESSED asset's stored chunks (one request for all of them)."""
    texts = [c.text for c in deps.store.chunks(asset_id)]
    result = deps.embedder.submit(texts, webhook_url=webhook_url(deps, webhook_base, "embedding", asset_id))
    if isinstance(result, Pending):
        deps.metrics.count("predictions_created")
        deps.store.move(asset_id, Status.GENERATING_EMBEDDINGS, prediction_id=result.prediction_id)
        return deps.store.get(asset_id).status
    return complete_embeddings(asset_id, result, deps).status


def complete_embeddings(asset_id: str, vectors: Sequence[Sequence[float]], deps: Deps) -> Asset:
    asset = _load(asset_id, deps)
    if asset.status not in _WAITING:
        return asset
    problem = None
    if len(vectors) != asset.chunk_count:
        problem = f"the model returned {len(vectors)} vectors for {asset.chunk_count} chunks"
    elif any(len(v) != deps.embedder.dimensions for v in vectors):
        problem = f"the model returned vectors that are not {deps.embedder.dimensions}-dimensional"
    if problem:
        return fail_embeddings(asset_id, problem, deps)
    if deps.store.make_searchable(asset_id, vectors):
        deps.metrics.count("assets_searchable")
    return _load(asset_id, deps)


def fail_embeddings(asset_id: str, reason: str, deps: Deps) -> Asset:
    fail_asset(asset_id, Status.EMBEDDINGS_ERROR, reason, deps)
    return _load(asset_id, deps)


def apply_embedding_prediction(asset_id: str, prediction: dict, deps: Deps) -> Asset:
    """Apply a completed Replicate prediction delivered by webhook."""
    asset = _load(asset_id, deps)
    if asset.prediction_id and prediction.get("id") != asset.prediction_id:
        return asset  # a stale prediction for this asset: the current one decides
    status = prediction.get("status")
    if status == "succeeded":
        try:
            vectors = deps.embedder.vectors_from_output(prediction.get("output"))
        except ValueError as exc:
            return fail_embeddings(asset_id, str(exc), deps)
        return complete_embeddings(asset_id, vectors, deps)
    if status in ("failed", "canceled"):
        reason = prediction.get("error") or "no reason given"
        return fail_embeddings(asset_id, f"embedding prediction {status}: {reason}", deps)
    return asset
