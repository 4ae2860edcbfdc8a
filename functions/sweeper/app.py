"""Sweeper function. Trigger: a schedule (EventBridge, every 10 minutes).

Finds assets stuck in a step past STUCK_AFTER_S, asks Replicate for the real status of
the prediction each waits on, and finishes, re-queues or fails them (services/sweeper.py
says how). Returns the counts, which are also logged.
"""

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.services.sweeper import sweep

logger = logs.logger()


@logger.inject_lambda_context
@bootstrap.metrics_flushed
def handler(event, context):
    counts = sweep(bootstrap.deps()).counts()
    logger.info("swept", extra=counts)
    return counts
