"""Process function. Trigger: the SQS processing queue (batches, ReportBatchItemFailures).

Each message is {"asset_id", "webhook_base"}: extract, chunk, store and request
embeddings for that asset; or {"asset_ids", "webhook_base"} from document ingestion:
embed those documents' stored chunks together. The records of a batch are processed concurrently (so a
local model can embed them together, and remote predictions are created in
parallel); a record that raises is reported as a batch item failure, retried by
SQS, and after maxReceiveCount lands in the dead-letter queue.
"""

import asyncio
import json

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.services.documents import embed_documents
from allthethings.services.process_asset import process_asset

logger = logs.logger()
processor = AsyncBatchProcessor(event_type=EventType.SQS)


async def record_handler(record: SQSRecord) -> None:
    message = json.loads(record.body)
    if "asset_ids" in message:
        statuses = await asyncio.to_thread(embed_documents, message["asset_ids"], bootstrap.deps(),
                                           webhook_base=message.get("webhook_base"))
        logger.info("documents embedded", extra={"count": len(statuses)})
        return
    status = await asyncio.to_thread(process_asset, message["asset_id"], bootstrap.deps(),
                                     webhook_base=message.get("webhook_base"))
    logger.info("processed", extra={"asset_id": message["asset_id"], "status": status})


@logger.inject_lambda_context
@bootstrap.metrics_flushed
def handler(event, context):
    return async_process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                          context=context)
