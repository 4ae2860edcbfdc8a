"""Pages function. Trigger: HTTP API.

The browser's side of the API, HTML with no JavaScript needed: GET /?status=&kind=&q=&cursor=
(the form and a page of assets, filtered), GET /assets/{id} (one asset and its text),
POST /process (the form's target: 303 home, or the page with the error), POST /assets/{id}/retry
and POST /assets/{id}/delete (the buttons), POST /session (sign in with an API key: an HttpOnly,
SameSite=Strict cookie; then to `next`, a path of this site) and POST /signout. Sources: GET
/sources?cursor=&notice=&id= (the form to add a feed or sitemap, and the sources with their
progress), POST /sources (the form's target), POST /sources/{id}/refresh and POST
/sources/{id}/delete (`assets=true`: its assets too): each 303 to /sources with a notice, or the
page with the error. And the API's description: GET /api/openapi.json and Swagger UI at GET
/api/docs. A page the authorizer marks "sign in" shows the sign-in form instead. The flows live
in `entrypoints/pages.py`.
"""

from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.entrypoints import logs, openapi, pages
from allthethings.entrypoints.resolver import api, html_response, origin, redirect, session_cookie
from allthethings.services.lifecycle import delete_asset, retry_asset
from allthethings.services.submit_asset import submit_asset

logger = logs.logger()
app = api(logger)
signin_required = pages.signin_required(app)


@app.get("/")
@signin_required
def home():
    return pages.home(bootstrap.deps(), params=app.current_event.query_string_parameters or {})


@app.get("/assets/<asset_id>")
@signin_required
def asset(asset_id: str):
    return pages.asset_page(asset_id, bootstrap.deps())


@app.post("/process")
@signin_required
def submit_form():
    deps = bootstrap.deps()
    return pages.then_home(lambda: submit_asset(pages.form(app).get("url", ""), deps, webhook_base=origin(app)), deps,
                           error_status=400)


@app.post("/assets/<asset_id>/retry")
@signin_required
def retry(asset_id: str):
    return pages.then_home(lambda: retry_asset(asset_id, bootstrap.deps(), webhook_base=origin(app)), bootstrap.deps())


@app.post("/assets/<asset_id>/delete")
@signin_required
def delete(asset_id: str):
    return pages.then_home(lambda: delete_asset(asset_id, bootstrap.deps()), bootstrap.deps())


@app.get("/sources")
@signin_required
def sources():
    return pages.sources_page(bootstrap.deps(), params=app.current_event.query_string_parameters or {})


@app.post("/sources")
@signin_required
def add_source_form():
    return pages.add_source_form(app, bootstrap.deps())


@app.post("/sources/<source_id>/refresh")
@signin_required
def refresh_source_form(source_id: str):
    return pages.refresh_source_form(source_id, app, bootstrap.deps())


@app.post("/sources/<source_id>/delete")
@signin_required
def delete_source_form(source_id: str):
    return pages.delete_source_form(source_id, app, bootstrap.deps())


@app.post("/session")
def sign_in():
    return pages.sign_in(app, bootstrap.deps())


@app.post("/signout")
def sign_out():
    return redirect("/", cookie=session_cookie(app, None))


@app.get("/api/openapi.json")
def description() -> dict:
    return openapi.document(bootstrap.deps().settings.search_access)


@app.get("/api/docs")
def docs():
    return html_response(200, openapi.swagger_page("/api/openapi.json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
