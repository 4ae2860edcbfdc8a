"""API keys: which routes need one, how it may be presented, the browser's sign-in, the API's
description, and secrets kept out of the logs. Requests go through the template's routes and
its authorizer, as API Gateway sends them."""

import dataclasses
import io
import json

import pytest

from allthethings import bootstrap, redaction
from allthethings.adapters.secrets import ParameterStoreSecrets
from allthethings.config import Settings
from allthethings.services.access import ApiKeys, decide, presented_key
from tests.fakes import FakeFetcher, fake_deps
from tests.unit.test_handlers import KEY, TEMPLATE, TEXT, call

PUBLIC_ROUTES = {"GET /api/health", "POST /webhooks/audio/{id}", "POST /webhooks/image/{id}",
                 "POST /webhooks/embedding/{id}",
                 "GET /api/openapi.json", "GET /api/docs", "POST /session", "POST /signout"}
ASSET = "0" * 32


@pytest.fixture
def deps():
    d = fake_deps(fetcher=FakeFetcher({"http://x.test/a.txt": ("text/plain", TEXT.encode())}),
                  settings=Settings(chunk_tokens=20, chunk_overlap=4, api_keys=f"unit={KEY},ops=ops_{'o' * 24}"))
    with bootstrap.use(d):
        yield d


def with_settings(deps, **changes):
    deps.settings = dataclasses.replace(deps.settings, **changes)


def test_only_health_webhooks_the_api_description_and_sign_in_skip_the_authorizer():
    routes = {r.key: r for f in TEMPLATE.functions.values() for r in f.routes}
    assert {key for key, r in routes.items() if r.authorizer is None} == PUBLIC_ROUTES
    assert {r.authorizer for r in routes.values()} == {None, "AuthorizerFunction"}


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"})),
    ("GET", "/api/assets", None),
    ("GET", f"/api/assets/{ASSET}", None),
    ("POST", f"/api/assets/{ASSET}/retry", None),
    ("DELETE", f"/api/assets/{ASSET}", None),
    ("GET", "/api/search?q=lighthouse", None),
])
def test_every_api_route_refuses_a_request_without_a_valid_key(deps, method, path, body):
    assert call(method, path, body, key=None) == (403, {"message": "Forbidden"})
    assert call(method, path, body, key="wrong_" + "w" * 24) == (403, {"message": "Forbidden"})
    assert deps.store.get_by_url("http://x.test/a.txt") is None, "a refused request reached the function"
    assert call(method, path, body, key=KEY)[0] != 403


def test_a_key_may_come_as_a_header_a_bearer_token_or_the_sign_in_cookie(deps):
    assert call("GET", "/api/assets", key=None, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
    assert call("GET", "/api/assets", key=None, headers={"Cookie": f"other=1; allthethings_key={KEY}"})[0] == 200
    assert call("GET", "/api/assets", key=f"ops_{'o' * 24}")[0] == 200, "any configured key"
    assert call("GET", "/api/assets", key=None, headers={"Authorization": f"Basic {KEY}"})[0] == 403


def test_search_is_open_to_anyone_when_search_access_is_public(deps):
    with_settings(deps, search_access="public")
    assert call("GET", "/api/search?q=lighthouse", key=None)[0] == 200
    assert call("GET", "/search?query=lighthouse", key=None)[0] == 200
    assert call("GET", "/api/assets", key=None)[0] == 403, "search only"


def test_public_routes_need_no_key(deps):
    assert call("GET", "/api/health", key=None)[0] == 200
    assert call("GET", "/api/openapi.json", key=None)[0] == 200
    status, page = call("GET", "/api/docs", key=None)
    assert status == 200 and "SwaggerUIBundle" in page and "/api/openapi.json" in page
    status, body = call("POST", f"/webhooks/audio/{ASSET}", "{}", key=None)
    assert status == 401, "webhooks are checked by signature, not by key"


def test_with_no_keys_configured_everything_keyed_is_refused(deps):
    with_settings(deps, api_keys=None, api_keys_param=None)
    assert call("GET", "/api/assets")[0] == 403
    status, page = call("GET", "/")
    assert status == 401 and "Sign in" in page
    assert call("GET", "/api/health")[0] == 200


def test_pages_ask_a_browser_without_a_key_to_sign_in(deps):
    status, page = call("GET", "/", key=None)
    assert status == 401 and "Sign in" in page and "name=key" in page and "http://x.test" not in page
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call("POST", "/process", "url=http%3A%2F%2Fx.test%2Fa.txt", form, key=None)[0] == 401
    assert deps.store.get_by_url("http://x.test/a.txt") is None, "nothing submitted without a key"
    status, page = call("GET", "/search?query=lighthouse&mode=keyword", key=None)
    assert status == 401 and "/search?query=lighthouse&amp;mode=keyword" in page, "back to the search after"


def test_signing_in_sets_an_http_only_strict_cookie_and_a_wrong_key_does_not(deps):
    from flask import Flask

    from devstack.gateway import build_event, dispatch, load_handler
    from tests.unit.test_handlers import ROUTER

    def post(body, headers=None):
        with Flask(__name__).test_request_context("/session", method="POST", data=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", **(headers or {})}):
            from flask import request

            route, fn, params = ROUTER.match("POST", "/session")
            event = build_event(request, route, params)
        return dispatch(route, fn, event, TEMPLATE.functions, lambda f, e, c: load_handler(f)(e, c))

    ok = post(f"key={KEY}&next=/search%3Fquery%3Dx", {"X-Forwarded-Proto": "https"})
    assert ok["statusCode"] == 303 and ok["headers"]["Location"] == "/search?query=x"
    (cookie,) = ok["cookies"]
    assert cookie.startswith(f"allthethings_key={KEY};")
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"))
    assert post(f"key={KEY}&next=//evil.example/")["headers"]["Location"] == "/", "never an open redirect"
    for sneaky in ("/%09/evil.example", "/%5Cevil.example", "/%5C%5Cevil.example", "/%0d%0aSet-Cookie:%20x=1",
                   "https://evil.example/", "/%00", "//%09evil.example", "evil.example"):
        answer = post(f"key={KEY}&next={sneaky}")
        assert (answer["statusCode"], answer["headers"]["Location"]) == (303, "/"), sneaky
    forged = post(f"key={KEY}&next=/", {"Sec-Fetch-Site": "cross-site"})
    assert forged["statusCode"] == 403 and not forged.get("cookies"), "another site cannot sign a browser in"
    assert post(f"key={KEY}&next=/", {"Sec-Fetch-Site": "same-origin"})["statusCode"] == 303
    wrong = post("key=guess" + "g" * 30)
    assert wrong["statusCode"] == 401 and not wrong.get("cookies") and "not valid" in wrong["body"]
    out = post("", {})
    signout = call("POST", "/signout", key=None)
    assert out["statusCode"] == 401 and signout[0] == 303


def test_the_row_buttons_retry_a_failed_asset_and_delete_any(deps):
    from allthethings.domain.assets import Status

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    assert call("POST", f"/assets/{asset['id']}/retry", "", form)[0] == 409, "only a failed asset is retried"
    deps.store.move(asset["id"], Status.PROCESSING, error=None)
    deps.store.move(asset["id"], Status.PROCESSING_ERROR, error="boom")
    assert call("GET", "/")[1].count(">Retry</button>") == 1
    assert call("POST", f"/assets/{asset['id']}/retry", "", form)[0] == 303
    assert deps.store.get(asset["id"]).status is Status.SUBMITTED
    assert call("POST", f"/assets/{asset['id']}/delete", "", form)[0] == 303
    assert deps.store.get(asset["id"]) is None
    assert call("POST", f"/assets/{asset['id']}/delete", "", form)[0] == 404
    assert call("POST", f"/assets/{asset['id']}/retry", "", form, key=None)[0] == 401


def test_api_keys_are_named_long_and_compared_whole():
    keys = ApiKeys.parse(f"ci=ci_{'c' * 24}, {'b' * 24}\nops=x=y{'z' * 24}")
    assert keys.name_of(f"ci_{'c' * 24}") == "ci" and keys.name_of("b" * 24) == "key2"
    assert keys.name_of(f"x=y{'z' * 24}") == "ops", "a key may hold '=' after its name"
    assert keys.name_of(f"ci_{'c' * 23}") is None and keys.name_of("") is None and keys.name_of(None) is None
    with pytest.raises(ValueError, match="shorter than 20") as short:
        ApiKeys.parse("tiny=abc123")
    assert "abc123" not in str(short.value), "the error names the key, never shows it"
    with pytest.raises(ValueError, match="name"):
        ApiKeys.parse(f"bad name={'k' * 24}")


def test_a_header_key_wins_over_the_cookie():
    assert presented_key({"X-Api-Key": " a "}, ["allthethings_key=b"]) == "a"
    assert presented_key({"authorization": "bearer t"}, []) == "t"
    assert presented_key({}, ["x=1", "allthethings_key=c"]) == "c"
    assert presented_key({}, ["allthethings_key=a%3Bb%20c"]) == "a;b c", "the sign-in cookie holds the key quoted"
    assert presented_key({}, []) is None


def test_the_policy_opens_search_only_when_public():
    assert decide("GET /api/search", None, "public").allowed
    assert not decide("GET /api/search", None, "key").allowed
    assert not decide("POST /api/assets", None, "public").allowed
    assert decide("GET /", None, "key").refuses_itself and not decide("GET /api/assets", None, "key").refuses_itself
    assert decide("POST /v1/embeddings", None, "key").refuses_itself


def test_the_api_description_lists_exactly_the_json_routes_of_the_template(deps):
    status, doc = call("GET", "/api/openapi.json", key=None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    documented = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops}
    routes = {r.key.replace("+}", "}") for f in TEMPLATE.functions.values() for r in f.routes}  # greedy: {p+}
    json_routes = {k for k in routes if k.split(" ")[1].startswith(("/api/", "/webhooks/", "/v1/"))}
    assert documented == json_routes - {"GET /api/docs"}
    assert doc["paths"]["/api/search"]["get"].get("security") is None, "keyed by default"
    with_settings(deps, search_access="public")
    assert call("GET", "/api/openapi.json")[1]["paths"]["/api/search"]["get"]["security"] == []


def test_no_secret_ever_reaches_a_log_line(deps, monkeypatch):
    from devstack.gateway import load_module

    submit_logger = load_module(TEMPLATE.functions["SubmitFunction"]).logger
    lines = io.StringIO()
    previous = submit_logger.registered_handler.setStream(lines)
    token, uri = "r8_" + "t0ken" * 8, "mongodb+srv://app:hunter2-pa55@cluster0.example.net/?retryWrites=true"
    assert ParameterStoreSecrets().get(token, None, "REPLICATE_API_TOKEN") == token
    monkeypatch.setattr(deps.store, "get_by_url", lambda url: (_ for _ in ()).throw(
        RuntimeError(f"cannot reach {uri} with {token} or {KEY}")))
    ParameterStoreSecrets().get(f"unit={KEY}", None, "API_KEYS")
    try:
        status, body = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
        submit_logger.warning("connecting", extra={"uri": uri, "headers": {"authorization": f"Bearer {token}"}})
    finally:
        submit_logger.registered_handler.setStream(previous)
    assert status == 500
    out = lines.getvalue()
    assert "cannot reach" in out and "connecting" in out, "the lines were logged"
    for value in (token, KEY, "hunter2-pa55"):
        assert value not in out
    assert redaction.REDACTED in out


def test_the_routes_let_through_to_refuse_themselves_are_exactly_the_html_and_openai_routes():
    from allthethings.services.access import OPENAI_ROUTES, PAGE_ROUTES

    routes = {r.key for f in TEMPLATE.functions.values() for r in f.routes}
    html = {k for k in routes if not k.split(" ")[1].startswith(("/api/", "/webhooks/", "/v1/"))}
    assert html - {"POST /session", "POST /signout"} == PAGE_ROUTES
    assert {k for k in routes if k.split(" ")[1].startswith("/v1/")} == OPENAI_ROUTES


SELF_REFUSING = [
    ("GET", "/", None),
    ("GET", f"/assets/{ASSET}", None),
    ("POST", "/process", "url=http%3A%2F%2Fx.test%2Fa.txt"),
    ("POST", f"/assets/{ASSET}/retry", None),
    ("POST", f"/assets/{ASSET}/delete", None),
    ("GET", "/search?query=lighthouse", None),
    ("GET", "/sources", None),
    ("POST", "/sources", "url=http%3A%2F%2Fx.test%2Ffeed.xml"),
    ("POST", f"/sources/src_{ASSET}/refresh", None),
    ("POST", f"/sources/src_{ASSET}/delete", "assets=true"),
    ("POST", "/v1/embeddings", json.dumps({"input": "lighthouse", "model": "all-MiniLM-L6-v2"})),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/all-MiniLM-L6-v2", None),
]


def test_the_requests_below_reach_every_route_let_through_without_a_key():
    from allthethings.services.access import OPENAI_ROUTES, PAGE_ROUTES
    from tests.unit.test_handlers import ROUTER

    reached = {ROUTER.match(method, path.split("?")[0])[0].key for method, path, _ in SELF_REFUSING}
    assert reached == PAGE_ROUTES | OPENAI_ROUTES


@pytest.mark.parametrize("method,path,body", SELF_REFUSING)
def test_every_route_let_through_without_a_key_refuses_it_itself(deps, method, path, body):
    """The authorizer lets these through marked; the function must refuse (fail closed)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if path == "/process" else None
    for key in (None, "wrong_" + "w" * 24):
        status, answer = call(method, path, body, key=key, headers=headers)
        assert status == 401, f"{method} {path} answered {status} without a valid key"
        assert "Sign in" in answer if isinstance(answer, str) else answer["error"]["code"] == "invalid_api_key"
    assert deps.store.get_by_url("http://x.test/a.txt") is None and deps.embedder.calls == []
    assert call(method, path, body, headers=headers)[0] != 401, "with the key, the route answers"


def test_the_sign_in_page_and_the_api_description_say_how_to_send_a_key_and_what_a_refusal_looks_like(deps):
    status, page = call("GET", "/", key=None)
    assert status == 401 and "x-api-key: KEY" in page and "Authorization: Bearer" in page and "403" in page
    schemes = call("GET", "/api/openapi.json", key=None)[1]["components"]["securitySchemes"]
    for scheme in schemes.values():
        assert '403 {"message": "Forbidden"}' in scheme["description"] and "401" in scheme["description"]
    status, refused = call("GET", "/api/assets", key=None)
    assert (status, refused) == (403, {"message": "Forbidden"}), "the local gateway answers as API Gateway does"
