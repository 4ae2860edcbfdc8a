"""The browser's side of the API: the page flows the pages and search functions route to.

Each flow parses a form or a query, calls one service, and answers with a rendered page or a
303 to one (`html.py` renders; nothing here decides what a service decides). A page that
needs a key and has none shows the sign-in form (`signin_required`), so the browser never
meets a bare 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from allthethings.domain.assets import now
from allthethings.domain.errors import DomainError, InvalidInput
from allthethings.domain.listing import parse_filter
from allthethings.domain.search import SearchResult
from allthethings.domain.sources import check_source_id
from allthethings.entrypoints import html
from allthethings.entrypoints.resolver import (
    html_response,
    needs_signin,
    origin,
    redirect,
    session_cookie,
    status_of,
    text_body,
)
from allthethings.services import Deps
from allthethings.services.access import configured_keys, safe_next_path
from allthethings.services.assets import list_assets, view_asset
from allthethings.services.search import parse_request, search
from allthethings.services.sources import (
    SourceView,
    add_source,
    delete_source,
    list_sources,
    refresh_source,
)

HOME_ROWS = 50
SOURCE_ROWS = 25  # each row costs three store reads (its entries, assets and refused items)


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
    return html_response(200, html.results(params, found.results, found.next_cursor,
                                           sources=_source_titles(found.results, deps)))


def _source_titles(results: list[SearchResult], deps: Deps) -> dict[str, str]:
    """The titles of the sources the results' assets came from, by id: one read per distinct
    source (a page of results has few). A source gone, or a store that fails, leaves results
    without their source's name rather than the page without its results."""
    ids = sorted({r.asset.source_id for r in results if r.asset.source_id})
    if not ids or deps.sources is None:
        return {}
    titles = {}
    try:
        for source_id in ids:
            source = deps.sources.get(source_id)
            if source is not None:
                titles[source_id] = source.title or source.url
    except DomainError:
        return {}
    return titles


# --- sources ----------------------------------------------------------------------------------

def sources_page(deps: Deps, params: dict | None = None, status: int = 200, error: str | None = None,
                 url: str = "") -> Response:
    """The form to add a source and a page of sources (paged by `cursor`), with what a form's
    redirect asked to say (`notice`, about the source `id`) or an error above them."""
    if deps.sources is None:
        return html_response(503, html.message("No sources", "This index is not set up to keep sources."))
    params = params or {}
    try:
        views, next_cursor = list_sources(SOURCE_ROWS, params.get("cursor"), deps)
    except DomainError as exc:  # a bad cursor in the address, or the store unavailable
        return html_response(status_of(exc), html.sources([], now=now(), error=exc.message, params=params))
    notice = None if error else _notice(params, views, deps)
    return html_response(status, html.sources(views, now=now(), error=error, notice=notice, params=params,
                                              next_cursor=next_cursor, url=url))


def _notice(params: dict, views: list[SourceView], deps: Deps) -> tuple[str, str] | None:
    """What to say after a form's redirect: its case, with the title of the source it names (a
    case about a source that cannot be found says nothing)."""
    case = params.get("notice")
    if case not in html.NOTICES:
        return None
    if "{title}" not in html.NOTICES[case]:
        return case, ""
    source_id = params.get("id") or ""
    source = next((v.source for v in views if v.source.id == source_id), None)
    if source is None:
        try:
            source = deps.sources.get(check_source_id(source_id))
        except DomainError:
            return None
    return (case, source.title or source.url) if source is not None else None


def _to_sources(case: str, source_id: str | None = None) -> str:
    query = {"notice": case, **({"id": source_id} if source_id else {})}
    return "/sources?" + urlencode(query) + (f"#{source_id}" if source_id else "")


def then_sources(action: Callable[[], str], deps: Deps, *, url: str = "") -> Response:
    """Run a sources form's action; to the page it names (303), or the sources page with the
    action's error in words (its status; `url`, the address the form sent, kept in the form)."""
    if deps.sources is None:
        return sources_page(deps)
    try:
        location = action()
    except DomainError as exc:
        return sources_page(deps, status=status_of(exc), error=exc.message, url=url)
    return redirect(location)


def add_source_form(app: APIGatewayHttpResolver, deps: Deps) -> Response:
    """POST /sources: read the URL as a feed or sitemap and keep it (or find it already kept)."""
    try:
        url = form(app).get("url", "")
    except DomainError as exc:  # a body that is not UTF-8
        return sources_page(deps, status=status_of(exc), error=exc.message)

    def add() -> str:
        view, created = add_source(url, deps, webhook_base=origin(app))
        return _to_sources("added" if created else "known", view.source.id)

    return then_sources(add, deps, url=url)


def refresh_source_form(source_id: str, app: APIGatewayHttpResolver, deps: Deps) -> Response:
    """POST /sources/{id}/refresh: read the source again now, behind the queue."""
    return then_sources(lambda: _to_sources("refreshing", refresh_source(
        source_id, deps, webhook_base=origin(app)).source.id), deps)


def delete_source_form(source_id: str, app: APIGatewayHttpResolver, deps: Deps) -> Response:
    """POST /sources/{id}/delete: stop reading the source; with the form's `assets` box ticked,
    delete its assets too (those the request has no time for, behind the queue)."""
    def delete() -> str:
        with_assets = form(app).get("assets", "") in ("true", "on")
        done = delete_source(source_id, deps, with_assets=with_assets, webhook_base=origin(app))
        return _to_sources("deleted" if done else "deleting")

    return then_sources(delete, deps)
