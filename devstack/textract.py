"""A local Textract: the asynchronous text detection API this system uses, backed by a real OCR engine.

`StartDocumentTextDetection` and `GetDocumentTextDetection` in Textract's JSON 1.1 protocol, as
botocore sends them (POST /, `X-Amz-Target: Textract.<Operation>`); errors are
`{"__type", "message"}` with HTTP 400 (500 for InternalServerError), which botocore raises as
ClientError with that code. Signatures are not checked. Production code reaches it unchanged but
for the client's endpoint URL.

What Textract does and this does too: the S3 object is checked when the job starts
(InvalidS3ObjectException, UnsupportedDocumentException, DocumentTooLargeException); a document
that cannot be opened fails its job (FAILED with a StatusMessage); the same ClientRequestToken
gives the same JobId (IdempotentParameterMismatchException if the request differs); results come
as PAGE, LINE and WORD blocks, paged by MaxResults (at most 1,000) and NextToken; the completion
JSON goes to `notify` as SNS raw delivery would put it on the queue. PDF, TIFF (every frame),
PNG and JPEG are read. What it does not: geometry, confidence (the engine's lines carry none),
tables, KMS, PARTIAL_SUCCESS, the 7-day expiry. Jobs live in memory: after a restart, GetDocumentTextDetection
answers InvalidJobIdException for them, as Textract does for an expired job.

Jobs run one at a time on one worker thread (OCR uses every core already). Pages are rendered one
at a time at most `max_side_px` on the longest side and released before the next, so memory
above the OCR engine is the document's bytes plus one page: at most 2000 x 2000 x 4 bytes
(16 MB) of bitmap and a converted copy of it, whatever the page count; the results kept are the
text of the blocks (tens of bytes a word).
"""

from __future__ import annotations

import io
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

API = "StartDocumentTextDetection"
MAX_RESULTS = 1000
MAX_DOCUMENT_BYTES = 500 * 1024 * 1024  # Textract's limit for asynchronous PDF and TIFF
MAX_PAGES = 3000  # Textract's limit for asynchronous text detection
MAX_SIDE_PX = 2000


class TextractError(Exception):
    """An error answered in Textract's shape: `code` becomes `__type` and botocore's error code."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _kind(head: bytes) -> str | None:
    if head.startswith(b"%PDF") or b"%PDF-" in head[:1024]:  # pdfium, like Textract, allows junk before the header
        return "pdf"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


class DocumentFailed(Exception):
    """The document was found but cannot be read: the job ends FAILED with this message."""


def pdf_images(data: bytes, max_side_px: int) -> Iterator:
    """The pages of a PDF as PIL images, one at a time, none longer than `max_side_px`."""
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        reason = "the document is password protected" if "password" in str(exc).lower() else \
            "the document is not a valid PDF"
        raise DocumentFailed(reason) from exc
    try:
        if len(pdf) > MAX_PAGES:
            raise DocumentFailed(f"the document has more than {MAX_PAGES} pages")
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                width, height = page.get_size()  # points
                # Up to the longest side allowed (a page of images saved at 72 dpi is small in
                # points), but not past 8x (576 dpi): a tiny page enlarged further reads no better.
                scale = min(max_side_px / max(width, height, 1), 8.0)
                bitmap = page.render(scale=scale)
                try:
                    yield bitmap.to_pil()
                finally:
                    bitmap.close()
            finally:
                page.close()
    finally:
        pdf.close()


def raster_images(data: bytes, max_side_px: int) -> Iterator:
    """The frames of a TIFF (or the one image of a PNG or JPEG), one at a time, none longer than
    `max_side_px` (larger ones shrunk; smaller ones left, as OCR gains nothing from upscaling)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DocumentFailed("the image cannot be decoded") from exc
    with image:
        if getattr(image, "n_frames", 1) > MAX_PAGES:
            raise DocumentFailed(f"the document has more than {MAX_PAGES} pages")
        try:
            for frame in ImageSequence.Iterator(image):
                page = frame.convert("RGB")
                page.thumbnail((max_side_px, max_side_px))
                yield page
        except (OSError, Image.DecompressionBombError) as exc:
            raise DocumentFailed("the image cannot be decoded") from exc


class LocalTextract:
    def __init__(self, *, read_object: Callable[[str, str], bytes], notify: Callable[[dict], None],
                 host: str = "127.0.0.1", port: int = 0, max_side_px: int = MAX_SIDE_PX,
                 ocr: Callable[[object], list[str]] | None = None):
        self.read_object = read_object
        self.notify = notify
        self.max_side_px = max_side_px
        self._ocr = ocr
        self.jobs: dict[str, dict] = {}
        self.calls: dict[str, int] = {"StartDocumentTextDetection": 0, "GetDocumentTextDetection": 0}
        self.seconds_per_page: list[float] = []  # OCR time of each page read, for benchmarks
        self._tokens: dict[str, tuple[str, str]] = {}  # ClientRequestToken -> (job id, request fingerprint)
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalTextract:
        self._threads = [threading.Thread(target=self._server.serve_forever, name="textract-http", daemon=True),
                         threading.Thread(target=self._work, name="textract-ocr", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._jobs.put(None)

    # -- the API ----------------------------------------------------------------
    def start_detection(self, body: dict) -> dict:
        location = (body.get("DocumentLocation") or {}).get("S3Object") or {}
        bucket, key = location.get("Bucket"), location.get("Name")
        if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
            raise TextractError("InvalidParameterException", "DocumentLocation.S3Object needs Bucket and Name")
        channel = body.get("NotificationChannel")
        token = body.get("ClientRequestToken")
        fingerprint = json.dumps([bucket, key, location.get("Version"), channel, body.get("JobTag")], sort_keys=True)
        with self._lock:
            if token and token in self._tokens:
                job_id, known = self._tokens[token]
                if known != fingerprint:
                    raise TextractError("IdempotentParameterMismatchException",
                                        "The ClientRequestToken was used with different parameters")
                return {"JobId": job_id}
        try:
            data = self.read_object(bucket, key)
        except Exception as exc:  # whatever the store raises, Textract says it cannot get the object  # noqa: BLE001
            raise TextractError("InvalidS3ObjectException", "Unable to get object metadata from S3. Check object "
                                "key, region and/or access permissions.") from exc
        if len(data) > MAX_DOCUMENT_BYTES:
            raise TextractError("DocumentTooLargeException", "S3 object size is more than the maximum limit")
        if _kind(data[:1024]) is None:
            raise TextractError("UnsupportedDocumentException", "Request has unsupported document format")
        del data  # the worker reads it again when the job runs: queued jobs hold no document bytes
        job = {"JobId": secrets.token_hex(32), "JobStatus": "IN_PROGRESS", "JobTag": body.get("JobTag"),
               "Bucket": bucket, "Key": key, "Channel": channel, "Pages": 0, "Blocks": [], "StatusMessage": None}
        with self._lock:
            if token and token in self._tokens:  # the same token raced in on another connection
                return {"JobId": self._tokens[token][0]}
            self.jobs[job["JobId"]] = job
            if token:
                self._tokens[token] = (job["JobId"], fingerprint)
        self._jobs.put(job["JobId"])
        return {"JobId": job["JobId"]}

    def get_detection(self, body: dict) -> dict:
        job_id = body.get("JobId")
        max_results = body.get("MaxResults") or MAX_RESULTS
        if not isinstance(max_results, int) or max_results < 1:
            raise TextractError("InvalidParameterException", "MaxResults must be a positive integer")
        max_results = min(max_results, MAX_RESULTS)
        with self._lock:
            job = self.jobs.get(job_id) if isinstance(job_id, str) else None
            if job is None:
                raise TextractError("InvalidJobIdException", "An invalid job identifier was passed.")
            answer = {"JobStatus": job["JobStatus"], "DocumentMetadata": {"Pages": job["Pages"]},
                      "DetectDocumentTextModelVersion": "1.0"}
            if job["JobStatus"] == "IN_PROGRESS":
                return answer
            if job["StatusMessage"]:
                answer["StatusMessage"] = job["StatusMessage"]
            if job["JobStatus"] == "FAILED":
                return answer
            start = self._offset(job_id, body.get("NextToken"))
            answer["Blocks"] = job["Blocks"][start:start + max_results]
            if start + max_results < len(job["Blocks"]):
                answer["NextToken"] = f"{job_id}/{start + max_results}"
            return answer

    @staticmethod
    def _offset(job_id: str, token: object) -> int:
        if token is None:
            return 0
        owner, _, offset = str(token).rpartition("/")
        if owner != job_id or not offset.isdigit():
            raise TextractError("InvalidParameterException", "The NextToken is not valid for this job")
        return int(offset)

    # -- the worker -------------------------------------------------------------
    def _lines(self, image) -> list[str]:
        if self._ocr is None:
            from devstack.ocr import lines

            self._ocr = lines
        return self._ocr(image)

    def _work(self) -> None:
        while True:
            job_id = self._jobs.get()
            if job_id is None:
                return
            with self._lock:
                job = self.jobs[job_id]
            status, message = "SUCCEEDED", None
            try:
                data = self.read_object(job["Bucket"], job["Key"])
                images = pdf_images if _kind(data[:1024]) == "pdf" else raster_images
                for number, image in enumerate(images(data, self.max_side_px), start=1):
                    started = time.monotonic()
                    try:
                        texts = self._lines(image)
                    finally:
                        image.close()
                    self.seconds_per_page.append(time.monotonic() - started)
                    blocks = _blocks(number, texts)
                    with self._lock:
                        job["Pages"] = number
                        job["Blocks"].extend(blocks)
            except DocumentFailed as exc:
                status, message = "FAILED", str(exc)
            except Exception as exc:  # an engine fault fails the job, as an internal error would  # noqa: BLE001
                log.warning("text detection job %s failed: %s", job_id, exc)
                status, message = "FAILED", "Internal error while detecting text"
            with self._lock:
                job.update(JobStatus=status, StatusMessage=message)
                if status == "FAILED":
                    job["Blocks"] = []
            if job["Channel"]:
                self._publish(job)

    def _publish(self, job: dict) -> None:
        completion = {"JobId": job["JobId"], "Status": job["JobStatus"], "API": API,
                      "Timestamp": int(time.time() * 1000),
                      "DocumentLocation": {"S3ObjectName": job["Key"], "S3Bucket": job["Bucket"]}}
        if job["JobTag"]:
            completion["JobTag"] = job["JobTag"]
        try:
            self.notify(completion)
        except Exception as exc:  # a lost notice is SNS's failure mode too: the sweeper recovers  # noqa: BLE001
            log.warning("the completion of text detection job %s was not delivered: %s", job["JobId"], exc)

    # -- HTTP -------------------------------------------------------------------
    def _handler_class(self):
        owner = self
        operations = {"Textract.StartDocumentTextDetection": ("StartDocumentTextDetection", owner.start_detection),
                      "Textract.GetDocumentTextDetection": ("GetDocumentTextDetection", owner.get_detection)}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict, error: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(data)

            def _fail(self, exc: TextractError) -> None:
                self._reply(exc.status, {"__type": exc.code, "message": exc.message}, exc.code)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                target = operations.get(self.headers.get("X-Amz-Target", ""))
                if self.path.split("?")[0] != "/" or target is None:
                    return self._fail(TextractError("UnknownOperationException", "Unknown operation"))
                try:
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("not an object")
                except ValueError:
                    return self._fail(TextractError("SerializationException", "The request body is not JSON"))
                name, operation = target
                with owner._lock:
                    owner.calls[name] += 1
                try:
                    answer = operation(body)
                except TextractError as exc:
                    return self._fail(exc)
                except Exception as exc:  # noqa: BLE001 - answered as Textract does, never as a dropped connection
                    log.warning("%s failed: %s", name, exc)
                    return self._fail(TextractError("InternalServerError", "Internal server error", 500))
                self._reply(200, answer)

        return Handler


def _blocks(page: int, texts: list[str]) -> list[dict]:
    """Textract's blocks for one page: its PAGE, then its LINEs, then their WORDs, linked as
    Textract links them (PAGE -> LINE -> WORD by CHILD relationships)."""
    page_block = {"BlockType": "PAGE", "Id": str(uuid.uuid4()), "Page": page, "Relationships": []}
    lines, words = [], []
    for text in texts:
        line = {"BlockType": "LINE", "Id": str(uuid.uuid4()), "Page": page, "Text": text}
        ids = []
        for word in text.split():
            ids.append(str(uuid.uuid4()))
            words.append({"BlockType": "WORD", "Id": ids[-1], "Page": page, "Text": word, "TextType": "PRINTED"})
        if ids:
            line["Relationships"] = [{"Type": "CHILD", "Ids": ids}]
        lines.append(line)
    if lines:
        page_block["Relationships"] = [{"Type": "CHILD", "Ids": [line["Id"] for line in lines]}]
    else:
        del page_block["Relationships"]
    return [page_block, *lines, *words]
