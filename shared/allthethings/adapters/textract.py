"""Amazon Textract's asynchronous text detection (PageOcr) through boto3.

A job is started on the staged S3 object with a NotificationChannel: Textract publishes its
completion to an SNS topic that delivers, raw, to the webhook queue, whose consumer then reads
the text. Calls per document: 1 StartDocumentTextDetection, then ⌈blocks / max_results⌉
GetDocumentTextDetection (max_results 1,000, Textract's largest), where blocks counts every
block Textract returns - one PAGE per page, one LINE per line and one WORD per word, so about
⌈(lines + words) / 1000⌉; reading stops with ExtractionFailed after `max_calls` (1,000 calls:
a million blocks, beyond what Textract's 3,000-page limit yields for ordinary pages).

In AWS `endpoint_url` is None (boto3 then also honours AWS_ENDPOINT_URL_TEXTRACT); locally it
is devstack's LocalTextract, which speaks the same API with a real OCR engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading

from allthethings.domain.errors import ExtractionFailed, NotFound, UpstreamUnavailable
from allthethings.ports import OcrNotice, PageOcr

log = logging.getLogger(__name__)

API = "StartDocumentTextDetection"
MAX_RESULTS = 1000  # Textract's largest page of blocks
MAX_CALLS = 1000
_JOB_TAG = re.compile(r"[a-zA-Z0-9_.\-:]{1,64}")  # Textract's pattern for JobTag

# Errors that say the document itself cannot be read: retrying changes nothing. The reasons are
# shown to users, so they name no bucket, ARN or Textract internals.
_DOCUMENT_ERRORS = {
    "InvalidS3ObjectException": "the staged document could not be read for text detection",
    "UnsupportedDocumentException": "the document is not in a format text detection reads (PDF, TIFF, PNG, JPEG)",
    "BadDocumentException": "the document is damaged or cannot be opened for text detection",
    "DocumentTooLargeException": "the document is too large for text detection (at most 500 MB and 3,000 pages)",
    "InvalidParameterException": "text detection refused the document",
}
_ARN = re.compile(r"arn:[\w\-]+:[^\s\"']*")


def client_request_token(asset_id: str, staged_key: str, attempt: str = "") -> str:
    """The idempotency token of a job: the same asset, object and attempt give the same token, so
    a call boto3 repeats (or a redelivered process message of the same attempt) gets Textract's
    existing job, not a second bill, while a retry of a failed asset starts a new one. 64 hex
    characters, inside Textract's limit and alphabet whatever the key holds."""
    return hashlib.sha256(f"{asset_id}\0{staged_key}\0{attempt}".encode()).hexdigest()


def _readable(message: str | None) -> str:
    """Textract's status message with any ARN removed and its length bounded (it reaches users)."""
    text = _ARN.sub("(resource)", (message or "").strip())[:300]
    return text or "no reason given"


class TextractPageOcr(PageOcr):
    def __init__(self, bucket: str, topic_arn: str, role_arn: str, *, endpoint_url: str | None = None,
                 region: str | None = None, max_results: int = MAX_RESULTS, max_calls: int = MAX_CALLS,
                 attempts: int = 4):
        self.bucket = bucket
        self.topic_arn = topic_arn
        self.role_arn = role_arn
        self.endpoint_url = endpoint_url
        self.region = region
        self.max_results = max(1, min(max_results, MAX_RESULTS))
        self.max_calls = max_calls
        self.attempts = attempts
        self._client = None
        self._client_lock = threading.Lock()

    def _textract(self):
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    # Textract's Start and Get quotas are a few calls a second: standard retries
                    # absorb a burst of throttling before it becomes UpstreamUnavailable.
                    self._client = boto3.client(
                        "textract", endpoint_url=self.endpoint_url, region_name=self.region,
                        config=Config(retries={"max_attempts": self.attempts, "mode": "standard"}, connect_timeout=5,
                                      read_timeout=30))
        return self._client

    def _call(self, what: str, operation: str, **kwargs) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._textract(), operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidJobIdException":
                raise NotFound(f"{what} failed: Textract has no such job (expired, or started elsewhere)") from exc
            if code in _DOCUMENT_ERRORS:
                raise ExtractionFailed(_DOCUMENT_ERRORS[code]) from exc
            # Throttling, quotas, 5xx, and configuration faults (access denied, a KMS key) that an
            # operator fixes: the message is retried and, failing that, dead-lettered.
            raise UpstreamUnavailable(f"{what} failed ({code or type(exc).__name__})") from exc
        except BotoCoreError as exc:  # connection refused or reset, timeouts
            raise UpstreamUnavailable(f"{what} failed ({type(exc).__name__})") from exc

    def start(self, staged_key: str, asset_id: str, attempt: str = "") -> str:
        if not _JOB_TAG.fullmatch(asset_id):
            raise ValueError("an asset id must fit Textract's JobTag (64 of [a-zA-Z0-9_.-:])")
        answer = self._call(
            "starting text detection", "start_document_text_detection",
            DocumentLocation={"S3Object": {"Bucket": self.bucket, "Name": staged_key}},
            NotificationChannel={"SNSTopicArn": self.topic_arn, "RoleArn": self.role_arn},
            JobTag=asset_id, ClientRequestToken=client_request_token(asset_id, staged_key, attempt))
        return answer["JobId"]

    def pages(self, job_id: str) -> dict[int, str]:
        lines: dict[int, list[str]] = {}
        token = None
        for _ in range(self.max_calls):
            kwargs = {"JobId": job_id, "MaxResults": self.max_results, **({"NextToken": token} if token else {})}
            answer = self._call("reading detected text", "get_document_text_detection", **kwargs)
            status = answer.get("JobStatus")
            if status == "IN_PROGRESS":
                raise UpstreamUnavailable("text detection is still running")
            if status == "FAILED":
                raise ExtractionFailed(f"text detection failed: {_readable(answer.get('StatusMessage'))}")
            if status == "PARTIAL_SUCCESS" and token is None:
                for warning in answer.get("Warnings") or []:
                    log.warning("text detection job %s: %s on pages %s", job_id, warning.get("ErrorCode"),
                                warning.get("Pages"))
            for block in answer.get("Blocks") or []:
                if block.get("BlockType") == "LINE" and block.get("Text"):
                    lines.setdefault(int(block.get("Page", 1)), []).append(block["Text"])
            token = answer.get("NextToken")
            if not token:
                return {page: "\n".join(texts) for page, texts in sorted(lines.items())}
        raise ExtractionFailed(f"the document's detected text is longer than {self.max_calls} pages of results")

    @staticmethod
    def notice_of(message: dict) -> OcrNotice | None:
        if not isinstance(message, dict):
            return None
        if message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
            # Delivered without raw message delivery: the completion is the SNS envelope's Message.
            try:
                inner = json.loads(message["Message"])
            except ValueError:
                return None
            return TextractPageOcr.notice_of(inner) if isinstance(inner, dict) and "Type" not in inner else None
        job_id, status, tag = message.get("JobId"), message.get("Status"), message.get("JobTag")
        if message.get("API") != API or not isinstance(job_id, str) or not isinstance(status, str):
            return None
        return OcrNotice(job_id=job_id, status=status, job_tag=tag if isinstance(tag, str) else None)
