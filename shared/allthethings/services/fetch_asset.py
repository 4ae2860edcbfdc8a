"""Fetching a body behind the queue: the fetch function's one use case.

Submission records an asset FETCHING when its body is too large or too slow to read inside the
request. This step streams the body into the staging bucket as a multipart upload, one part of
`fetch_part_bytes` in memory at a time (no disk), and records `fetched_bytes` after each part.
When its invocation's time runs short it stops at a part boundary and queues the rest, which the
next invocation asks for with a Range request (If-Range, and the validators checked again): a
body of any size is fetched by as many invocations as it takes. Every connection, Range requests
included, goes through the same fetcher and its address checks.

It ends in one of three ways: staged (SUBMITTED, and the processing message queued), a copy of
an asset already indexed with the same bytes (SEARCHABLE, with no prediction paid), or
PROCESSING_ERROR with the reason (unreachable, too large, changed type, an origin that cannot
resume a body too large for one invocation, a body that keeps changing). A failure of our own
dependencies (S3, the store) raises, so SQS retries the message and, after maxReceiveCount,
keeps it in the dead-letter queue to redrive; the sweeper re-queues a fetch that stopped moving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time

from allthethings.domain.assets import Asset, Status
from allthethings.domain.content import decide
from allthethings.domain.errors import (
    ContentTooLarge,
    ExtractionFailed,
    Interrupted,
    InvalidInput,
    UnreachableUrl,
    UnsupportedContentType,
)
from allthethings.domain.tasks import FetchAsset, ProcessAsset, to_message
from allthethings.ports import Download, Validator
from allthethings.services import Deps
from allthethings.services.assets import fail_asset

MAX_RESTARTS = 2  # fetches begun again from zero because the body changed under them
MAX_RESUMES = 5  # Range continuations after the origin stopped sending part-way
# How long past its time a fetch may go on to finish the part under way (the fetch function
# keeps a larger margin before its timeout).
HARD_GRACE_S = 20.0
_FAILURES = (UnreachableUrl, ContentTooLarge, UnsupportedContentType, InvalidInput, ExtractionFailed)
log = logging.getLogger(__name__)


def staged_key(asset_id: str) -> str:
    return f"staged/{asset_id}"


def fetch_asset(task: FetchAsset, deps: Deps, *, until: float) -> Status | None:
    """Fetch as much of the body as there is time for (`until`, a time.monotonic() value); the
    status the asset reached (None: it is gone)."""
    asset = deps.store.get(task.asset_id)
    if asset is None or asset.status is not Status.FETCHING:
        if task.upload_id:  # deleted or moved on while a part of it was on its way: drop the parts
            deps.blobs.abort_upload(staged_key(task.asset_id), task.upload_id)
        if asset is not None and asset.status is Status.SUBMITTED and asset.staged_key:
            # Staged by a delivery of this message whose processing message may not have gone.
            deps.queue.send(to_message(ProcessAsset(asset.id, task.webhook_base)))
        return asset.status if asset else None
    fetch = _Fetch(asset, task, deps)
    try:
        return fetch.run(until)
    except _FAILURES as exc:
        fetch.abort()
        fail_asset(asset.id, Status.PROCESSING_ERROR, f"fetching the URL failed: {exc.message}", deps)
        return (deps.store.get(asset.id) or asset).status
    except BaseException:
        log.warning("fetching asset %s stopped at byte %d; the message will be retried", asset.id, fetch.done)
        raise


@dataclasses.dataclass
class _Fetch:
    asset: Asset
    task: FetchAsset
    deps: Deps

    def __post_init__(self) -> None:
        self.key = staged_key(self.asset.id)
        self.done = self.task.offset  # bytes in finished parts
        self.upload_id = self.task.upload_id
        self.etags = list(self.task.etags)
        self.validator = Validator(self.task.etag, self.task.last_modified)
        self.restarts = self.task.restarts
        self.stopped = False  # the asset was deleted or moved on part-way

    def run(self, until: float) -> Status | None:
        settings = self.deps.settings
        limit = settings.size_limits.of(self.asset.kind)
        asked = self.done
        with self.deps.fetcher.open(self.asset.url, settings.size_limits, start=asked, limit=limit,
                                    validator=self.validator if asked else None) as download:
            moved = asked and (download.start != asked or download.validator.differs_from(self.validator))
            if moved and not self._restart(download):
                return self._hand_over(resumes=self.task.resumes)  # ask again, from zero
            if self.done == 0:
                self._check_kind(download)
                self.validator = download.validator
            digest = hashlib.sha256() if self.done == 0 else None  # resumed: read back once staged
            tail = self._stream(download, digest, until)
            if tail is None:
                return self._hand_over(resumes=self.task.resumes)
            if isinstance(tail, Interrupted):
                return self._hand_over(resumes=self.task.resumes + 1)
        size = self.done + len(tail)
        if size == 0:
            raise ExtractionFailed("the URL returned an empty body")
        if tail or not self.etags:
            self.etags.append(self.deps.blobs.put_part(self.key, self._upload(), len(self.etags) + 1, bytes(tail)))
        self.deps.blobs.complete_upload(self.key, self._upload(), self.etags)
        self.upload_id = None
        sha256 = digest.hexdigest() if digest is not None else self.deps.blobs.sha256(self.key)
        return self._staged(size, sha256)

    def _restart(self, download: Download) -> bool:
        """The origin served another version, or ignored the Range request: begin again from zero,
        never splicing two versions together. True if this response (the whole new body) serves."""
        changed = download.validator.differs_from(self.validator)
        if not changed and download.start == 0:
            raise UnreachableUrl(
                f"the body did not arrive within one fetch ({self.deps.settings.fetch_slice_s:.0f} s), and the "
                f"origin answered the request for the rest (from byte {self.done}) with the whole body again: it "
                "cannot resume, so a body this large cannot be fetched from it")
        if self.restarts >= MAX_RESTARTS:
            raise UnreachableUrl(f"the body changed {self.restarts + 1} times while it was being fetched")
        log.info("asset %s: the body changed while it was fetched; starting again from zero", self.asset.id)
        self.abort()
        self.done, self.etags, self.restarts, self.validator = 0, [], self.restarts + 1, Validator()
        return download.start == 0

    def _check_kind(self, download: Download) -> None:
        decision = decide(download.head, download.declared_type, download.final_url)
        if decision.kind is not self.asset.kind:
            raise UnsupportedContentType(f"the URL now serves {decision.content_type}, not the "
                                         f"{self.asset.kind.value} it served when it was submitted")

    def _stream(self, download: Download, digest, until: float) -> bytearray | Interrupted | None:
        """Upload every whole part; the bytes after the last one when the body is all here, None
        when the time is up (or the asset moved on), or the interruption to resume after."""
        part_bytes = self.deps.settings.fetch_part_bytes
        began = self.done
        buffer = bytearray()
        try:
            for piece in download.pieces:
                if digest is not None:
                    digest.update(piece)
                buffer += piece
                parted = len(buffer) >= part_bytes
                while len(buffer) >= part_bytes:
                    self.etags.append(self.deps.blobs.put_part(self.key, self._upload(), len(self.etags) + 1,
                                                               bytes(buffer[:part_bytes])))
                    del buffer[:part_bytes]
                    self.done += part_bytes
                if parted and not self.deps.store.move(self.asset.id, Status.FETCHING, fetched_bytes=self.done,
                                                       size_bytes=download.total):
                    self.abort()  # deleted, or moved on by another delivery
                    self.stopped = True
                    return None
                # Hand over at a part boundary once the time is up; past the grace, drop the part
                # under way (the next invocation fetches it again) rather than be cut off.
                late = time.monotonic() - until
                if (parted and late > 0) or late > HARD_GRACE_S:
                    return self._out_of_time(download, began)
        except Interrupted as exc:
            can_resume = download.resumable and (self.validator.etag or self.validator.last_modified)
            if not can_resume or self.task.resumes >= MAX_RESUMES:
                raise
            log.info("asset %s: %s; resuming from byte %d", self.asset.id, exc.message, self.done)
            return exc
        return buffer

    def _out_of_time(self, download: Download, began: int) -> None:
        slice_s = self.deps.settings.fetch_slice_s
        if self.done == began:  # not one part in a whole invocation: handing over would loop
            raise UnreachableUrl(f"the URL sent less than {self.deps.settings.fetch_part_bytes} bytes in "
                                 f"{slice_s:.0f} s; it is too slow to fetch from")
        if not download.resumable:
            raise UnreachableUrl(f"the body did not arrive within one fetch ({slice_s:.0f} s), and the origin "
                                 "does not take Range requests, so the rest cannot be fetched later")

    def _upload(self) -> str:
        if self.upload_id is None:
            self.upload_id = self.deps.blobs.start_upload(self.key, self.asset.content_type or "")
        return self.upload_id

    def _hand_over(self, *, resumes: int) -> Status | None:
        if self.stopped:
            current = self.deps.store.get(self.asset.id)
            return current.status if current else None
        self.deps.fetches.send(to_message(FetchAsset(
            self.asset.id, self.task.webhook_base, offset=self.done, upload_id=self.upload_id,
            etags=tuple(self.etags), etag=self.validator.etag, last_modified=self.validator.last_modified,
            restarts=self.restarts, resumes=resumes)))
        return Status.FETCHING

    def _staged(self, size: int, sha256: str) -> Status | None:
        deps, asset = self.deps, self.asset
        twin = deps.store.find_by_digest(sha256)
        if twin is not None and twin.kind is asset.kind and deps.store.become_copy(
                asset.id, twin.id, sha256=sha256, size_bytes=size, fetched_bytes=size):
            deps.blobs.delete(self.key)  # its chunks are the twin's: nothing to process
            deps.metrics.count("assets_searchable")
            return Status.SEARCHABLE
        if deps.store.move(asset.id, Status.SUBMITTED, staged_key=self.key, size_bytes=size, sha256=sha256,
                           fetched_bytes=size):
            deps.queue.send(to_message(ProcessAsset(asset.id, self.task.webhook_base)))
            return Status.SUBMITTED
        current = deps.store.get(asset.id)
        if current is None:  # deleted while it was fetched
            deps.blobs.delete(self.key)
            return None
        return current.status

    def abort(self) -> None:
        if self.upload_id is not None:
            self.deps.blobs.abort_upload(self.key, self.upload_id)
            self.upload_id = None
