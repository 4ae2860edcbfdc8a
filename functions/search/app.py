"""Search function. Trigger: HTTP API.

Routes: GET /api/search?q=&mode=&kind=&host=&after=&before=&limit=&cursor= ->
{"results": [{"asset", "score", "snippet", "highlights", "start_s"?, "end_s"?}], "next_cursor"}:
one result per asset, best first (the service's typed results, shaped by
`entrypoints/shapes.py`); an invalid parameter -> 400 naming the parameter.
GET /search?query=&mode=&kind=... -> the HTML results page (`entrypoints/pages.py`; a result
from a feed or sitemap names its source by title), or the sign-in page when search is keyed and
the browser has no key.
Search needs an API key unless SEARCH_ACCESS is public (the authorizer decides).
"""

from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.entrypoints import logs, pages, shapes
from allthethings.entrypoints.resolver import api
from allthethings.services.search import parse_request, search

logger = logs.logger()
app = api(logger)


@app.get("/api/search")
def search_api() -> dict:
    request = parse_request(app.current_event.query_string_parameters or {})
    return shapes.search_page(search(request, bootstrap.deps()))


@app.get("/search")
@pages.signin_required(app)
def search_page():
    return pages.search_page(app, bootstrap.deps())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
