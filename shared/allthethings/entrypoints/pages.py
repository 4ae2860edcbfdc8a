"""The browser's side of the API: the page flows the pages and search functions route to.

Each flow parses a form or a query, calls one service, and answers with a rendered page or a
303 to one (`html.py` renders; nothing here decides what a service decides). A page that
needs a key and has none shows the sign-in form (`signin_required`), so the browser never
meets a bare 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from allthethings.domain.errors import DomainError, InvalidInput
from allthethings.domain.listing import parse_filter
from allthethings.entrypoints import html
from allthethings.entrypoints.resolver import (
    html_response,
    needs_signin,
    redirect,
    session_cookie,
    status_of,
    text_body,
)
from allthethings.services import Deps
from allthethings.services.access import configured_keys, safe_next_path
from allthethings.services.assets import list_assets, view_asset
from allthethings.services.search import parse_request, search

HOME_ROWS = 50


def signin_required(app: APIGatewayHttpResolver):
    """A route decorator: without a valid key (the authorizer's mark), answer the sign-in page,
    which returns the browser to this page (a GET) or to the home page (a form's POST)."""

    def decorate(route: Callable) -> Callable:
        @functools.wraps(route)
        def guarded(*args, **kwargs):
            if needs_signin(app):
                return html_response(401, html.signin(_return_path(app)))
            return route(*args, **kwargs)

        return guarded

    return decorate


def _return_path(app: APIGatewayHttpResolver) -> str:
    event = app.current_event
    if event.http_method != "GET":
        return "/"
    query = event.raw_event.get("rawQueryString") or ""
    return event.path + (f"?{query}" if query else "")


def form(app: APIGatewayHttpResolver) -> dict[str, str]:
    """A URL-encoded form's fields (the first value of each)."""
    return {k: v[0] for k, v in parse_qs(text_body(app)).items()}


def home(deps: Deps, status: int = 200, error: str | None = None, params: dict | None = None) -> Response:
    """The submission form and a page of assets, newest first, filtered by the query's `status`,
    `kind` and `q` and paged by its `cursor` (GET /api/assets's parameters), with an error above
    them if one is given."""
    params = params or {}
    try:
        assets, next_cursor = list_assets(HOME_ROWS, params.get("cursor"), deps, parse_filter(params))
    except InvalidInput as exc:  # a bad filter or cursor in the address
        return html_response(400, html.home([], error=exc.message, params=params))
    return html_response(status, html.home(assets, error=error, params=params, next_cursor=next_cursor))


def asset_page(asset_id: str, deps: Deps) -> Response:
    """One asset's page (its first chunks' text among it), or a page saying why there is none."""
    try:
        view = view_asset(asset_id, deps)
    except DomainError as exc:
        return html_response(status_of(exc), html.message("No such asset", exc.message))
    return html_response(200, html.asset(view.asset, view.chunks))


def then_home(action: Callable[[], object], deps: Deps, *, error_status: int | None = None) -> Response:
    """Run a form's action; back to the home page (303), or the home page with the action's
    error (its status, or `error_status`)."""
    try:
        action()
    except DomainError as exc:
        return home(deps, error_status or status_of(exc), exc.message)
    return redirect("/")


def sign_in(app: APIGatewayHttpResolver, deps: Deps) -> Response:
    """Check the key the sign-in form sent; keep it in an HttpOnly cookie and go where the form
    says (a path of this site only)."""
    headers = {k.lower(): v for k, v in (app.current_event.headers or {}).items()}
    if headers.get("sec-fetch-site") == "cross-site":  # another site posting its key into ours (login CSRF)
        return html_response(403, html.signin("/", error="Sign in from this site's own page."))
    try:
        fields = form(app)
    except DomainError as exc:
        return html_response(400, html.signin("/", error=exc.message))
    next_path = safe_next_path(fields.get("next"))
    key = fields.get("key", "").strip()
    if configured_keys(deps).name_of(key) is None:
        return html_response(401, html.signin(next_path, error="That API key is not valid."))
    return redirect(next_path, cookie=session_cookie(app, key))


def search_page(app: APIGatewayHttpResolver, deps: Deps) -> Response:
    """The search page: the form alone without a query, else a page of results (or the
    request's error, in the page)."""
    params = app.current_event.query_string_parameters or {}
    if not (params.get("query") or "").strip():
        return html_response(200, html.results(params, [], None))
    try:
        found = search(parse_request(params, query_param="query"), deps)
    except DomainError as exc:
        return html_response(400, html.results(params, [], None, error=exc.message))
    return html_response(200, html.results(params, found.results, found.next_cursor))
