"""Process function. Trigger: the SQS processing queue (batches, ReportBatchItemFailures).

Each message is {"asset_id", "webhook_base"}: extract, chunk, store and request
embeddings for that asset. A record that raises is reported as a batch item
failure, retried by SQS, and after maxReceiveCount lands in the dead-letter queue.
"""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from allthethings import bootstrap
from allthethings.services.process_asset import process_asset

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    message = json.loads(record.body)
    status = process_asset(message["asset_id"], bootstrap.deps(), webhook_base=message.get("webhook_base"))
    logger.info("processed", extra={"asset_id": message["asset_id"], "status": status})


@logger.inject_lambda_context
def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
