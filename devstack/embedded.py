"""The embedded AWS parts of the local stack (LOCAL_AWS=embedded): the template's queues in one
SQLite file and its bucket as a folder, both under DATA_DIR/aws, surviving restarts.

The functions reach them through the layer's own adapters (bootstrap builds them from
EMBEDDED_AWS_DIR); this module creates the queues from the template and gives the queue pumps
the few calls of SQS's client API they make, answered by the embedded queues.
"""

from __future__ import annotations

import hashlib

from allthethings.adapters.embedded_queue import EmbeddedQueues, shared_queues
from devstack.template import Template

ACCOUNT = "000000000000"


def arn(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def create_queues(queues: EmbeddedQueues, template: Template) -> dict[str, str]:
    """Every queue of the template (dead-letter queues first) with its visibility timeout,
    redrive policy and maximum message size; logical id -> the name the functions use."""
    names = {}
    for queue in sorted(template.queues.values(), key=lambda q: q.dead_letter is not None):
        properties = template.raw["Resources"][queue.logical_id].get("Properties") or {}
        queues.create(queue.logical_id, visibility_s=queue.visibility_timeout, dead_letter=queue.dead_letter,
                      max_receives=queue.max_receive_count,
                      max_bytes=int(properties.get("MaximumMessageSize", 1024 * 1024)))
        names[queue.logical_id] = queue.logical_id
    return names


class EmbeddedSqs:
    """The calls of boto3's SQS client that the queue pumps make (and send_message, which the
    failure drill makes), on the embedded queues (a queue URL is the queue's name)."""

    def __init__(self, path: str):
        self.queues = shared_queues(path)

    def receive_message(self, *, QueueUrl, MaxNumberOfMessages=1, WaitTimeSeconds=0, **_):  # noqa: N803
        got = self.queues.receive(QueueUrl, limit=MaxNumberOfMessages, wait_s=WaitTimeSeconds)
        return {"Messages": [{
            "MessageId": m.message_id, "ReceiptHandle": m.receipt, "Body": m.body,
            "MD5OfBody": hashlib.md5(m.body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
            "Attributes": {"ApproximateReceiveCount": str(m.receives), "SentTimestamp": str(int(m.sent_at * 1000))},
        } for m in got]}

    def send_message(self, *, QueueUrl, MessageBody, DelaySeconds=0, **_):  # noqa: N803
        message_id = self.queues.send(QueueUrl, MessageBody, delay_s=DelaySeconds)
        return {"MessageId": message_id,
                "MD5OfMessageBody": hashlib.md5(MessageBody.encode()).hexdigest()}  # noqa: S324 - SQS's checksum

    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803
        self.queues.delete(QueueUrl, *(entry["ReceiptHandle"] for entry in Entries))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def change_message_visibility(self, *, QueueUrl, ReceiptHandle, VisibilityTimeout):  # noqa: N803
        self.queues.change_visibility(QueueUrl, ReceiptHandle, VisibilityTimeout)

    def get_queue_attributes(self, *, QueueUrl, AttributeNames=(), **_):  # noqa: N803
        depth = self.queues.depth(QueueUrl)
        return {"Attributes": {"QueueArn": arn(QueueUrl), "ApproximateNumberOfMessages": str(depth["visible"]),
                               "ApproximateNumberOfMessagesNotVisible": str(depth["not_visible"])}}
