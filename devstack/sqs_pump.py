"""Driving SQS-triggered functions the way Lambda's event-source mapping does.

Long-polls the queue, hands batches to the handler as SQS events, deletes what
succeeded, and leaves failed records to reappear; the queue's redrive policy
moves a record to its dead-letter queue after maxReceiveCount receives. Locally,
a failed record reappears after `retry_delay_s` instead of the full visibility
timeout, so retries and redrives can be watched within seconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from devstack.gateway import LambdaContext, import_instance, load_handler
from devstack.template import Function, QueueTrigger

log = logging.getLogger(__name__)


def sqs_record(message: dict, queue_arn: str, region: str) -> dict:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class QueuePump(threading.Thread):
    def __init__(self, sqs, function: Function, trigger: QueueTrigger, queue_url: str, queue_arn: str,
                 retry_delay_s: int = 2, region: str = "us-east-1", instance: int = 0):
        super().__init__(name=f"pump-{function.logical_id}-{instance}", daemon=True)
        self.instance = instance
        self.sqs = sqs
        self.function = function
        self.trigger = trigger
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.retry_delay_s = retry_delay_s
        self.region = region
        self.stopping = threading.Event()
        self.batches = 0

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        # Each poller invokes its own container: handler modules keep per-invocation state.
        handler = load_handler(self.function) if self.instance == 0 else \
            getattr(import_instance(self.function, self.instance), self.function.handler.rsplit(".", 1)[1])
        while not self.stopping.is_set():
            try:
                self.poll_once(handler)
            except Exception:  # keep the mapping alive, as Lambda does  # noqa: BLE001
                log.exception("polling %s failed", self.queue_url)
                self.stopping.wait(1)

    def poll_once(self, handler) -> int:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.trigger.batch_size, 10), WaitTimeSeconds=1,
            AttributeNames=["All"], MessageAttributeNames=["All"])
        messages = response.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        try:
            result = handler(event, LambdaContext(self.function, timeout_s=900))
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])} \
                if self.trigger.report_failures else set()
        except Exception:  # the whole batch failed  # noqa: BLE001
            log.exception("%s raised; the batch will be retried", self.function.logical_id)
            failed = {m["MessageId"] for m in messages}
        self.batches += 1
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[i:i + 10])])
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=self.retry_delay_s)
        return len(messages)
