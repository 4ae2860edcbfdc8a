"""Submitting a URL: validate, de-duplicate, fetch, decide the type, stage the bytes, queue the work.

Either the asset exists afterwards with its bytes staged and a processing message
queued, or nothing does: a failure part-way undoes what was done. A URL already known
is answered from the store without a fetch; a body already indexed behind another URL
(the same SHA-256) becomes a searchable copy of that asset, with no prediction paid twice.
"""

from __future__ import annotations

from allthethings.domain.assets import Asset, Status, new_asset_id, normalise_url
from allthethings.domain.content import decide
from allthethings.domain.documents import SCHEME as DOCUMENT_SCHEME
from allthethings.domain.errors import Conflict, ExtractionFailed
from allthethings.domain.tasks import ProcessAsset, to_message
from allthethings.services import Deps


def submit_asset(raw_url: object, deps: Deps, *, webhook_base: str | None = None) -> tuple[Asset, bool]:
    """Return the asset and whether work was queued for it now: a new asset, or a failed one
    whose URL is sent again, which is fetched again (False: the URL is known and not failed)."""
    url = normalise_url(raw_url)
    existing = deps.store.get_by_url(url)
    if existing is not None and existing.status.is_error and not url.startswith(DOCUMENT_SCHEME):
        return refetch_asset(existing, deps, webhook_base=webhook_base), True
    if existing is not None:
        return existing, False

    fetched = deps.fetcher.fetch(url, deps.settings.size_limits)
    asset_id = new_asset_id()
    key = f"staged/{asset_id}"
    with fetched.body:
        if fetched.size == 0:
            raise ExtractionFailed("the URL returned an empty body")
        decision = decide(fetched.head, fetched.declared_type, fetched.final_url)
        twin = deps.store.find_by_digest(fetched.sha256)
        if twin is not None and twin.kind is decision.kind:
            copy = twin.copied_to(url, size_bytes=fetched.size, content_type=decision.content_type)
            stored = deps.store.add_copy(copy, twin.id)
            if stored is not None:
                if stored.id == copy.id:
                    deps.metrics.count("assets_submitted")
                    deps.metrics.count("assets_searchable")
                return stored, stored.id == copy.id
        deps.blobs.put(key, fetched.body, decision.content_type)

    asset = Asset.new(url, content_type=decision.content_type, kind=decision.kind, staged_key=key,
                      size_bytes=fetched.size, asset_id=asset_id, sha256=fetched.sha256)
    try:
        stored = deps.store.add(asset)
    except BaseException:
        deps.blobs.delete(key)
        raise
    if stored.id != asset.id:  # an identical submission won the race
        deps.blobs.delete(key)
        return stored, False
    try:
        deps.queue.send(to_message(ProcessAsset(asset.id, webhook_base)))
    except BaseException:
        deps.store.delete(asset.id)
        deps.blobs.delete(key)
        raise
    deps.metrics.count("assets_submitted")
    return asset, True


def refetch_asset(asset: Asset, deps: Deps, *, webhook_base: str | None = None) -> Asset:
    """Fetch a failed asset's URL again, stage the new body and start it over from SUBMITTED:
    the way back when its staged body is gone (expired, or a local stack restarted) or when
    the origin's content was the problem. Refused for a document (it has no URL)."""
    if asset.url.startswith(DOCUMENT_SCHEME):
        raise Conflict("a document has no URL to fetch again: send the document again")
    if not asset.status.is_error:
        raise Conflict(f"only a failed asset can be fetched again; this one is {asset.status.value}")
    fetched = deps.fetcher.fetch(asset.url, deps.settings.size_limits)
    key = f"staged/{asset.id}"
    with fetched.body:
        if fetched.size == 0:
            raise ExtractionFailed("the URL returned an empty body")
        decision = decide(fetched.head, fetched.declared_type, fetched.final_url)
        deps.blobs.put(key, fetched.body, decision.content_type)
    if deps.store.move(asset.id, Status.SUBMITTED, error=None, prediction_id=None, staged_key=key,
                       content_type=decision.content_type, kind=decision.kind, size_bytes=fetched.size,
                       sha256=fetched.sha256):
        try:
            deps.queue.send(to_message(ProcessAsset(asset.id, webhook_base)))
        except BaseException:
            deps.store.move(asset.id, asset.status, error=asset.error)  # back to failed, with its reason
            raise
    return deps.store.get(asset.id) or asset
