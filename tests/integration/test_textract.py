"""TextractPageOcr, the production boto3 adapter, against LocalTextract, the loopback stand-in
that speaks Textract's asynchronous text detection API with a real OCR engine.

Documents are made here: PDFs whose pages are pictures of text (no text layer, as a scan has),
so every word has to come through OCR. The stand-in reads objects from a dict and "publishes"
completions to a list, as SNS raw delivery would queue them; waits are polls with deadlines.
"""

from __future__ import annotations

import io
import json
import math
import socket
import threading
import time

import pytest
from PIL import Image, ImageDraw, ImageFont

from allthethings.adapters.textract import TextractPageOcr, client_request_token
from allthethings.domain.errors import ExtractionFailed, NotFound, UpstreamUnavailable
from allthethings.ports import OcrNotice
from devstack.textract import LocalTextract

BUCKET = "staging"
TOPIC = "arn:aws:sns:us-east-1:000000000000:OcrTopic"
ROLE = "arn:aws:iam::000000000000:role/TextractPublishRole"
PAGES = {1: ["Quarterly report", "Revenue grew sharply"],
         2: ["Seven purple elephants", "danced in the garden"],
         3: ["Invoice number 4821", "Payment received"]}


def picture_of(lines: list[str]) -> Image.Image:
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 40)
    except OSError:
        font = ImageFont.load_default(size=40)
    image = Image.new("RGB", (1200, 400), "white")
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(lines):
        draw.text((60, 80 + row * 90), text, fill="black", font=font)
    return image


def scanned_pdf(pages: dict[int, list[str]]) -> bytes:
    images = [picture_of(pages[n]) for n in sorted(pages)]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:])
    return out.getvalue()


class Delivered:
    """The completions the stand-in published, in order, with a wait for one job's."""

    def __init__(self):
        self.notices: list[dict] = []
        self._changed = threading.Condition()

    def __call__(self, completion: dict) -> None:
        with self._changed:
            self.notices.append(json.loads(json.dumps(completion)))  # what a queue would carry: JSON
            self._changed.notify_all()

    def wait_for(self, job_id: str, timeout_s: float = 45) -> dict:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [n for n in self.notices if n["JobId"] == job_id]
                if found:
                    return found[0]
                if not self._changed.wait(deadline - time.monotonic()):
                    raise AssertionError(f"no completion for job {job_id} within {timeout_s} s")


@pytest.fixture(scope="module", autouse=True)
def fake_credentials():
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_TEXTRACT"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
        mp.setenv("AWS_CONFIG_FILE", "/dev/null")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], bytes]:
    return {(BUCKET, "staged/scan.pdf"): scanned_pdf(PAGES),
            (BUCKET, "staged/notes.txt"): b"plain text is not a document Textract reads",
            (BUCKET, "staged/broken.pdf"): b"%PDF-1.7\n" + b"\x00garbage" * 100}


@pytest.fixture(scope="module")
def delivered() -> Delivered:
    return Delivered()


@pytest.fixture(scope="module")
def textract(objects, delivered):
    server = LocalTextract(read_object=lambda bucket, key: objects[(bucket, key)], notify=delivered).start()
    yield server
    server.stop()


def adapter(url: str, **kwargs) -> TextractPageOcr:
    return TextractPageOcr(BUCKET, TOPIC, ROLE, endpoint_url=url, region="us-east-1", **kwargs)


@pytest.fixture(scope="module")
def scanned(textract, delivered) -> tuple[str, dict]:
    """The three-page scan's job, finished: its id and its completion as queued."""
    job_id = adapter(textract.url).start("staged/scan.pdf", "asset-1")
    return job_id, delivered.wait_for(job_id)


def test_a_finished_job_announces_itself_with_textracts_completion_json(scanned):
    job_id, completion = scanned
    assert completion["Status"] == "SUCCEEDED" and completion["API"] == "StartDocumentTextDetection"
    assert completion["DocumentLocation"] == {"S3ObjectName": "staged/scan.pdf", "S3Bucket": BUCKET}
    assert TextractPageOcr.notice_of(completion) == OcrNotice(job_id=job_id, status="SUCCEEDED", job_tag="asset-1")


def test_the_words_of_each_scanned_page_come_back_under_its_page_number(textract, scanned):
    pages = adapter(textract.url).pages(scanned[0])
    assert sorted(pages) == [1, 2, 3]
    for number, lines in PAGES.items():
        text = pages[number].lower()
        for word in " ".join(lines).lower().split():
            assert word in text, f"{word!r} missing from page {number}: {pages[number]!r}"
        others = {w for n, ls in PAGES.items() if n != number for w in " ".join(ls).lower().split()}
        assert not others & set(text.split()), f"page {number} holds another page's words: {pages[number]!r}"


def test_results_read_in_small_pages_of_blocks_are_the_same_and_cost_one_call_per_page(textract, scanned):
    whole = adapter(textract.url).pages(scanned[0])
    blocks = len(textract.jobs[scanned[0]]["Blocks"])
    before = textract.calls["GetDocumentTextDetection"]
    assert adapter(textract.url, max_results=4).pages(scanned[0]) == whole
    assert textract.calls["GetDocumentTextDetection"] - before == math.ceil(blocks / 4) > 1


def test_starting_again_for_the_same_asset_and_object_returns_the_same_job(textract, scanned):
    before = len(textract.jobs)
    assert adapter(textract.url).start("staged/scan.pdf", "asset-1") == scanned[0]
    assert len(textract.jobs) == before
    assert client_request_token("asset-1", "staged/scan.pdf") != client_request_token("asset-2", "staged/scan.pdf")


def test_an_object_that_is_not_a_document_cannot_be_read(textract):
    with pytest.raises(ExtractionFailed, match="not in a format"):
        adapter(textract.url).start("staged/notes.txt", "asset-2")


def test_a_missing_object_cannot_be_read_and_the_reason_names_no_resource(textract):
    with pytest.raises(ExtractionFailed) as caught:
        adapter(textract.url).start("staged/gone.pdf", "asset-3")
    assert "could not be read" in caught.value.message and "arn:" not in caught.value.message


def test_a_pdf_that_cannot_be_opened_fails_its_job_and_reading_it_says_why(textract, delivered):
    ocr = adapter(textract.url)
    job_id = ocr.start("staged/broken.pdf", "asset-4")
    completion = delivered.wait_for(job_id)
    assert TextractPageOcr.notice_of(completion).status == "FAILED"
    with pytest.raises(ExtractionFailed, match="not a valid PDF"):
        ocr.pages(job_id)


def test_a_job_the_service_does_not_know_is_not_found(textract):
    with pytest.raises(NotFound):
        adapter(textract.url).pages("f" * 64)


def test_a_running_job_is_worth_asking_again_later_and_every_frame_of_a_tiff_is_a_page():
    frames = [Image.new("RGB", (300 + 100 * n, 200), "white") for n in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    release, notices = threading.Event(), Delivered()

    def held_ocr(image):  # reports each frame's width, once the test lets it
        assert release.wait(30)
        return [f"width {image.width}"]

    server = LocalTextract(read_object=lambda bucket, key: out.getvalue(), notify=notices, ocr=held_ocr).start()
    try:
        ocr = adapter(server.url)
        job_id = ocr.start("staged/fax.tiff", "asset-5")
        with pytest.raises(UpstreamUnavailable, match="still running"):
            ocr.pages(job_id)
        release.set()
        assert notices.wait_for(job_id)["Status"] == "SUCCEEDED"
        assert ocr.pages(job_id) == {1: "width 300", 2: "width 400", 3: "width 500"}
    finally:
        release.set()
        server.stop()


def test_a_service_that_does_not_answer_is_worth_retrying():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamUnavailable):
        adapter(f"http://127.0.0.1:{port}", attempts=1).pages("f" * 64)


def test_a_completion_wrapped_in_an_sns_envelope_is_recognised_and_other_messages_are_not(scanned):
    completion = scanned[1]
    envelope = {"Type": "Notification", "TopicArn": TOPIC, "Message": json.dumps(completion)}
    assert TextractPageOcr.notice_of(envelope) == TextractPageOcr.notice_of(completion) is not None
    assert TextractPageOcr.notice_of({"id": "abc", "status": "succeeded", "output": []}) is None
    assert TextractPageOcr.notice_of({**completion, "API": "StartDocumentAnalysis"}) is None
    assert TextractPageOcr.notice_of({"Type": "Notification", "Message": "not json"}) is None
