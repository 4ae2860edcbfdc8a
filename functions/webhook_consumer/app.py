"""Webhook consumer function. Trigger: the SQS webhook queue (batches, ReportBatchItemFailures).

Each message is a verified delivery {"kind": "audio"|"image"|"embedding", "asset_id", "delivery_id",
"webhook_base", "body"}, or, for a body too large for the queue, a claim check that names it in
the staging bucket ("body_key" instead of "body"; read here, deleted once applied): a finished
transcription becomes timed chunks and an embedding request; a finished group of embeddings
is kept and the next group requested, and the last makes the asset SEARCHABLE; a failed or
canceled prediction sets the asset's error status with Replicate's reason. A message may also be
Amazon Textract's completion notice of a scanned PDF's text detection (through SNS, raw): the
job's text fills the PDF's unread pages in, and the asset is chunked page by page. Applying twice
changes nothing. A record that raises (a claimed body missing while its delivery is still due,
for one) is retried by SQS and, after maxReceiveCount, kept in the dead-letter queue.
"""

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.services.webhooks import apply_webhook

logger = logs.logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    message = json.loads(record.body)
    asset = apply_webhook(message, bootstrap.deps())
    logger.info("webhook applied", extra={"asset_id": asset.id if asset else message.get("asset_id"),
                                          "kind": message.get("kind") or message.get("API"),
                                          "delivery_id": message.get("delivery_id"),
                                          "claim_check": message.get("body_key"),
                                          "status": asset.status if asset else "deleted"})


@logger.inject_lambda_context
@bootstrap.metrics_flushed
def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
