"""An asset's life after submission: retrying a failed one from the step that failed, deleting one.

A retry moves the asset back to where the failed step starts (SUBMITTED: extract or
transcribe again; PROCESSED: embed the stored chunks again), clears the error, and queues it
like a new submission. A failed processing starts from a fresh fetch of the URL (the staged
body may be gone, and the bytes may have been the problem), except a recording whose staged
body is still there (the model failed, not the bytes); `refetch` asks for a fresh fetch
always. Only the request that makes the move queues, so two retries at once cost one.
Deleting removes the record and its chunks (search stops finding it at once) and then the
staged object; messages and webhooks still in flight for it find nothing and are dropped.
"""

from __future__ import annotations

from allthethings.domain.assets import RETRY_FROM, Asset, Kind, Status
from allthethings.domain.documents import SCHEME as DOCUMENT_SCHEME
from allthethings.domain.errors import Conflict
from allthethings.domain.tasks import ProcessAsset, to_message
from allthethings.services import Deps
from allthethings.services.assets import get_asset
from allthethings.services.images import model_copy_key
from allthethings.services.submit_asset import refetch_asset


def retry_asset(asset_id: str, deps: Deps, *, webhook_base: str | None = None, refetch: bool = False) -> Asset:
    """Restart a failed asset from the step that failed; from a fresh fetch of its URL when
    asked (`refetch`), or when a failed processing has no staged body to go back to or its
    bytes were the problem (anything but a recording whose transcription failed)."""
    asset = get_asset(asset_id, deps)
    restart = RETRY_FROM.get(asset.status)
    if restart is None:
        raise Conflict(f"only a failed asset can be retried; this one is {asset.status.value}")
    if asset.url.startswith(DOCUMENT_SCHEME) and not asset.staged_key and restart is Status.SUBMITTED:
        raise Conflict("this document's request failed before its chunks were stored: send the document again")
    if refetch or (restart is Status.SUBMITTED and not _model_failed_on_kept_bytes(asset, deps)):
        return refetch_asset(asset, deps, webhook_base=webhook_base)
    if deps.store.move(asset.id, restart, error=None, prediction_id=None):
        try:
            deps.queue.send(to_message(ProcessAsset(asset.id, webhook_base)))
        except BaseException:
            deps.store.move(asset.id, asset.status, error=asset.error)  # back to failed, with its reason
            raise
    return get_asset(asset.id, deps)


def _model_failed_on_kept_bytes(asset: Asset, deps: Deps) -> bool:
    """A recording or image whose staged body is still there failed in the model, not in its
    bytes: transcribing or reading it again needs no new download."""
    return (asset.kind in (Kind.AUDIO, Kind.VIDEO, Kind.IMAGE) and bool(asset.staged_key)
            and deps.blobs.exists(asset.staged_key))


def delete_asset(asset_id: str, deps: Deps) -> None:
    asset = get_asset(asset_id, deps)
    deps.store.delete(asset.id)
    copy = model_copy_key(asset.id) if asset.kind is Kind.IMAGE else None
    for key in (asset.staged_key, asset.thumbnail_key, copy):
        if key:
            deps.blobs.delete(key)
