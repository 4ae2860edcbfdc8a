"""S3 staging and SQS queues through boto3; clients built on first use, once per container.

Locally the same code talks to moto: boto3 honours AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import BinaryIO

from allthethings.domain.errors import NotFound, UpstreamUnavailable
from allthethings.ports import BlobStore, TaskQueue

SINGLE_PUT_BYTES = 8 * 1024 * 1024
_clients: dict[str, object] = {}


def client(service: str):
    if service not in _clients:
        import boto3
        from botocore.config import Config

        _clients[service] = boto3.client(service, config=Config(retries={"max_attempts": 4, "mode": "standard"}))
    return _clients[service]


def _wrap(what: str, fn, *args, **kwargs):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchUpload", "404"):
            raise NotFound(f"{what} failed: the object does not exist") from exc
        raise UpstreamUnavailable(f"{what} failed ({type(exc).__name__})") from exc
    except BotoCoreError as exc:
        raise UpstreamUnavailable(f"{what} failed ({type(exc).__name__})") from exc


class S3BlobStore(BlobStore):
    def __init__(self, bucket: str):
        self.bucket = bucket

    def put(self, key: str, body: BinaryIO, content_type: str) -> None:
        body.seek(0, 2)
        size = body.tell()
        body.seek(0)
        if size <= SINGLE_PUT_BYTES:  # one request; the transfer manager's thread pool costs more
            _wrap("staging the body in S3", client("s3").put_object, Bucket=self.bucket, Key=key, Body=body.read(),
                  ContentType=content_type)
        else:  # multipart, streamed from the spooled file with bounded memory
            _wrap("staging the body in S3", client("s3").upload_fileobj, body, self.bucket, key,
                  ExtraArgs={"ContentType": content_type})

    def get(self, key: str) -> bytes:
        def read() -> bytes:
            return client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()

        return _wrap("reading the staged body from S3", read)

    def delete(self, key: str) -> None:
        _wrap("deleting the staged body from S3", client("s3").delete_object, Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            _wrap("looking for the staged body in S3", client("s3").head_object, Bucket=self.bucket, Key=key)
        except NotFound:
            return False
        return True

    def presigned_url(self, key: str, expires_s: int) -> str:
        return _wrap("signing a URL of the staged body", client("s3").generate_presigned_url, "get_object",
                     Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)

    def start_upload(self, key: str, content_type: str) -> str:
        return _wrap("starting a multipart upload to S3", client("s3").create_multipart_upload,
                     Bucket=self.bucket, Key=key, ContentType=content_type)["UploadId"]

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        return _wrap(f"uploading part {number} to S3", client("s3").upload_part, Bucket=self.bucket, Key=key,
                     UploadId=upload_id, PartNumber=number, Body=data)["ETag"]

    def complete_upload(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]
        _wrap("completing a multipart upload to S3", client("s3").complete_multipart_upload, Bucket=self.bucket,
              Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            _wrap("aborting a multipart upload to S3", client("s3").abort_multipart_upload, Bucket=self.bucket,
                  Key=key, UploadId=upload_id)
        except NotFound:  # NoSuchUpload: finished or aborted already
            pass

    def sha256(self, key: str) -> str:
        def digest() -> str:
            hashed = hashlib.sha256()
            for piece in client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
                hashed.update(piece)
            return hashed.hexdigest()

        return _wrap("reading the staged body back from S3", digest)


class SqsQueue(TaskQueue):
    def __init__(self, url: str, name: str = "the queue"):
        self.url = url
        self.name = name  # what an error says failed: "sending to the webhook queue failed"

    def send(self, message: dict) -> None:
        _wrap(f"sending to {self.name}", client("sqs").send_message, QueueUrl=self.url,
              MessageBody=json.dumps(message, separators=(",", ":")))


def redrive(dead_letter_url: str, queue_url: str, *, limit: int | None = None) -> int:
    """Move messages from a dead-letter queue back to its queue; return how many moved.

    Each message is sent to the queue before it is deleted from the dead-letter queue, so a
    failure part-way can duplicate a message (the consumers are idempotent) but never lose one.
    At most the messages waiting when it starts are moved (as SQS's own redrive does): a poison
    message that fails straight back into the dead-letter queue is not chased for ever.
    """
    sqs = client("sqs")
    if limit is None:
        limit = int(_wrap("reading the dead-letter queue", sqs.get_queue_attributes, QueueUrl=dead_letter_url,
                          AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
    moved = 0
    while moved < limit:
        batch = _wrap("reading the dead-letter queue", sqs.receive_message, QueueUrl=dead_letter_url,
                      MaxNumberOfMessages=min(10, limit - moved), WaitTimeSeconds=1, MessageAttributeNames=["All"],
                      VisibilityTimeout=60).get("Messages", [])
        if not batch:
            break
        entries = [{"Id": str(i), "MessageBody": m["Body"], **(
            {"MessageAttributes": m["MessageAttributes"]} if m.get("MessageAttributes") else {})}
            for i, m in enumerate(batch)]
        sent = _wrap("sending to the queue", sqs.send_message_batch, QueueUrl=queue_url, Entries=entries)
        ok = {e["Id"] for e in sent.get("Successful", [])}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch) if str(i) in ok]
        if done:
            _wrap("deleting from the dead-letter queue", sqs.delete_message_batch, QueueUrl=dead_letter_url,
                  Entries=done)
        moved += len(done)
        if len(done) < len(batch):
            raise UpstreamUnavailable(f"{len(batch) - len(done)} messages could not be sent back; they stay put")
    return moved
