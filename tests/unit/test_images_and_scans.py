"""Images, scanned PDFs and located chunks through the use cases, with fakes behind every port
but the image inspection (Pillow, on bytes made here)."""

import io
import json
import struct
import zlib

import pytest

from allthethings.domain.assets import Kind, Location, Status
from allthethings.ports import Extracted, Extractor, Section
from allthethings.services.process_asset import process_asset
from allthethings.services.search import parse_request
from allthethings.services.search import search as run_search
from allthethings.services.submit_asset import submit_asset
from allthethings.services.sweeper import sweep
from allthethings.services.webhooks import apply_webhook
from tests.fakes import FakeFetcher, FakePageOcr, fake_deps


def _png(width=64, height=32) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(out, "PNG")
    return out.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares this size over a few bytes of data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _submitted(deps, url, content_type, body):
    deps.fetcher = FakeFetcher({url: (content_type, body)})
    asset, _ = submit_asset(url, deps, webhook_base="https://api.test")
    return asset


def _delivered(asset_id, prediction_id, media, output, status="succeeded"):
    return {"kind": "image", "asset_id": asset_id, "delivery_id": "d1", "webhook_base": "https://api.test",
            "body": json.dumps({"id": prediction_id, "status": status, "input": {"media": media},
                                "output": output, "error": "the GPU fell over" if status == "failed" else None})}


def test_an_image_gets_a_thumbnail_and_one_reading_whose_parts_are_found_with_their_source():
    deps = fake_deps()
    asset = _submitted(deps, "http://x.test/board.png", "image/png", _png())
    assert asset.kind is Kind.IMAGE and asset.content_type == "image/png"
    assert process_asset(asset.id, deps, webhook_base="https://api.test") is Status.PROCESSING
    process_asset(asset.id, deps, webhook_base="https://api.test")  # a repeated message asks for nothing more
    (image_url, webhook), = deps.image_reader.submitted
    assert asset.staged_key in image_url and webhook == f"https://api.test/webhooks/image/{asset.id}"
    stored = deps.store.get(asset.id)
    assert stored.thumbnail_key == f"thumbnails/{asset.id}.jpg"
    assert deps.blobs.objects[stored.thumbnail_key][:3] == b"\xff\xd8\xff"
    assert stored.to_public()["thumbnail_url"] == f"/api/assets/{asset.id}/thumbnail"

    output = ("DESCRIPTION (EXIF ImageDescription): A lighthouse keeper trims the lamp wick at dusk\n"
              "TEXT:\nLAMP ROOM\nNo entry after sunset")
    after = apply_webhook(_delivered(asset.id, stored.prediction_id, image_url, output), deps)
    assert after.status is Status.SEARCHABLE
    chunks = deps.store.chunks(asset.id)
    assert [c.location for c in chunks] == [Location(section="Description (EXIF ImageDescription)"),
                                            Location(section="Text in the image")]
    page = run_search(parse_request({"q": "lamp room sunset", "mode": "keyword"}), deps)
    assert page.results[0].asset.id == asset.id
    assert page.results[0].location == Location(section="Text in the image")


def test_a_png_declaring_ten_billion_pixels_fails_before_any_prediction():
    deps = fake_deps()
    asset = _submitted(deps, "http://x.test/bomb.png", "image/png", _png_declaring(100_000, 100_000))
    assert process_asset(asset.id, deps) is Status.PROCESSING_ERROR
    failed = deps.store.get(asset.id)
    assert "pixels" in failed.error and deps.image_reader.submitted == []
    assert failed.thumbnail_key is None


def test_a_failed_image_reading_is_an_error_the_user_can_retry():
    deps = fake_deps()
    asset = _submitted(deps, "http://x.test/board.png", "image/png", _png())
    process_asset(asset.id, deps)
    stored = deps.store.get(asset.id)
    (image_url, _), = deps.image_reader.submitted
    after = apply_webhook(_delivered(asset.id, stored.prediction_id, image_url, None, status="failed"), deps)
    assert after.status is Status.PROCESSING_ERROR and "the GPU fell over" in after.error


def test_an_image_with_no_text_and_no_description_fails_saying_so():
    deps = fake_deps()
    asset = _submitted(deps, "http://x.test/blank.png", "image/png", _png())
    process_asset(asset.id, deps)
    stored = deps.store.get(asset.id)
    (image_url, _), = deps.image_reader.submitted
    after = apply_webhook(_delivered(asset.id, stored.prediction_id, image_url,
                                     "DESCRIPTION (none): NONE\nTEXT:\nNONE"), deps)
    assert after.status is Status.PROCESSING_ERROR and "no text" in after.error


class PagedPdf(Extractor):
    """A PDF of four pages whose second and fourth have no text layer."""

    def extract(self, body, content_type, url):
        return Extracted.of_sections("Survey", [Section("the harbour wall was rebuilt in granite", Location(page=1)),
                                                Section("tide tables for the spring equinox", Location(page=3))],
                                     unread_pages=(2, 4))


def _scanned(deps):
    return _submitted(deps, "http://x.test/survey.pdf", "application/pdf", b"%PDF-1.7\n" + b"x" * 200)


def _notice(job_id, asset_id, status="SUCCEEDED"):
    return {"JobId": job_id, "Status": status, "API": "StartDocumentTextDetection", "JobTag": asset_id,
            "Timestamp": 1764489600000, "DocumentLocation": {"S3ObjectName": "x", "S3Bucket": "b"}}


def test_a_scanned_pdf_starts_one_ocr_job_and_its_notice_fills_the_pages_in_each_chunk_with_its_page():
    deps = fake_deps(extractor=PagedPdf(), page_ocr=FakePageOcr())
    asset = _scanned(deps)
    assert process_asset(asset.id, deps) is Status.PROCESSING
    assert process_asset(asset.id, deps) is Status.PROCESSING  # a repeated message starts no second job
    assert deps.page_ocr.started == [(asset.staged_key, asset.id)]
    assert deps.store.get(asset.id).prediction_id == "ocr:job1"

    deps.page_ocr.results["job1"] = {2: "the keeper's log for the winter of 1887", 4: ""}
    after = apply_webhook(_notice("job1", asset.id), deps)
    assert after.status is Status.SEARCHABLE and after.title == "Survey"
    assert [(c.location.page, c.text) for c in deps.store.chunks(asset.id)] == [
        (1, "the harbour wall was rebuilt in granite"), (2, "the keeper's log for the winter of 1887"),
        (3, "tide tables for the spring equinox")]
    assert apply_webhook(_notice("job1", asset.id), deps).status is Status.SEARCHABLE  # again: nothing changes
    page = run_search(parse_request({"q": "keeper winter log", "mode": "keyword"}), deps)
    assert page.results[0].location == Location(page=2)


def test_a_crash_between_starting_the_job_and_recording_it_gets_the_same_job_back():
    deps = fake_deps(extractor=PagedPdf(), page_ocr=FakePageOcr())
    asset = _scanned(deps)
    attempts = []
    start = deps.page_ocr.start

    def crashing_start(staged_key, asset_id, attempt=""):
        attempts.append(attempt)
        if len(attempts) == 1:
            raise RuntimeError("the function timed out")
        return start(staged_key, asset_id, attempt)

    deps.page_ocr.start = crashing_start
    with pytest.raises(RuntimeError):
        process_asset(asset.id, deps)
    assert process_asset(asset.id, deps) is Status.PROCESSING  # the message, redelivered
    assert attempts[0] == attempts[1] and deps.store.get(asset.id).prediction_id == "ocr:job1"


def test_a_notice_of_an_earlier_job_or_another_asset_changes_nothing():
    deps = fake_deps(extractor=PagedPdf(), page_ocr=FakePageOcr())
    asset = _scanned(deps)
    process_asset(asset.id, deps)
    deps.page_ocr.results["job0"] = {2: "stale"}
    assert apply_webhook(_notice("job0", asset.id), deps).status is Status.PROCESSING
    assert apply_webhook(_notice("job1", "0" * 32), deps) is None


def test_a_failed_ocr_job_fails_the_asset_with_its_reason():
    deps = fake_deps(extractor=PagedPdf(), page_ocr=FakePageOcr())
    asset = _scanned(deps)
    process_asset(asset.id, deps)
    after = apply_webhook(_notice("job1", asset.id, status="FAILED"), deps)
    assert after.status is Status.PROCESSING_ERROR and "FAILED" in after.error


def test_without_ocr_the_text_layer_pages_are_indexed_and_a_scan_only_pdf_fails_saying_why():
    deps = fake_deps(extractor=PagedPdf())
    asset = _scanned(deps)
    process_asset(asset.id, deps)
    assert deps.store.get(asset.id).status is Status.SEARCHABLE
    assert [c.location.page for c in deps.store.chunks(asset.id)] == [1, 3]

    class ScanOnly(Extractor):
        def extract(self, body, content_type, url):
            return Extracted.of_sections(None, [], unread_pages=(1, 2))

    deps = fake_deps(extractor=ScanOnly())
    asset = _scanned(deps)
    assert process_asset(asset.id, deps) is Status.PROCESSING_ERROR
    assert "no OCR is configured" in deps.store.get(asset.id).error


@pytest.mark.parametrize("forgotten", [False, True])
def test_the_sweeper_reads_a_late_ocr_job_or_starts_a_forgotten_one_again(forgotten):
    from datetime import timedelta

    from allthethings.domain.assets import now

    deps = fake_deps(extractor=PagedPdf(), page_ocr=FakePageOcr())
    asset = _scanned(deps)
    process_asset(asset.id, deps)
    later = now() + timedelta(seconds=deps.settings.stuck_after_s + 1)
    report = sweep(deps, at=later)
    assert report.waiting == [asset.id]  # still running
    if forgotten:
        deps.page_ocr.forgotten.add("job1")
        assert sweep(deps, at=later).requeued == [asset.id]
        assert deps.store.get(asset.id).prediction_id is None
        process_asset(asset.id, deps)
        assert deps.page_ocr.started[-1] == (asset.staged_key, asset.id) and len(deps.page_ocr.started) == 2
    else:
        deps.page_ocr.results["job1"] = {2: "the keeper's log"}
        assert sweep(deps, at=later).finished == [asset.id]
        assert deps.store.get(asset.id).status is Status.SEARCHABLE


def test_office_bytes_that_prove_more_precise_than_their_first_bytes_correct_the_assets_type():
    from allthethings.domain.content import DOCX, OOXML

    class Docx(Extractor):
        def extract(self, body, content_type, url):
            assert content_type == OOXML
            return Extracted.of_sections("Minutes", [Section("the board approved the budget",
                                                             Location(section="Decisions"))], content_type=DOCX)

    deps = fake_deps(extractor=Docx())
    head = b"PK\x03\x04" + bytes(22) + (19).to_bytes(2, "little") + bytes(2) + b"[Content_Types].xml" + bytes(64)
    asset = _submitted(deps, "http://x.test/minutes", "application/octet-stream", head)
    assert asset.content_type == OOXML and asset.kind is Kind.DOCUMENT
    process_asset(asset.id, deps)
    done = deps.store.get(asset.id)
    assert done.status is Status.SEARCHABLE and done.content_type == DOCX and done.title == "Minutes"
    assert deps.store.chunks(asset.id)[0].location == Location(section="Decisions")


def test_a_tiff_reaches_the_vision_model_as_a_jpeg_copy_whose_delivery_is_its_own():
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (80, 40), "white").save(out, "TIFF")
    deps = fake_deps()
    asset = _submitted(deps, "http://x.test/fax.tif", "image/tiff", out.getvalue())
    assert asset.content_type == "image/tiff"
    process_asset(asset.id, deps)
    (image_url, _), = deps.image_reader.submitted
    assert f"readable/{asset.id}.jpg" in image_url and asset.staged_key not in image_url
    assert deps.blobs.objects[f"readable/{asset.id}.jpg"][:3] == b"\xff\xd8\xff"
    stored = deps.store.get(asset.id)
    after = apply_webhook(_delivered(asset.id, stored.prediction_id, image_url, "DESCRIPTION: NONE\nTEXT:\nFAX"),
                          deps)
    assert after.status is Status.SEARCHABLE
    from allthethings.services.lifecycle import delete_asset

    delete_asset(asset.id, deps)
    assert not [key for key in deps.blobs.objects if asset.id in key]


def test_a_png_the_model_reads_as_it_is_is_given_as_staged():
    deps = fake_deps()
    asset = _submitted(deps, "http://x.test/board.png", "image/png", _png())
    process_asset(asset.id, deps)
    (image_url, _), = deps.image_reader.submitted
    assert asset.staged_key in image_url and f"readable/{asset.id}" not in deps.blobs.objects
