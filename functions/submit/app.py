"""Submit function. Trigger: HTTP API.

Routes: GET /api/health; POST /api/assets {"url"} -> 202 new asset (or a failed one, fetched
again), 200 known URL; GET /api/assets?limit=&cursor=&status=&kind=&q= (newest first, filtered by
status and kind, comma-separated, and by text in the URL or title); GET /api/assets/{id};
GET /api/assets/{id}/thumbnail -> 302 to a short-lived URL of an image's staged thumbnail (404
for an asset without one);
POST /api/assets/{id}/retry {"refetch"?} -> 202 (409 unless failed); DELETE /api/assets/{id}
-> 204. Every route but health needs an API key (the authorizer's work, before this runs).
Errors are JSON {"error": {"code", "message"}} with the status the error type maps to.
"""

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, ConfigDict

from allthethings import bootstrap
from allthethings.domain.listing import parse_filter
from allthethings.entrypoints import logs
from allthethings.entrypoints.resolver import api, json_response, origin, text_body
from allthethings.services.assets import MAX_PAGE, get_asset, list_assets, parse_limit, thumbnail_link
from allthethings.services.lifecycle import delete_asset, retry_asset
from allthethings.services.submit_asset import submit_asset

logger = logs.logger()
app = api(logger)


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently dropped

    url: str


@app.get("/api/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/api/assets")
def create():
    # Parsed here rather than by the resolver so that a body sent without a JSON content type still works.
    submission = Submission.model_validate_json(text_body(app))
    asset, created = submit_asset(submission.url, bootstrap.deps(), webhook_base=origin(app))
    return json_response(202 if created else 200, asset.to_public())


@app.get("/api/assets")
def page() -> dict:
    params = app.current_event.query_string_parameters or {}
    assets, cursor = list_assets(parse_limit(params.get("limit"), 20, MAX_PAGE), params.get("cursor"), bootstrap.deps(),
                                 parse_filter(params))
    return {"assets": [a.to_public() for a in assets], "next_cursor": cursor}


@app.get("/api/assets/<asset_id>")
def one(asset_id: str) -> dict:
    return get_asset(asset_id, bootstrap.deps()).to_public()


@app.get("/api/assets/<asset_id>/thumbnail")
def thumbnail(asset_id: str):
    # A redirect to the staged derivative: the bytes never pass through the function.
    location = thumbnail_link(asset_id, bootstrap.deps())
    return Response(302, content_types.APPLICATION_JSON, "", headers={"Location": location,
                                                                     "Cache-Control": "private, max-age=600"})


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refetch: bool = False  # fetch the URL again even when the staged body could be reused


@app.post("/api/assets/<asset_id>/retry")
def retry(asset_id: str):
    options = Retry.model_validate_json(text_body(app).strip() or "{}")  # no body: the defaults
    asset = retry_asset(asset_id, bootstrap.deps(), webhook_base=origin(app), refetch=options.refetch)
    return json_response(202, asset.to_public())


@app.delete("/api/assets/<asset_id>")
def delete(asset_id: str):
    delete_asset(asset_id, bootstrap.deps())
    return Response(204, content_types.APPLICATION_JSON, "")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
