"""Scanned PDFs: pages without a text layer are read by asynchronous text detection (Amazon
Textract in production, a local stand-in with a real OCR engine on the laptop).

One job per document, whatever its page count: the process step starts it on the staged object
(1 call) and records it as the asset's `prediction_id` (`ocr:<job id>`); the job's completion
notice arrives on the webhook queue (SNS → SQS), and its consumer reads the result (1 call per
1,000 blocks: its words, lines and pages), fills the unread pages in from it, keeps the
text-layer pages as extracted, and chunks every page on its own so that each result carries its
`page`. Nothing loops over pages
inside an invocation, and a notice that comes twice, late or for an earlier job changes nothing.
"""

from __future__ import annotations

import logging
import uuid

from allthethings.domain.assets import Asset, Location, Status
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted, OcrNotice, Section
from allthethings.services import Deps
from allthethings.services.assets import fail_asset, staged_body
from allthethings.services.embeddings import index_chunks, section_chunks

OCR_PREFIX = "ocr:"
# Recorded before a job is started: the attempt whose idempotency token the start carries, so a
# message redelivered after a crash between the start and its record gets the same job back,
# while a retry of the failed asset (which clears it) starts a new one.
PENDING_PREFIX = "ocr-pending:"
log = logging.getLogger(__name__)


def is_ocr_job(prediction_id: str | None) -> bool:
    return bool(prediction_id) and prediction_id.startswith(OCR_PREFIX)


def is_pending_ocr(prediction_id: str | None) -> bool:
    return bool(prediction_id) and prediction_id.startswith(PENDING_PREFIX)


def request_page_ocr(asset: Asset, deps: Deps) -> Status:
    """Start text detection on the staged PDF (UpstreamUnavailable: the message is retried)."""
    if is_pending_ocr(asset.prediction_id):
        attempt = asset.prediction_id[len(PENDING_PREFIX):]
    else:
        attempt = uuid.uuid4().hex
        deps.store.move(asset.id, Status.PROCESSING, prediction_id=PENDING_PREFIX + attempt)
    job_id = deps.page_ocr.start(asset.staged_key or "", asset.id, attempt)
    deps.metrics.count("ocr_jobs_started")
    deps.store.move(asset.id, Status.PROCESSING, prediction_id=OCR_PREFIX + job_id)
    return Status.PROCESSING


def apply_ocr_notice(notice: OcrNotice, deps: Deps, webhook_base: str | None = None) -> Asset | None:
    """Apply a job's completion notice to the asset it was started for (None: that asset is gone)."""
    asset = deps.store.get(notice.job_tag or "") if notice.job_tag else None
    if asset is None:
        log.warning("text detection job %s finished for asset %s, which no longer exists", notice.job_id,
                    notice.job_tag)
        return None
    if asset.status is not Status.PROCESSING or asset.prediction_id != OCR_PREFIX + notice.job_id:
        return asset  # a repeated, late or earlier job's notice: the asset has moved on
    if notice.status not in ("SUCCEEDED", "PARTIAL_SUCCESS"):
        fail_asset(asset.id, Status.PROCESSING_ERROR, f"text detection on the scanned pages ended {notice.status}",
                   deps)
        return deps.store.get(asset.id)
    return finish_page_ocr(asset, deps, webhook_base)


def finish_page_ocr(asset: Asset, deps: Deps, webhook_base: str | None) -> Asset:
    """Read the finished job's text and index every page. UpstreamUnavailable (the service did not
    answer, or the job still runs) propagates: the message is retried, or the sweeper looks again;
    so does NotFound for a job the service no longer knows (the sweeper starts it again)."""
    job_id = (asset.prediction_id or "")[len(OCR_PREFIX):]
    try:
        pages = deps.page_ocr.pages(job_id)
    except ExtractionFailed as exc:
        fail_asset(asset.id, Status.PROCESSING_ERROR, exc.message, deps)
        return deps.store.get(asset.id)
    try:
        extracted = deps.extractor.extract(staged_body(asset, deps), asset.content_type or "application/pdf",
                                           asset.url)
    except ExtractionFailed as exc:
        fail_asset(asset.id, Status.PROCESSING_ERROR, exc.message, deps)
        return deps.store.get(asset.id)
    chunks = section_chunks(asset.id, with_ocr_pages(extracted, pages), deps)
    if not chunks:
        fail_asset(asset.id, Status.PROCESSING_ERROR, "no text was found in the PDF, not even by OCR of its "
                   "scanned pages", deps)
        return deps.store.get(asset.id)
    index_chunks(asset.id, extracted.title, chunks, deps, webhook_base, prediction_id=None)
    return deps.store.get(asset.id)


def with_ocr_pages(extracted: Extracted, ocr_pages: dict[int, str]) -> Extracted:
    """A PDF's page sections with its unread pages filled in from OCR, in page order."""
    pages = {s.location.page: s for s in extracted.sections if s.location and s.location.page}
    for page in extracted.unread_pages:
        text = ocr_pages.get(page, "").strip()
        if text:
            pages[page] = Section(text, Location(page=page))
    return Extracted.of_sections(extracted.title, [pages[n] for n in sorted(pages)])
