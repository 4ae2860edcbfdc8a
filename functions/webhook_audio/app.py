"""Audio webhook function. Trigger: HTTP API, called by Replicate when a transcription completes.

Route: POST /webhooks/audio/{id}. The signature is verified first (401); a malformed id
-> 400; an unknown asset -> 404. This release indexes text, HTML and PDF only, so no
asset ever awaits a transcription and a verified delivery for a known asset -> 409.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.adapters.signatures import verify_replicate
from allthethings.domain.errors import Conflict
from allthethings.http import api
from allthethings.services.assets import get_asset

logger = Logger()
app = api(logger)


@app.post("/webhooks/audio/<asset_id>")
def transcription_done(asset_id: str) -> dict:
    event = app.current_event
    verify_replicate(bootstrap.webhook_secret(), (event.decoded_body or "").encode(), event.headers or {})
    asset = get_asset(asset_id, bootstrap.deps())
    raise Conflict(f"asset {asset.id} is {asset.kind.value if asset.kind else 'unknown'}, not awaiting a transcription")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event, context):
    return app.resolve(event, context)
