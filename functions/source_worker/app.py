"""Source worker function. Trigger: the SQS source queue (one message per invocation,
ReportBatchItemFailures).

Each message is one of (domain/tasks.py): {"kind": "read_source", "source_id", "force"?} — read
the source (a conditional GET unless forced), remember the items it lists that are new, submit
them; {"kind": "submit_entries", "source_id"} — submit its pending items; {"kind":
"delete_source_assets", "source_id"} — delete a deleted source's assets. Each works for as long
as this invocation has time (SOURCE_SLICE_S, and a margin before the function's timeout) and
queues the rest. A record that raises (the store or a queue failing) is retried by SQS and, after
maxReceiveCount, kept in the dead-letter queue; the items it had not recorded stay pending.
"""

import json
import time

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from allthethings import bootstrap
from allthethings.domain.tasks import SourceTask, from_message
from allthethings.entrypoints import logs
from allthethings.services.sources import run_task

MARGIN_S = 60  # kept back from the function's timeout: a submission in flight finishes, the rest is queued
logger = logs.logger()
processor = BatchProcessor(event_type=EventType.SQS)


def until(context) -> float:
    """When this invocation stops starting work (a time.monotonic() value)."""
    remaining_s = context.get_remaining_time_in_millis() / 1000 - MARGIN_S
    return time.monotonic() + max(1.0, min(bootstrap.deps().settings.source_slice_s, remaining_s))


def handler_for(context):
    deadline = until(context)

    def record_handler(record: SQSRecord) -> None:
        task = from_message(json.loads(record.body))
        if not isinstance(task, SourceTask):
            raise ValueError(f"a {task.kind} message does not belong on the source queue")
        outcome = run_task(task, bootstrap.deps(), until=deadline)
        logger.info("source task", extra={"source_id": task.source_id, "task": task.kind, "outcome": outcome})

    return record_handler


@logger.inject_lambda_context
@bootstrap.metrics_flushed
def handler(event, context):
    return process_partial_response(event=event, record_handler=handler_for(context), processor=processor,
                                    context=context)
