"""Embedding an asset's chunks: requesting it, attaching the vectors and making the asset
SEARCHABLE, or recording why that failed.

A synchronous backend (the local models, an OpenAI-compatible upstream) embeds all of an
asset's chunks in one call. A backend that answers by webhook (Replicate) is asked in groups of
at most `embedding_group_chunks` chunks, one prediction after another, so that no webhook body
or queued delivery grows with the document (a 768-d vector is about 16.6 KB of JSON). The
asset's `prediction_id` is the current group's prediction and `embedded_chunks` the number of
chunks whose vectors have arrived, which is also where the current group starts. Each finished
group's vectors wait in the staging bucket (`embeddings/{asset_id}/{start}`) until the last
group arrives; then all of them are attached at once and the asset becomes SEARCHABLE.

A second delivery of the same result changes nothing (its group is no longer the current one),
and a result for an asset that is already searchable or failed cannot move it backwards.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence

from allthethings.domain.assets import Asset, Chunk, Status, check_asset_id
from allthethings.domain.chunking import chunk_text
from allthethings.domain.errors import NotFound, UpstreamUnavailable
from allthethings.ports import Extracted, Pending, Section
from allthethings.services import Deps
from allthethings.services.assets import fail_asset

_WAITING = (Status.PROCESSED, Status.GENERATING_EMBEDDINGS)
log = logging.getLogger(__name__)


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


def section_chunks(asset_id: str, extracted: Extracted, deps: Deps) -> list[Chunk]:
    """The chunks of an extracted document: each section chunked on its own (so every chunk has
    one location: its page, slide, sheet or heading path), or the whole text when it has none."""
    window = chunk_window(deps)
    parts = extracted.sections or (Section(extracted.text),)
    chunks: list[Chunk] = []
    for part in parts:
        for text in chunk_text(part.text, deps.tokenizer.spans(part.text), *window):
            chunks.append(Chunk(asset_id=asset_id, index=len(chunks), text=text, location=part.location))
    return chunks


def index_chunks(asset_id: str, title: str | None, chunks: Sequence[Chunk], deps: Deps, webhook_base: str | None,
                 **fields) -> Status:
    """Store a PROCESSING asset's chunks, move it to PROCESSED (with its title and `fields`) and
    request its embeddings; only the caller whose move wins requests them."""
    deps.store.put_chunks(asset_id, chunks)
    if title:  # else the title it has, if any (a feed item's), is kept
        fields["title"] = title
    if not deps.store.move(asset_id, Status.PROCESSED, chunk_count=len(chunks), **fields):
        return deps.store.get(asset_id).status  # a concurrent delivery got there first
    return request_embeddings(asset_id, deps, webhook_base)


def webhook_url(deps: Deps, webhook_base: str | None, kind: str, asset_id: str) -> str:
    base = (deps.settings.public_base_url or webhook_base or "").rstrip("/")
    return f"{base}/webhooks/{kind}/{asset_id}"


def group_key(asset_id: str, start: int) -> str:
    """Where the vectors of the group of chunks from `start` wait for the asset's last group."""
    return f"embeddings/{asset_id}/{start}"


def current_group(asset: Asset) -> int:
    """The index of the first chunk of the group whose prediction the asset waits for (a PROCESSED
    asset, retried or not yet moved on, waits for its first)."""
    if asset.status is not Status.GENERATING_EMBEDDINGS:
        return 0
    return asset.embedded_chunks or 0


def request_embeddings(asset_id: str, deps: Deps, webhook_base: str | None) -> Status:
    """Embed a PROCESSED asset's stored chunks: at once with a synchronous backend, else by
    requesting the first group's prediction."""
    texts = [c.text for c in deps.store.chunks(asset_id)]
    if not deps.embedder.asynchronous:
        vectors = deps.embedder.submit(texts, webhook_url=webhook_url(deps, webhook_base, "embedding", asset_id))
        return complete_embeddings(asset_id, vectors, deps).status
    _request_group(asset_id, texts, 0, deps, webhook_base, waiting=None)
    return deps.store.get(asset_id).status


def _request_group(asset_id: str, texts: Sequence[str], start: int, deps: Deps, webhook_base: str | None,
                   waiting: Asset | None) -> None:
    """Ask for the prediction of the group of chunks from `start` and record it as the one the
    asset waits for, unless the asset moved on meanwhile (a duplicate delivery applied at the
    same time, or the first group's delivery faster than this request's answer): then it is not
    recorded, its delivery is ignored, and it costs only itself. `waiting`: the asset as it was
    when the previous group arrived (None: this is the first group, and the asset is PROCESSED)."""
    group = list(texts[start:start + deps.settings.embedding_group_chunks])
    result = deps.embedder.submit(group, webhook_url=webhook_url(deps, webhook_base, "embedding", asset_id))
    if not isinstance(result, Pending):
        raise TypeError(f"{type(deps.embedder).__name__} is asynchronous but answered without a pending job")
    deps.metrics.count("predictions_created")
    now = deps.store.get(asset_id)
    if now is None:
        return
    if waiting is None:
        unchanged = now.status is Status.PROCESSED
    else:
        unchanged = now.status is waiting.status and now.prediction_id == waiting.prediction_id \
            and current_group(now) == current_group(waiting)
    if unchanged:
        deps.store.move(asset_id, Status.GENERATING_EMBEDDINGS, prediction_id=result.prediction_id,
                        embedded_chunks=start)


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


def apply_embedding_prediction(asset_id: str, prediction: dict, deps: Deps, webhook_base: str | None = None) -> Asset:
    """Apply a completed Replicate prediction of the asset's current group (delivered by webhook,
    or fetched by the sweeper): keep its vectors and request the next group, or, for the last
    group, attach all of them. `webhook_base`: where the next group's webhook goes."""
    asset = _load(asset_id, deps)
    if asset.status not in _WAITING:
        return asset
    if asset.prediction_id and prediction.get("id") != asset.prediction_id:
        return asset  # a stale prediction for this asset: the current one decides
    status = prediction.get("status")
    if status == "succeeded":
        try:
            vectors = deps.embedder.vectors_from_output(prediction.get("output"))
        except ValueError as exc:
            return fail_embeddings(asset_id, str(exc), deps)
        return _group_arrived(asset, prediction, vectors, deps, webhook_base)
    if status in ("failed", "canceled"):
        reason = prediction.get("error") or "no reason given"
        return fail_embeddings(asset_id, f"embedding prediction {status}: {reason}", deps)
    return asset


def _group_arrived(asset: Asset, prediction: dict, vectors: list[list[float]], deps: Deps,
                   webhook_base: str | None) -> Asset:
    chunks = deps.store.chunks(asset.id)
    start = current_group(asset)
    # The group is what the prediction embedded (Replicate echoes its input), so a change of the
    # group size between two groups of one asset changes nothing; else the configured size.
    texts = deps.embedder.texts_of(prediction)
    size = len(texts) if texts else min(deps.settings.embedding_group_chunks, len(chunks) - start)
    problem = None
    if texts and texts != [c.text for c in chunks[start:start + size]]:
        problem = f"the prediction embedded other texts than chunks {start}-{start + size - 1}"
    elif len(vectors) != size or start + size > len(chunks):
        problem = f"the model returned {len(vectors)} vectors for the {size} chunks from chunk {start}"
    elif any(len(v) != deps.embedder.dimensions for v in vectors):
        problem = f"the model returned vectors that are not {deps.embedder.dimensions}-dimensional"
    if problem:
        return fail_embeddings(asset.id, problem, deps)
    if start + size < len(chunks):
        body = json.dumps({"start": start, "vectors": vectors}, separators=(",", ":")).encode()
        deps.blobs.put(group_key(asset.id, start), io.BytesIO(body), "application/json")
        _request_group(asset.id, [c.text for c in chunks], start + size, deps, webhook_base,
                       waiting=asset)
        return _load(asset.id, deps)
    try:
        earlier, keys = _kept_vectors(asset.id, start, deps)
    except NotFound as exc:
        return fail_embeddings(asset.id, f"the vectors of earlier chunks were lost ({exc}); retry the asset", deps)
    done = complete_embeddings(asset.id, earlier + vectors, deps)
    if done.status is Status.SEARCHABLE:
        for key in keys:  # attached now; the bucket's lifecycle is the backstop for a failed delete
            try:
                deps.blobs.delete(key)
            except (NotFound, UpstreamUnavailable) as exc:
                log.warning("could not delete %s (%s); the bucket's lifecycle will", key, exc)
    return done


def _kept_vectors(asset_id: str, end: int, deps: Deps) -> tuple[list[list[float]], list[str]]:
    """The kept vectors of the chunks before `end`, and their keys, read group by group: each
    group's length says where the next one starts. NotFound if one is missing or unreadable."""
    vectors: list[list[float]] = []
    keys: list[str] = []
    while len(vectors) < end:
        key = group_key(asset_id, len(vectors))
        try:
            group = json.loads(deps.blobs.get(key))["vectors"]
        except NotFound:
            raise NotFound(f"{key} is not in the staging bucket") from None
        except (ValueError, KeyError, TypeError):
            raise NotFound(f"{key} is not a group of vectors") from None
        if not isinstance(group, list) or not group:
            raise NotFound(f"{key} holds no vectors")
        vectors.extend(group)
        keys.append(key)
    return vectors, keys
