"""Moving on assets stuck in a step: what the scheduled sweeper does.

An unfinished asset waits on something outside its record: a queue message (FETCHING,
SUBMITTED, PROCESSED, or PROCESSING without a prediction), or a Replicate prediction whose webhook
should come (PROCESSING with one: a transcription; GENERATING_EMBEDDINGS). Webhooks get
lost and messages get dead-lettered, so an asset not updated for `stuck_after_s` is looked at:

- A scanned PDF waiting on text detection: the OCR service is asked for the job's result (a
  job it no longer knows is started again; one still running waits).
- With a prediction id, the model API is asked for the prediction. Finished: it is applied
  exactly as its webhook would have been (succeeded: onwards; failed or canceled: an error
  status with the reason). Unknown to the API: an error status. Still running: left alone
  until `give_up_after_s`, then an error status.
- Without one, its processing message is sent again (every step is idempotent, so a
  duplicate costs nothing), until `give_up_after_s`, then an error status. A FETCHING asset
  records its progress after every part, so one not updated has lost its fetch: it is fetched
  again from zero (should the lost one come back, the first to finish moves the asset on and
  the other stops at its next part).

Every error status says why and can be retried. When the model API cannot answer, the
asset is left for the next sweep.

The same schedule reads sources again: every source whose refresh is due is queued for the
source worker (services/sources.py), claimed first so that two sweeps read it once.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from allthethings.domain.assets import Asset, Kind, Status, now
from allthethings.domain.errors import NotFound, UpstreamUnavailable
from allthethings.domain.tasks import FetchAsset, ProcessAsset, to_message
from allthethings.ports import PREDICTION_FINISHED
from allthethings.services import Deps
from allthethings.services.assets import fail_asset
from allthethings.services.embeddings import apply_embedding_prediction
from allthethings.services.images import apply_image_prediction
from allthethings.services.scans import finish_page_ocr, is_ocr_job, is_pending_ocr
from allthethings.services.sources import schedule_due
from allthethings.services.transcription import apply_transcription_prediction

STUCK = (Status.FETCHING, Status.SUBMITTED, Status.PROCESSING, Status.PROCESSED, Status.GENERATING_EMBEDDINGS)
BATCH = 200
log = logging.getLogger(__name__)


@dataclasses.dataclass
class SweepReport:
    finished: list[str] = dataclasses.field(default_factory=list)  # a lost webhook's prediction applied
    requeued: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    waiting: list[str] = dataclasses.field(default_factory=list)  # its prediction is still running
    unreachable: list[str] = dataclasses.field(default_factory=list)  # the model API did not answer
    sources: list[str] = dataclasses.field(default_factory=list)  # sources whose refresh was queued

    def counts(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in dataclasses.asdict(self).items()}


def sweep(deps: Deps, *, at: datetime | None = None) -> SweepReport:
    """Look at every asset stuck at `at` (now), oldest first, and move each on."""
    at = at or now()
    settings = deps.settings
    report = SweepReport()
    for asset in deps.store.stale(STUCK, at - timedelta(seconds=settings.stuck_after_s), BATCH):
        overdue = at - asset.updated_at >= timedelta(seconds=settings.give_up_after_s)
        waits_on_model = asset.status in (Status.PROCESSING, Status.GENERATING_EMBEDDINGS)
        if asset.status is Status.PROCESSING and is_ocr_job(asset.prediction_id):
            _ask_the_ocr_service(asset, overdue, deps, report)
        elif waits_on_model and asset.prediction_id and not is_pending_ocr(asset.prediction_id):
            _ask_the_model_api(asset, overdue, deps, report)
        elif overdue:
            _give_up(asset, deps, report)
        elif asset.status is Status.GENERATING_EMBEDDINGS:
            report.waiting.append(asset.id)  # created through a queue, its id unknown: only its webhook can tell
        elif asset.status is Status.FETCHING:  # a fetch records progress part by part: this one stopped
            deps.fetches.send(to_message(FetchAsset(asset.id, settings.api_url)))  # from zero, a new upload
            report.requeued.append(asset.id)
        else:
            deps.queue.send(to_message(ProcessAsset(asset.id, settings.api_url)))
            report.requeued.append(asset.id)
    if deps.sources is not None and deps.source_queue is not None:
        report.sources.extend(schedule_due(deps, at=at))
    if any(report.counts().values()):
        log.info("sweep: %s", report.counts())
    return report


def _ask_the_model_api(asset: Asset, overdue: bool, deps: Deps, report: SweepReport) -> None:
    try:
        prediction = deps.predictions.get(asset.prediction_id)
    except NotFound:
        _fail(asset, f"the model API has no record of prediction {asset.prediction_id}; retry the asset", deps)
        report.failed.append(asset.id)
        return
    except UpstreamUnavailable:
        report.unreachable.append(asset.id)
        return
    if prediction.get("status") in PREDICTION_FINISHED:
        # Applying may request the next prediction (the embeddings of the next group of chunks, or
        # of a finished transcript): when the model API refuses that, the asset waits for the next sweep.
        try:
            if asset.status is Status.PROCESSING and asset.kind is Kind.IMAGE:
                after = apply_image_prediction(asset.id, prediction, deps, deps.settings.api_url)
            elif asset.status is Status.PROCESSING:
                after = apply_transcription_prediction(asset.id, prediction, deps, deps.settings.api_url)
            else:
                after = apply_embedding_prediction(asset.id, prediction, deps, deps.settings.api_url)
        except UpstreamUnavailable:
            report.unreachable.append(asset.id)
            return
        (report.failed if after.status.is_error else report.finished).append(asset.id)
    elif overdue:
        _give_up(asset, deps, report)
    else:
        report.waiting.append(asset.id)


def _ask_the_ocr_service(asset: Asset, overdue: bool, deps: Deps, report: SweepReport) -> None:
    """A scanned PDF whose text-detection notice is late: read the job's result as the notice
    would have. A job the service no longer knows (the local stand-in restarted) is started again
    by the processing step; one still running waits, until `give_up_after_s`."""
    if deps.page_ocr is None:
        _fail(asset, "its scanned pages were sent to OCR, which is no longer configured; retry the asset", deps)
        report.failed.append(asset.id)
        return
    try:
        after = finish_page_ocr(asset, deps, deps.settings.api_url)
    except NotFound:
        if deps.store.move(asset.id, Status.PROCESSING, prediction_id=None):
            deps.queue.send(to_message(ProcessAsset(asset.id, deps.settings.api_url)))
        report.requeued.append(asset.id)
        return
    except UpstreamUnavailable:
        if overdue:
            _give_up(asset, deps, report)
        else:
            report.waiting.append(asset.id)
        return
    (report.failed if after.status.is_error else report.finished).append(asset.id)


def _give_up(asset: Asset, deps: Deps, report: SweepReport) -> None:
    hours = deps.settings.give_up_after_s / 3600
    _fail(asset, f"{asset.status.value.lower().replace('_', ' ')} did not finish within {hours:g} h; "
                 "retry the asset", deps)
    report.failed.append(asset.id)


def _fail(asset: Asset, reason: str, deps: Deps) -> None:
    target = Status.PROCESSING_ERROR if asset.status in (Status.FETCHING, Status.SUBMITTED, Status.PROCESSING) \
        else Status.EMBEDDINGS_ERROR
    fail_asset(asset.id, target, reason, deps)
