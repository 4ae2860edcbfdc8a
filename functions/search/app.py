"""Search function. Trigger: HTTP API.

Routes: GET /api/search?q=&limit= -> {"results": [{"asset", "score", "snippet"}]}, one
result per asset, best first; GET /search?query= -> the HTML results page.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap, web
from allthethings.domain.errors import DomainError
from allthethings.http import api
from allthethings.services.assets import parse_limit
from allthethings.services.search import MAX_LIMIT, search

logger = Logger()
app = api(logger)


@app.get("/api/search")
def search_api() -> dict:
    params = app.current_event.query_string_parameters or {}
    limit = parse_limit(params.get("limit"), 10, MAX_LIMIT)
    return {"results": search(params.get("q"), limit, bootstrap.deps())}


@app.get("/search")
def search_page():
    query = (app.current_event.query_string_parameters or {}).get("query", "").strip()
    if not query:
        return Response(200, content_types.TEXT_HTML, web.results("", []))
    try:
        found = search(query, 10, bootstrap.deps())
    except DomainError as exc:
        return Response(400, content_types.TEXT_HTML, web.results(query, [], error=exc.message))
    return Response(200, content_types.TEXT_HTML, web.results(query, found))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event, context):
    return app.resolve(event, context)
