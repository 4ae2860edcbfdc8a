"""Fetch function. Trigger: the SQS fetch queue (one message per invocation, ReportBatchItemFailures).

Each message is {"kind": "fetch_asset", "asset_id", "webhook_base", ...}: the body of a FETCHING
asset, too large or too slow to read inside the submission request, is streamed into the staging
bucket in multipart parts, for as long as this invocation has time (FETCH_SLICE_S, and a margin
before the function's timeout); the rest is queued for the next invocation, which continues with
a Range request. A staged body moves the asset on to processing. A record that raises is
retried by SQS and, after maxReceiveCount, kept in the dead-letter queue.
"""

import json
import time

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from allthethings import bootstrap
from allthethings.domain.tasks import FetchAsset, from_message
from allthethings.entrypoints import logs
from allthethings.services.fetch_asset import fetch_asset

MARGIN_S = 30  # kept back from the function's timeout to upload the last part and queue the rest
logger = logs.logger()
processor = BatchProcessor(event_type=EventType.SQS)


def until(context) -> float:
    """When this invocation stops fetching (a time.monotonic() value)."""
    remaining_s = context.get_remaining_time_in_millis() / 1000 - MARGIN_S
    return time.monotonic() + max(1.0, min(bootstrap.deps().settings.fetch_slice_s, remaining_s))


def handler_for(context):
    deadline = until(context)

    def record_handler(record: SQSRecord) -> None:
        task = from_message(json.loads(record.body))
        if not isinstance(task, FetchAsset):
            raise ValueError(f"a {task.kind} message does not belong on the fetch queue")
        status = fetch_asset(task, bootstrap.deps(), until=deadline)
        logger.info("fetched", extra={"asset_id": task.asset_id, "offset": task.offset,
                                      "status": status.value if status else "deleted"})

    return record_handler


@logger.inject_lambda_context
@bootstrap.metrics_flushed
def handler(event, context):
    return process_partial_response(event=event, record_handler=handler_for(context), processor=processor,
                                    context=context)
