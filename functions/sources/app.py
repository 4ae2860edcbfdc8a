"""Sources function. Trigger: HTTP API.

Routes: POST /api/sources {"url", "refresh_interval_s"?} -> 202 a new source (its feed or sitemap
read, its items queued for submission), 200 a URL already added; GET /api/sources?limit=&cursor=
(newest first); GET /api/sources/{id} (kind, title, items by state, assets by status, last and
next refresh, last error, the first refused items with their reasons); POST
/api/sources/{id}/refresh -> 202 (read again now, behind the queue); DELETE /api/sources/{id}
[?assets=true] -> 204 (stopped; with assets=true its assets are deleted too), 202 when some of
its assets are still being deleted behind the queue. Every route needs an API key (the
authorizer's work). Errors are JSON {"error": {"code", "message"}}: 400 a bad URL or parameter,
422 an unreachable URL, 415 no feed or sitemap, 413 too large, 404 an unknown source.
"""

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, ConfigDict, StrictInt

from allthethings import bootstrap
from allthethings.domain.errors import InvalidInput
from allthethings.entrypoints import logs
from allthethings.entrypoints.resolver import api, json_response, origin, text_body
from allthethings.services.assets import parse_limit
from allthethings.services.sources import add_source, delete_source, get_source, list_sources, refresh_source

MAX_PAGE = 100
logger = logs.logger()
app = api(logger)


class NewSource(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently dropped

    url: str
    # Strict: "3600" or true is refused, as the service's own check refuses it (pydantic would coerce it).
    refresh_interval_s: StrictInt | None = None


@app.post("/api/sources")
def create():
    body = NewSource.model_validate_json(text_body(app))
    source, created = add_source(body.url, bootstrap.deps(), interval_s=body.refresh_interval_s,
                                 webhook_base=origin(app))
    return json_response(202 if created else 200, source.to_public())


@app.get("/api/sources")
def page() -> dict:
    params = app.current_event.query_string_parameters or {}
    sources, cursor = list_sources(parse_limit(params.get("limit"), 20, MAX_PAGE), params.get("cursor"),
                                   bootstrap.deps())
    return {"sources": [s.to_public() for s in sources], "next_cursor": cursor}


@app.get("/api/sources/<source_id>")
def one(source_id: str) -> dict:
    return get_source(source_id, bootstrap.deps()).to_public()


@app.post("/api/sources/<source_id>/refresh")
def refresh(source_id: str):
    return json_response(202, refresh_source(source_id, bootstrap.deps(), webhook_base=origin(app)).to_public())


@app.delete("/api/sources/<source_id>")
def delete(source_id: str):
    raw = ((app.current_event.query_string_parameters or {}).get("assets") or "false").strip().lower()
    if raw not in ("true", "false"):
        raise InvalidInput("assets must be true or false", param="assets")
    done = delete_source(source_id, bootstrap.deps(), with_assets=raw == "true", webhook_base=origin(app))
    if done:
        return Response(204, content_types.APPLICATION_JSON, "")
    return json_response(202, {"id": source_id, "deleting_assets": True})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
