"""Submitting a URL: validate, de-duplicate, open it, decide the type, then stage the bytes now or
fetch them behind the queue.

The request answers within a couple of seconds whatever the body's size: it opens the URL (an
unreachable URL, an HTTP error, a type we cannot index or a declared size over the limit is
refused at once) and reads the body whole only while it comes within `inline_fetch_s` and
`inline_fetch_bytes`. Such a body is staged and its processing queued, as before. Anything
larger or slower is recorded FETCHING and a fetch message queued: the fetch function streams it
into the staging bucket (services/fetch_asset.py) and moves the asset on.

Either the asset exists afterwards with its work queued, or nothing does: a failure part-way
undoes what was done. A URL already known is answered from the store without a fetch; a body
already indexed behind another URL (the same SHA-256) becomes a searchable copy of that asset,
with no prediction paid twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from allthethings.domain.assets import Asset, Status, new_asset_id, normalise_url
from allthethings.domain.content import Decision, decide
from allthethings.domain.documents import SCHEME as DOCUMENT_SCHEME
from allthethings.domain.errors import Conflict, ExtractionFailed
from allthethings.domain.tasks import FetchAsset, ProcessAsset, to_message
from allthethings.ports import Fetched
from allthethings.services import Deps


def submit_asset(raw_url: object, deps: Deps, *, webhook_base: str | None = None,
                 item: dict | None = None) -> tuple[Asset, bool]:
    """Return the asset and whether work was queued for it now: a new asset, or a failed one
    whose URL is sent again, which is fetched again (False: the URL is known and not failed).

    `item` is what a source said of the URL (`source_id`, `title`, `published_at`, `author`,
    `description`, `transcript`: see domain/sources.Entry.asset_fields): a new asset carries it,
    and a known asset that belongs to no source is linked to this one, not fetched again."""
    url = normalise_url(raw_url)
    existing = deps.store.get_by_url(url)
    if existing is not None and item and existing.source_id is None:
        fields = {k: v for k, v in item.items() if k != "source_id"}
        if deps.store.link_source(existing.id, item["source_id"], **fields):
            existing = deps.store.get(existing.id) or existing
    if existing is not None and existing.status.is_error and not url.startswith(DOCUMENT_SCHEME):
        return refetch_asset(existing, deps, webhook_base=webhook_base), True
    if existing is not None:
        return existing, False

    asset_id = new_asset_id()
    with _opened(url, deps) as (decision, fetched, total):
        if fetched is None:
            deferred = Asset.new(url, content_type=decision.content_type, kind=decision.kind, staged_key=None,
                                 size_bytes=total, asset_id=asset_id, status=Status.FETCHING, **(item or {}))
            return _queue_fetch(deferred, deps, webhook_base)
        twin = deps.store.find_by_digest(fetched.sha256)
        if twin is not None and twin.kind is decision.kind:
            copy = twin.copied_to(url, size_bytes=fetched.size, content_type=decision.content_type, **(item or {}))
            stored = deps.store.add_copy(copy, twin.id)
            if stored is not None:
                if stored.id == copy.id:
                    deps.metrics.count("assets_submitted")
                    deps.metrics.count("assets_searchable")
                return stored, stored.id == copy.id
        key = f"staged/{asset_id}"
        deps.blobs.put(key, fetched.body, decision.content_type)

    asset = Asset.new(url, content_type=decision.content_type, kind=decision.kind, staged_key=key,
                      size_bytes=fetched.size, asset_id=asset_id, sha256=fetched.sha256, **(item or {}))
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
    """Fetch a failed asset's URL again and start it over: staged now (SUBMITTED) or behind the
    queue (FETCHING), as a new submission would be. The way back when its staged body is gone
    (expired, or a local stack restarted) or when the origin's content was the problem. Refused
    for a document (it has no URL)."""
    if asset.url.startswith(DOCUMENT_SCHEME):
        raise Conflict("a document has no URL to fetch again: send the document again")
    if not asset.status.is_error:
        raise Conflict(f"only a failed asset can be fetched again; this one is {asset.status.value}")
    restart = dict(error=None, prediction_id=None, chunk_count=None, embedded_chunks=None, thumbnail_key=None)
    with _opened(asset.url, deps) as (decision, fetched, total):
        if fetched is None:
            if deps.store.move(asset.id, Status.FETCHING, staged_key=None, content_type=decision.content_type,
                               kind=decision.kind, size_bytes=total, sha256=None, fetched_bytes=0, **restart):
                _send_or_fail_back(asset, deps.fetches, FetchAsset(asset.id, webhook_base), deps)
            return deps.store.get(asset.id) or asset
        key = f"staged/{asset.id}"
        deps.blobs.put(key, fetched.body, decision.content_type)
    if deps.store.move(asset.id, Status.SUBMITTED, staged_key=key, content_type=decision.content_type,
                       kind=decision.kind, size_bytes=fetched.size, sha256=fetched.sha256, fetched_bytes=None,
                       **restart):
        _send_or_fail_back(asset, deps.queue, ProcessAsset(asset.id, webhook_base), deps)
    return deps.store.get(asset.id) or asset


@contextlib.contextmanager
def _opened(url: str, deps: Deps) -> Iterator[tuple[Decision, Fetched | None, int | None]]:
    """Open the URL and decide what it is, raising what the user must hear at once (unreachable,
    an HTTP error, a type we cannot index, a declared size over its limit); the whole body too
    (spooled, closed on leaving) if it comes within the inline budget, else None; and the size
    the origin declared, if it did."""
    settings = deps.settings
    until = time.monotonic() + settings.inline_fetch_s
    with deps.fetcher.open(url, settings.size_limits) as download:
        decision = decide(download.head, download.declared_type, download.final_url)
        fetched = None
        if download.total is None or download.total <= settings.inline_fetch_bytes:
            fetched = deps.fetcher.read(download, until=until, max_bytes=settings.inline_fetch_bytes)
    if fetched is None:
        yield decision, None, download.total
        return
    with fetched.body:
        if fetched.size == 0:
            raise ExtractionFailed("the URL returned an empty body")
        yield decision, fetched, fetched.size


def _queue_fetch(asset: Asset, deps: Deps, webhook_base: str | None) -> tuple[Asset, bool]:
    stored = deps.store.add(asset)
    if stored.id != asset.id:  # an identical submission won the race
        return stored, False
    try:
        deps.fetches.send(to_message(FetchAsset(asset.id, webhook_base)))
    except BaseException:
        deps.store.delete(asset.id)
        raise
    deps.metrics.count("assets_submitted")
    return asset, True


def _send_or_fail_back(asset: Asset, queue, task, deps: Deps) -> None:
    """Queue the restarted asset's work; if that fails, put it back in its failed status (with
    its reason) for the user to retry later."""
    try:
        queue.send(to_message(task))
    except BaseException:
        deps.store.move(asset.id, Status.PROCESSING_ERROR, error=asset.error)
        raise
