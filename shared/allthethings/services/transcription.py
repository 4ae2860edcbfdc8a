"""Audio and video: requesting a Whisper transcription of the staged recording, and turning the
finished transcript into timed chunks; or, for a recording whose publisher gives a transcript
(a podcast episode's `<podcast:transcript>`), indexing it from that transcript instead.

Replicate fetches the recording from a presigned URL of the staged object, never from the
user's URL. The transcript's segments keep their start and end seconds, and chunks of them
carry `start_s`/`end_s` to search results. Only the delivery that moves the asset from
PROCESSING to PROCESSED requests embeddings, so duplicates and races pay for nothing twice.

A publisher's transcript (SRT, WebVTT or Podcasting 2.0 JSON, with timings) costs no prediction:
it is fetched through the same guarded fetcher as any URL (public addresses only), at most
TRANSCRIPT_MAX_BYTES, parsed into segments and chunked as Whisper's would be; the recording
stays the asset's media, so a result still jumps to its second. A transcript that cannot be
fetched, is too large or slow, or holds no timed text is logged and counted
(`publisher_transcripts_failed`), and the recording is transcribed by Whisper as if there were none.
"""

from __future__ import annotations

import logging

from allthethings.domain.assets import Asset, Chunk, Status, normalise_url
from allthethings.domain.chunking import Segment, chunk_segments
from allthethings.domain.content import declared_charset
from allthethings.domain.errors import DomainError, ExtractionFailed
from allthethings.domain.sources import Transcript
from allthethings.domain.transcripts import parse_transcript
from allthethings.services import Deps
from allthethings.services.assets import due_prediction, fail_asset
from allthethings.services.embeddings import chunk_window, index_chunks, request_embeddings, webhook_url

# Long enough for a queued prediction to start; the object itself expires with the bucket's rule.
PRESIGNED_URL_S = 6 * 3600
# A transcript of a many-hour episode is a few hundred KiB; anything far larger is not one.
TRANSCRIPT_MAX_BYTES = 5 * 1024 * 1024
# The whole transcript must arrive within this, well inside the processing function's timeout
# (the fetcher's own limit on the first bytes comes on top).
TRANSCRIPT_FETCH_S = 30.0
log = logging.getLogger(__name__)


def request_transcription(asset: Asset, deps: Deps, webhook_base: str | None) -> Status:
    """Index a recording from its publisher's transcript if it has a usable one, else request
    its Whisper transcription (whose webhook moves it on)."""
    if asset.status is Status.PROCESSING and asset.prediction_id:
        return Status.PROCESSING  # requested already; its webhook will come
    deps.store.move(asset.id, Status.PROCESSING)
    if asset.transcript:
        chunks = _publisher_chunks(asset, deps)
        if chunks:
            return index_chunks(asset.id, asset.title, chunks, deps, webhook_base)
    audio_url = deps.blobs.presigned_url(asset.staged_key or "", PRESIGNED_URL_S)
    pending = deps.transcriber.submit(audio_url, webhook_url(deps, webhook_base, "audio", asset.id))
    deps.metrics.count("predictions_created")
    deps.store.move(asset.id, Status.PROCESSING, prediction_id=pending.prediction_id)
    return deps.store.get(asset.id).status


def apply_transcription_prediction(asset_id: str, prediction: dict, deps: Deps,
                                   webhook_base: str | None = None) -> Asset:
    asset, due = due_prediction(asset_id, prediction, deps, "transcription")
    if not due:
        return asset
    try:
        segments = deps.transcriber.segments_from_output(prediction.get("output"))
    except ValueError as exc:
        fail_asset(asset_id, Status.PROCESSING_ERROR, f"transcription output unusable: {exc}", deps)
        return deps.store.get(asset_id)
    timed = chunk_segments(segments, deps.tokenizer.spans, *chunk_window(deps), deps.settings.chunk_max_seconds)
    if not timed:
        fail_asset(asset_id, Status.PROCESSING_ERROR, "no speech was found in the recording", deps)
        return deps.store.get(asset_id)
    deps.store.put_chunks(asset_id, [Chunk(asset_id, i, t.text, t.start_s, t.end_s) for i, t in enumerate(timed)])
    if deps.store.move(asset_id, Status.PROCESSED, chunk_count=len(timed), prediction_id=None):
        request_embeddings(asset_id, deps, webhook_base)
    return deps.store.get(asset_id)


def _publisher_chunks(asset: Asset, deps: Deps) -> list[Chunk] | None:
    """The timed chunks of the asset's publisher transcript; None (logged and counted) when it
    cannot be used, and Whisper transcribes the recording instead."""
    try:
        transcript = Transcript.from_public(asset.transcript)
        if transcript is None:
            raise ExtractionFailed(f"the asset's transcript record is malformed: {asset.transcript!r}"[:300])
        timed = chunk_segments(_publisher_segments(transcript, deps), deps.tokenizer.spans, *chunk_window(deps),
                               deps.settings.chunk_max_seconds)
        if not timed:
            raise ExtractionFailed("the transcript holds no words")
    except DomainError as exc:
        log.warning("asset %s: the publisher's transcript is unusable (%s); transcribing the recording instead",
                    asset.id, exc.message)
        deps.metrics.count("publisher_transcripts_failed")
        return None
    deps.metrics.count("publisher_transcripts_used")
    return [Chunk(asset.id, i, t.text, t.start_s, t.end_s) for i, t in enumerate(timed)]


def _publisher_segments(transcript: Transcript, deps: Deps) -> list[Segment]:
    """Fetch and parse the transcript; any DomainError says why it cannot be used (an unreachable
    or refused URL, a body over the cap or too slow, no timed text)."""
    # `limit` stands in for the fetcher's per-kind limits, which would refuse a subtitle type.
    fetched = deps.fetcher.fetch(normalise_url(transcript.url), deps.settings.size_limits,
                                 limit=TRANSCRIPT_MAX_BYTES, within_s=TRANSCRIPT_FETCH_S)
    with fetched.body:
        body = fetched.body.read()
    return parse_transcript(body, transcript.type, declared_charset(fetched.declared_type))
