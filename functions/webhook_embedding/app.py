"""Embedding webhook function. Trigger: HTTP API, called by Replicate when an embedding completes.

Route: POST /webhooks/embedding/{id}. The signature (Replicate's, or Hookdeck's, by setting)
is verified before the body is read: 401 and nothing changes. A malformed id -> 400, an
unknown asset -> 404 (the sender should not retry). Otherwise the delivery is put on the
webhook queue and answered 202 at once; the webhook consumer applies it.
"""

from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.entrypoints.resolver import api, json_response, origin, raw_body
from allthethings.services.webhooks import receive_webhook

logger = logs.logger()
app = api(logger)


@app.post("/webhooks/embedding/<asset_id>")
def embedding_done(asset_id: str):
    event = app.current_event
    asset = receive_webhook("embedding", asset_id, raw_body(app), event.headers or {}, bootstrap.deps(),
                            webhook_base=origin(app))
    return json_response(202, {"id": asset.id, "accepted": True})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event, context):
    return app.resolve(event, context)
