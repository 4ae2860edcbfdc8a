"""Images: a thumbnail, then one vision-model prediction that reads the staged image (a
description of what it shows and the text visible in it), then chunks and embeddings.

As with a transcription, the model fetches the image from a presigned URL of the staged object,
never from the user's URL, and reports by webhook (`/webhooks/image/{id}`). Before the
prediction, the process step opens the image once: a decompression bomb, a truncated file or a
TIFF of too many pages fails here with its reason (and costs no prediction), and a small JPEG
thumbnail is staged beside the body (`thumbnails/{id}.jpg`) for results to show. A format the
model may not decode (TIFF, BMP, HEIC) or a very large picture is given to it as a JPEG copy of
its first frame (`readable/{id}.jpg`, at most 2,048 px).

The reading becomes up to two sections, each with a location a result shows: the description
(`Description (EXIF ImageDescription)`, or `(model)`) and `Text in the image`. A description is
never invented: the local stand-in takes it from the image's own metadata only.
"""

from __future__ import annotations

import io

from allthethings.domain.assets import Asset, Location, Status
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted, Reading, Section
from allthethings.services import Deps
from allthethings.services.assets import due_prediction, fail_asset, staged_body
from allthethings.services.embeddings import index_chunks, section_chunks, webhook_url
from allthethings.services.transcription import PRESIGNED_URL_S


def thumbnail_key(asset_id: str) -> str:
    return f"thumbnails/{asset_id}.jpg"


def model_copy_key(asset_id: str) -> str:
    """Where a JPEG copy of an image waits for the vision model, when the model may not read the
    original (a TIFF, BMP or HEIC, or a very large picture)."""
    return f"readable/{asset_id}.jpg"


def request_image_reading(asset: Asset, deps: Deps, webhook_base: str | None) -> Status:
    """Check the staged image, stage its thumbnail, and request its reading (once)."""
    if asset.status is Status.PROCESSING and asset.prediction_id:
        return Status.PROCESSING  # requested already; its webhook will come
    if deps.image_reader is None or deps.pictures is None:
        fail_asset(asset.id, Status.PROCESSING_ERROR, "images cannot be read here: no vision model is configured",
                   deps)
        return Status.PROCESSING_ERROR
    deps.store.move(asset.id, Status.PROCESSING)
    given = asset.staged_key or ""
    try:
        prepared = deps.pictures.prepare(staged_body(asset, deps), asset.content_type or "")
    except ExtractionFailed as exc:
        fail_asset(asset.id, Status.PROCESSING_ERROR, exc.message, deps)
        return Status.PROCESSING_ERROR
    deps.blobs.put(thumbnail_key(asset.id), io.BytesIO(prepared.thumbnail), "image/jpeg")
    deps.store.move(asset.id, Status.PROCESSING, thumbnail_key=thumbnail_key(asset.id))
    if prepared.for_model is not None:
        given = model_copy_key(asset.id)
        deps.blobs.put(given, io.BytesIO(prepared.for_model), "image/jpeg")
    image_url = deps.blobs.presigned_url(given, PRESIGNED_URL_S)
    pending = deps.image_reader.submit(image_url, webhook_url(deps, webhook_base, "image", asset.id))
    deps.metrics.count("predictions_created")
    deps.store.move(asset.id, Status.PROCESSING, prediction_id=pending.prediction_id)
    return deps.store.get(asset.id).status


def reading_sections(reading: Reading) -> Extracted:
    """The reading as sections: the description first (its source named), then the visible text."""
    sections = []
    if reading.description:
        sections.append(Section(reading.description,
                                Location(section=f"Description ({reading.description_source or 'model'})")))
    if reading.text:
        sections.append(Section(reading.text, Location(section="Text in the image")))
    return Extracted.of_sections(None, sections)


def apply_image_prediction(asset_id: str, prediction: dict, deps: Deps, webhook_base: str | None = None) -> Asset:
    asset, due = due_prediction(asset_id, prediction, deps, "reading the image")
    if not due:
        return asset
    try:
        reading = deps.image_reader.reading_from_output(prediction.get("output"))
    except ValueError as exc:
        fail_asset(asset_id, Status.PROCESSING_ERROR, f"the image reading is unusable: {exc}", deps)
        return deps.store.get(asset_id)
    chunks = section_chunks(asset_id, reading_sections(reading), deps)
    if not chunks:
        fail_asset(asset_id, Status.PROCESSING_ERROR, "the image shows no text and carries no description "
                   "(EXIF, XMP or IPTC) to index", deps)
        return deps.store.get(asset_id)
    index_chunks(asset_id, asset.title, chunks, deps, webhook_base, prediction_id=None)
    return deps.store.get(asset_id)
