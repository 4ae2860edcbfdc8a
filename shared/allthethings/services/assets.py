"""Reading assets (one by id with its first chunks, or a page of them newest first, filtered;
an image's thumbnail), and failing one with its reason."""

from __future__ import annotations

import dataclasses

from allthethings.domain.assets import Asset, Chunk, Status, check_asset_id, without_paths
from allthethings.domain.errors import ExtractionFailed, InvalidInput, NotFound
from allthethings.domain.listing import AssetFilter
from allthethings.services import Deps

MAX_PAGE = 100
SHOWN_CHUNKS = 20


@dataclasses.dataclass(frozen=True)
class AssetView:
    """An asset with the text of its first chunks (the rest are counted by `asset.chunk_count`)."""

    asset: Asset
    chunks: list[Chunk]


def get_asset(asset_id: str, deps: Deps) -> Asset:
    asset = deps.store.get(check_asset_id(asset_id))
    if asset is None:
        raise NotFound(f"no asset with id {asset_id}")
    return asset


THUMBNAIL_URL_S = 3600


def staged_body(asset: Asset, deps: Deps) -> bytes:
    """The asset's staged bytes; ExtractionFailed (the asset's error, retryable) when there are none."""
    if not asset.staged_key:
        raise ExtractionFailed("the asset has no staged body")
    try:
        return deps.blobs.get(asset.staged_key)
    except NotFound:
        raise ExtractionFailed("the staged body is gone (staged bodies expire): delete the asset and submit "
                               "the URL again") from None


def thumbnail_link(asset_id: str, deps: Deps) -> str:
    """A short-lived URL of the asset's staged thumbnail (NotFound: it has none)."""
    asset = get_asset(asset_id, deps)
    if not asset.thumbnail_key:
        raise NotFound(f"asset {asset.id} has no thumbnail (only images have one, once processed)")
    return deps.blobs.presigned_url(asset.thumbnail_key, THUMBNAIL_URL_S)


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:  # "²".isdigit() too
        raise InvalidInput(f"limit must be a whole number from 1 to {maximum}")
    return int(raw)


def view_asset(asset_id: str, deps: Deps, chunks: int = SHOWN_CHUNKS) -> AssetView:
    asset = get_asset(asset_id, deps)
    return AssetView(asset, deps.store.chunks(asset.id, chunks))


def list_assets(limit: int, cursor: str | None, deps: Deps,
                listing_filter: AssetFilter | None = None) -> tuple[list[Asset], str | None]:
    return deps.store.list(limit, cursor or None, listing_filter)


def fail_asset(asset_id: str, status: Status, reason: str, deps: Deps) -> bool:
    """Move the asset to the error `status` with `reason` (what the user reads, and can retry);
    whether it moved (an asset that has moved on stays where it is). A server's file path in the
    reason (a model's decoder names its temporary file) is not the user's business."""
    moved = deps.store.move(asset_id, status, error=without_paths(reason)[:1000])
    if moved:
        deps.metrics.count("assets_failed")
    return moved


def due_prediction(asset_id: str, prediction: dict, deps: Deps, step: str) -> tuple[Asset, bool]:
    """Whether a delivered prediction of the processing step (a transcription, an image reading)
    is to be applied: (the asset, True) when it succeeded and is the asset's current one. A late,
    repeated, stale or unfinished delivery changes nothing; a failed or canceled one fails the
    asset with the model's reason (`step` names it: "transcription {status}: reason")."""
    asset = get_asset(asset_id, deps)
    if asset.status is not Status.PROCESSING:
        return asset, False  # a repeated or late delivery: the asset has moved on
    if asset.prediction_id and prediction.get("id") != asset.prediction_id:
        return asset, False  # a stale prediction: the current one decides
    status = prediction.get("status")
    if status in ("failed", "canceled"):
        reason = prediction.get("error") or "no reason given"
        fail_asset(asset_id, Status.PROCESSING_ERROR, f"{step} {status}: {reason}", deps)
        return deps.store.get(asset_id), False
    return asset, status == "succeeded"
