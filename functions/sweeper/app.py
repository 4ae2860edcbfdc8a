"""Sweeper function. Trigger: a schedule (EventBridge, every 10 minutes); no HTTP route.

Webhooks get lost and queue messages get dead-lettered, so an asset can wait forever on
something outside its record. Each run looks at assets not updated for STUCK_AFTER_S in
SUBMITTED, PROCESSING, PROCESSED or GENERATING_EMBEDDINGS (services/sweeper.py says how):
- one waiting on a Replicate prediction: Replicate is asked for it; a finished one is
  applied exactly as its webhook would have been, an unknown one fails the asset, a running
  one is left until GIVE_UP_AFTER_S;
- one waiting on a processing message: the message is sent again (every step is idempotent),
  until GIVE_UP_AFTER_S;
- past GIVE_UP_AFTER_S: an error status that says why, which the user can retry.
When Replicate cannot answer, the asset is left for the next run. Each run also queues a read of
every source whose refresh interval has passed. The webhook URLs of the
predictions it starts use API_URL (no request of its own to take an origin from).

Contract: the event is ignored; returns {"finished", "requeued", "failed", "waiting",
"unreachable", "sources"} counts, which are also logged ("sources": sources whose refresh was due,
queued for the source worker). A run that raises is retried by EventBridge.
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
