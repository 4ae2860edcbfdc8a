"""An asset's life after submission: retrying a failed one from the step that failed, deleting one.

A retry moves the asset back to where the failed step starts (SUBMITTED: extract or
transcribe the staged bytes again; PROCESSED: embed the stored chunks again), clears the
error, and queues it like a new submission. Only the request that makes the move queues,
so two retries at once cost one. Deleting removes the record and its chunks (search stops
finding it at once) and then the staged object; messages and webhooks still in flight for
it find nothing and are dropped.
"""

from __future__ import annotations

from allthethings.domain.assets import RETRY_FROM, Asset, Status
from allthethings.domain.errors import Conflict
from allthethings.domain.tasks import ProcessAsset, to_message
from allthethings.services import Deps
from allthethings.services.assets import get_asset


def retry_asset(asset_id: str, deps: Deps, *, webhook_base: str | None = None) -> Asset:
    asset = get_asset(asset_id, deps)
    restart = RETRY_FROM.get(asset.status)
    if restart is None:
        raise Conflict(f"only a failed asset can be retried; this one is {asset.status.value}")
    if restart is Status.SUBMITTED and not asset.staged_key:
        raise Conflict("this asset has no staged body to process again; delete it and submit the URL again")
    if deps.store.move(asset.id, restart, error=None, prediction_id=None):
        try:
            deps.queue.send(to_message(ProcessAsset(asset.id, webhook_base)))
        except BaseException:
            deps.store.move(asset.id, asset.status, error=asset.error)  # back to failed, with its reason
            raise
    return get_asset(asset.id, deps)


def delete_asset(asset_id: str, deps: Deps) -> None:
    asset = get_asset(asset_id, deps)
    deps.store.delete(asset.id)
    if asset.staged_key:
        deps.blobs.delete(asset.staged_key)
