"""Pages function. Trigger: HTTP API.

The browser's side of the API, HTML with no JavaScript needed: GET / (the form and the
assets, or the sign-in page), POST /process (the form's target), POST /assets/{id}/retry and
POST /assets/{id}/delete (the row buttons), POST /session (sign in with an API key: an HttpOnly,
SameSite=Strict cookie) and POST /signout. And the API's description: GET /api/openapi.json
and Swagger UI at GET /api/docs. A page the authorizer marks "sign in" shows the sign-in form.
"""

from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.domain.errors import DomainError
from allthethings.entrypoints import html, logs, openapi
from allthethings.entrypoints.resolver import (
    api,
    html_response,
    needs_signin,
    origin,
    redirect,
    session_cookie,
    status_of,
)
from allthethings.services.access import configured_keys
from allthethings.services.assets import list_assets
from allthethings.services.lifecycle import delete_asset, retry_asset
from allthethings.services.submit_asset import submit_asset

logger = logs.logger()
app = api(logger)


def _form() -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(app.current_event.decoded_body or "").items()}


def _home(status: int = 200, error: str | None = None) -> Response:
    if needs_signin(app):
        return html_response(401, html.signin("/"))
    return html_response(status, html.home(list_assets(50, None, bootstrap.deps())[0], error=error))


@app.get("/")
def home():
    return _home()


@app.post("/process")
def process_form():
    if needs_signin(app):
        return html_response(401, html.signin("/"))
    try:
        submit_asset(_form().get("url", ""), bootstrap.deps(), webhook_base=origin(app))
    except DomainError as exc:
        return _home(400, exc.message)
    return redirect("/")


@app.post("/assets/<asset_id>/<action>")
def row_action(asset_id: str, action: str):
    if needs_signin(app):
        return html_response(401, html.signin("/"))
    try:
        if action == "retry":
            retry_asset(asset_id, bootstrap.deps(), webhook_base=origin(app))
        elif action == "delete":
            delete_asset(asset_id, bootstrap.deps())
        else:
            return _home(404, f"no action {action!r}")
    except DomainError as exc:
        return _home(status_of(exc), exc.message)
    return redirect("/")


@app.post("/session")
def sign_in():
    form = _form()
    next_path = form.get("next", "/")
    if not next_path.startswith("/") or next_path.startswith("//"):  # never an open redirect
        next_path = "/"
    key = form.get("key", "").strip()
    if configured_keys(bootstrap.deps()).name_of(key) is None:
        return html_response(401, html.signin(next_path, error="That API key is not valid."))
    return redirect(next_path, cookie=session_cookie(app, key))


@app.post("/signout")
def sign_out():
    return redirect("/", cookie=session_cookie(app, None))


@app.get("/api/openapi.json")
def description() -> dict:
    return openapi.document(bootstrap.deps().settings.search_access)


@app.get("/api/docs")
def docs():
    return Response(200, content_types.TEXT_HTML, openapi.swagger_page("/api/openapi.json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
