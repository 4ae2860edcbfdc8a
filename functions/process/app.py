"""Process function. Trigger: the SQS processing queue (batches, ReportBatchItemFailures).

Each message is a task of a declared kind (`domain/tasks.py`):
{"kind": "process_asset", "asset_id", "webhook_base"} extracts, chunks and stores a submitted
asset and requests its embeddings (or its transcription); {"kind": "embed_documents",
"asset_ids", "webhook_base"}, from document ingestion, embeds those documents' stored chunks
together. The records of a batch run concurrently, so a local model can embed them together
and remote predictions are created in parallel. A record that raises is reported as a batch
item failure, retried by SQS, and after maxReceiveCount kept in the dead-letter queue.
"""

import asyncio
import json

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from allthethings import bootstrap
from allthethings.domain.tasks import from_message
from allthethings.entrypoints import logs
from allthethings.services.tasks import run_task

logger = logs.logger()
processor = AsyncBatchProcessor(event_type=EventType.SQS)


async def record_handler(record: SQSRecord) -> None:
    task = from_message(json.loads(record.body))
    statuses = await asyncio.to_thread(run_task, task, bootstrap.deps())
    logger.info("processed", extra={"kind": task.kind,
                                    "statuses": {k: v.value if v else "deleted" for k, v in statuses.items()}})


@logger.inject_lambda_context
@bootstrap.metrics_flushed
def handler(event, context):
    return async_process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                          context=context)
