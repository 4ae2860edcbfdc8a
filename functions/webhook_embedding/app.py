"""Embedding webhook function. Trigger: HTTP API, called by Replicate (Standard Webhooks signature).

Route: POST /webhooks/embedding/{id} with a completed prediction. The signature is
verified before the body is parsed (401, nothing changes); a malformed id -> 400,
an unknown asset -> 404; otherwise 200 with the asset's status. Applying the same
delivery twice changes nothing.
"""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.adapters.signatures import verify_replicate
from allthethings.domain.errors import InvalidInput
from allthethings.http import api
from allthethings.services.complete_embeddings import apply_embedding_prediction

logger = Logger()
app = api(logger)


@app.post("/webhooks/embedding/<asset_id>")
def embedding_done(asset_id: str) -> dict:
    event = app.current_event
    raw = event.decoded_body or ""
    verify_replicate(bootstrap.webhook_secret(), raw.encode(), event.headers or {})
    try:
        prediction = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInput("body is not JSON") from None
    if not isinstance(prediction, dict):
        raise InvalidInput("body must be a prediction object")
    asset = apply_embedding_prediction(asset_id, prediction, bootstrap.deps())
    return {"id": asset.id, "status": asset.status.value}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event, context):
    return app.resolve(event, context)
