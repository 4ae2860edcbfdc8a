"""Processing a submitted asset: extract its text (or request its transcription, its image
reading, or the OCR of its scanned pages), chunk it section by section, store the chunks,
request embeddings.

Resumable and idempotent, because SQS delivers at least once: a message for an
asset already past a step skips that step, and a crash between steps is picked up
from the stored status on the next delivery. Permanent problems (no text in the
document) end in PROCESSING_ERROR; transient ones raise, so the message is retried
and, after the queue's maxReceiveCount, parked in the dead-letter queue.
"""

from __future__ import annotations

import logging

from allthethings.domain.assets import Asset, Kind, Status
from allthethings.domain.content import CONTAINER_KINDS
from allthethings.domain.documents import SCHEME as DOCUMENT_SCHEME
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted
from allthethings.services import Deps
from allthethings.services.assets import fail_asset, staged_body
from allthethings.services.embeddings import index_chunks, request_embeddings, section_chunks
from allthethings.services.images import request_image_reading
from allthethings.services.scans import is_ocr_job, request_page_ocr
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
    if asset.status in (Status.SUBMITTED, Status.PROCESSING) and asset.kind is Kind.IMAGE:
        return request_image_reading(asset, deps, webhook_base)

    if asset.status is Status.PROCESSING and is_ocr_job(asset.prediction_id):
        return Status.PROCESSING  # its scanned pages are being read; the job's notice moves it on
    if asset.status in (Status.SUBMITTED, Status.PROCESSING):
        deps.store.move(asset_id, Status.PROCESSING)
        try:
            extracted = _extract(asset, deps)
            if extracted.unread_pages and deps.page_ocr is not None:
                return request_page_ocr(asset, deps)
            chunks = section_chunks(asset_id, extracted, deps)
            if not chunks:
                raise ExtractionFailed(_no_text(extracted))
        except ExtractionFailed as exc:
            fail_asset(asset_id, Status.PROCESSING_ERROR, exc.message, deps)
            return Status.PROCESSING_ERROR
        proved = {"content_type": extracted.content_type, "kind": CONTAINER_KINDS[extracted.content_type]} \
            if extracted.content_type in CONTAINER_KINDS else {}
        return index_chunks(asset_id, extracted.title, chunks, deps, webhook_base, **proved)

    if asset.status is Status.PROCESSED:
        return request_embeddings(asset_id, deps, webhook_base)
    return asset.status


def _no_text(extracted: Extracted) -> str:
    if extracted.unread_pages:
        return ("the PDF's pages are scans without a text layer, and no OCR is configured here (OCR_TOPIC_ARN, "
                "or the local stack's Textract stand-in)")
    return "the document holds no indexable text"


def _extract(asset: Asset, deps: Deps) -> Extracted:
    if asset.url.startswith(DOCUMENT_SCHEME):
        raise ExtractionFailed("the request that sent this document failed before its chunks were stored: "
                               "send the document again")
    if not asset.content_type:
        raise ExtractionFailed("the asset has no staged body")
    return deps.extractor.extract(staged_body(asset, deps), asset.content_type, asset.url)
