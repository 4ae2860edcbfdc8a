"""Search function. Trigger: HTTP API.

Routes: GET /api/search?q=&mode=&kind=&host=&after=&before=&limit=&cursor= ->
{"results": [{"asset", "score", "snippet", "highlights", "start_s"?, "end_s"?}], "next_cursor"}:
one result per asset, best first; invalid parameters -> 400 naming the parameter.
GET /search?query=&mode=&kind=... -> the HTML results page (or the sign-in page).
Search needs an API key unless SEARCH_ACCESS is public (the authorizer decides).
"""

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.domain.errors import DomainError
from allthethings.entrypoints import html, logs
from allthethings.entrypoints.resolver import api, needs_signin
from allthethings.services.search import parse_request, search

logger = logs.logger()
app = api(logger)


@app.get("/api/search")
def search_api() -> dict:
    request = parse_request(app.current_event.query_string_parameters or {})
    results, next_cursor = search(request, bootstrap.deps())
    return {"results": results, "next_cursor": next_cursor}


@app.get("/search")
def search_page():
    params = app.current_event.query_string_parameters or {}
    if needs_signin(app):  # search is keyed (SEARCH_ACCESS=key) and the browser has no key
        query = app.current_event.raw_event.get("rawQueryString") or ""
        return Response(401, content_types.TEXT_HTML, html.signin("/search" + (f"?{query}" if query else "")))
    if not (params.get("query") or "").strip():
        return Response(200, content_types.TEXT_HTML, html.results(params, [], None))
    try:
        results, next_cursor = search(parse_request(params, query_param="query"), bootstrap.deps())
    except DomainError as exc:
        return Response(400, content_types.TEXT_HTML, html.results(params, [], None, error=exc.message))
    return Response(200, content_types.TEXT_HTML, html.results(params, results, next_cursor))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
