"""The Lambda handlers, called with API Gateway HTTP API (2.0) and SQS events, on fake dependencies."""

import dataclasses
import json
import re
from datetime import UTC
from pathlib import Path

import pytest
from flask import Flask
from standardwebhooks.webhooks import Webhook

from allthethings import bootstrap
from allthethings.config import Settings
from allthethings.domain.assets import Status
from devstack import template as templates
from devstack.gateway import LambdaContext, Router, build_event, dispatch, load_handler, load_module
from tests.fakes import FakeEmbedder, FakeFetcher, fake_deps, word_vector

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = templates.load(REPO / "infra" / "template.yaml")
ROUTER = Router(TEMPLATE)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TEXT = "Lighthouse keepers trimmed the wicks. Storms cut them off for weeks. " * 3


KEY = "unit_" + "k" * 24


def call(method, path, body=None, headers=None, key=KEY):
    """Send one request as API Gateway would: the template's route table, the route's authorizer,
    then the function that owns it. `key` is sent as x-api-key (None: no key)."""
    headers = {**({"x-api-key": key} if key else {}), **(headers or {})}
    with Flask(__name__).test_request_context(path, method=method, data=body, headers=headers):
        from flask import request

        matched = ROUTER.match(method, request.path)
        if matched is None:  # API Gateway's own answer when no route matches
            return 404, {"message": "Not Found"}
        route, fn, params = matched
        event = build_event(request, route, params)
    response = dispatch(route, fn, event, TEMPLATE.functions, lambda f, e, c: load_handler(f)(e, c))
    content_type = {k.lower(): v for k, v in response.get("headers", {}).items()}.get("content-type", "")
    parsed = json.loads(response["body"]) if "json" in content_type and response.get("body") else response.get("body")
    return response["statusCode"], parsed


@pytest.fixture
def deps():
    d = fake_deps(fetcher=FakeFetcher({"http://x.test/a.txt": ("text/plain", TEXT.encode())}),
                  settings=Settings(chunk_tokens=20, chunk_overlap=4, replicate_webhook_secret=SECRET,
                                    api_keys=f"unit={KEY}"))
    with bootstrap.use(d):
        yield d


def template_routes():
    """Each route as (method, path with its parameters as {}); a greedy {p+} is served by the
    handler's one- and two-segment routes (a model id may hold one slash)."""
    routes = set()
    for f in TEMPLATE.functions.values():
        for r in f.routes:
            path = re.sub(r"\{[^}+]+\}", "{}", r.path)
            if "+}" in path:
                routes |= {(r.method, re.sub(r"\{[^}]+\+\}", "{}", path)),
                           (r.method, re.sub(r"\{[^}]+\+\}", "{}/{}", path))}
            else:
                routes.add((r.method, path))
    return routes


def handler_routes():
    found = set()
    for fn in TEMPLATE.functions.values():
        app = getattr(load_module(fn), "app", None)
        if app is None:
            continue
        for route in app._static_routes + app._dynamic_routes:
            found.add((route.method, re.sub(r"\{[^}]+\}", "{}", route.openapi_path)))
    return found


def test_every_template_route_has_a_handler_and_every_handler_route_is_in_the_template():
    assert template_routes() == handler_routes()


def test_every_function_in_the_template_has_its_handler_file():
    for fn in TEMPLATE.functions.values():
        assert fn.module_path.exists(), fn.logical_id
        assert callable(load_handler(fn))


def test_health_answers_ok(deps):
    assert call("GET", "/api/health") == (200, {"status": "ok"})


def test_submitting_answers_202_then_200_for_the_same_url(deps):
    status, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    assert status == 202 and asset["status"] == "SUBMITTED" and asset["content_type"] == "text/plain"
    assert deps.queue.messages[0]["webhook_base"] == "https://localhost"  # the API's own domain
    status, again = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}),
                         {"Content-Type": "application/json"})
    assert status == 200 and again["id"] == asset["id"]


@pytest.mark.parametrize("body, status, code, words", [
    ("not json", 400, "invalid_input", "JSON"),
    ("{}", 400, "invalid_input", "url"),
    ('{"url": 7}', 400, "invalid_input", "url"),
    ('{"url": "ftp://x.test/a"}', 400, "invalid_input", "http"),
    ('{"url": "http://x.test/missing"}', 422, "unreachable_url", "404"),
])
def test_bad_submissions_get_a_json_error_naming_the_problem(deps, body, status, code, words):
    got_status, got = call("POST", "/api/assets", body)
    assert got_status == status
    assert got["error"]["code"] == code and words in got["error"]["message"]
    assert deps.store.assets == {}


def test_webhook_urls_come_from_configuration_or_the_apis_own_domain_never_from_client_headers(deps):
    deps.embedder = FakeEmbedder(pending=True)
    spoofed = {"Host": "attacker.example", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "attacker.example",
               "Content-Type": "application/json"}
    call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}), spoofed)
    process_all(deps)
    ((_, webhook),) = deps.embedder.submitted
    assert webhook.startswith("https://localhost/webhooks/embedding/") and "attacker" not in webhook
    deps.settings = dataclasses.replace(deps.settings, public_base_url="https://hooks.example.net")
    deps.fetcher.pages["http://x.test/b.txt"] = ("text/plain", TEXT.encode())
    call("POST", "/api/assets", json.dumps({"url": "http://x.test/b.txt"}), spoofed)
    assert deps.queue.messages[-1]["webhook_base"] == "https://hooks.example.net"


def test_assets_are_listed_newest_first_with_a_cursor(deps):
    for n in range(3):
        deps.fetcher.pages[f"http://x.test/{n}.txt"] = ("text/plain", b"words and more words")
        call("POST", "/api/assets", json.dumps({"url": f"http://x.test/{n}.txt"}))
    status, page = call("GET", "/api/assets?limit=2")
    assert status == 200 and [a["url"] for a in page["assets"]] == ["http://x.test/2.txt", "http://x.test/1.txt"]
    status, rest = call("GET", f"/api/assets?limit=2&cursor={page['next_cursor']}")
    assert [a["url"] for a in rest["assets"]] == ["http://x.test/0.txt"] and rest["next_cursor"] is None
    assert call("GET", "/api/assets?limit=abc")[0] == 400
    assert call("GET", "/api/assets?cursor=garbage")[0] == 400


def _listed_fixture(deps):
    """Four assets: a searchable text, a failed PDF, a submitted HTML page and a document."""
    for n, (media, body) in enumerate([("text/plain", b"words"), ("application/pdf", b"%PDF-1.4 x"),
                                       ("text/html", b"<html><title>T</title><p>hi</p></html>")]):
        deps.fetcher.pages[f"http://x.test/{n}_file"] = (media, body)
        call("POST", "/api/assets", json.dumps({"url": f"http://x.test/{n}_file"}))
    ids = {a.url: a.id for a in deps.store.assets.values()}
    deps.store.assets[ids["http://x.test/0_file"]].status = Status.SEARCHABLE
    deps.store.assets[ids["http://x.test/1_file"]].status = Status.PROCESSING_ERROR
    status, _ = call("POST", "/api/documents", json.dumps({"documents": [
        {"id": "note-161", "title": "Keeper's 50% log", "text": "The lamp was lit at dusk."}]}))
    assert status == 202
    return ids


def test_assets_are_listed_filtered_by_status_kind_and_text_with_the_cursor_under_the_filter(deps):
    _listed_fixture(deps)
    urls = lambda page: [a["url"] for a in page["assets"]]  # noqa: E731
    assert urls(call("GET", "/api/assets?status=SEARCHABLE")[1]) == ["http://x.test/0_file"]
    assert urls(call("GET", "/api/assets?status=processing_error,searchable&kind=pdf")[1]) == ["http://x.test/1_file"]
    assert urls(call("GET", "/api/assets?kind=html")[1]) == ["http://x.test/2_file"]
    assert urls(call("GET", "/api/assets?q=NOTE-161")[1]) == ["document:note-161"]
    assert urls(call("GET", "/api/assets?q=50%25")[1]) == ["document:note-161"], "% is literal"
    assert urls(call("GET", "/api/assets?q=_file&limit=2")[1]) == ["http://x.test/2_file", "http://x.test/1_file"]
    _, first = call("GET", "/api/assets?q=_file&limit=2")
    _, rest = call("GET", f"/api/assets?q=_file&limit=2&cursor={first['next_cursor']}")
    assert urls(rest) == ["http://x.test/0_file"] and rest["next_cursor"] is None


@pytest.mark.parametrize("query,name", [("status=DONE", "status"), ("kind=sculpture", "kind"), ("q=" + "x" * 201, "q")])
def test_a_bad_listing_filter_is_a_400_naming_the_parameter(deps, query, name):
    status, body = call("GET", f"/api/assets?{query}")
    assert status == 400 and body["error"]["message"].startswith(f"{name} must")


def test_the_home_page_pages_and_filters_the_assets_with_a_get_form(deps, monkeypatch):
    from allthethings.entrypoints import pages

    monkeypatch.setattr(pages, "HOME_ROWS", 2)
    _listed_fixture(deps)
    status, html = call("GET", "/")
    assert status == 200 and '<form action="/" method="get"' in html
    assert "note-161" in html and "http://x.test/2_file" in html and "http://x.test/0_file" not in html
    older = re.search(r'<a rel=next href="(/\?[^"]+)">', html).group(1).replace("&amp;", "&")
    status, html = call("GET", older)
    assert status == 200 and "http://x.test/0_file" in html and "note-161" not in html
    assert re.search(r'<a href="/">Newest</a>', html)
    status, html = call("GET", "/?status=PROCESSING_ERROR&kind=pdf&q=x.test")
    assert "http://x.test/1_file" in html and "http://x.test/0_file" not in html and "rel=next" not in html
    assert '<option value=PROCESSING_ERROR selected>' in html and 'value="x.test"' in html
    status, html = call("GET", "/?kind=sculpture")
    assert status == 400 and "kind must be among" in html and "<form" in html


def test_a_document_row_links_to_its_asset_page_and_a_web_row_also_to_its_source(deps):
    ids = _listed_fixture(deps)
    _, html = call("GET", "/")
    doc = next(a for a in deps.store.assets.values() if a.url == "document:note-161")
    assert f'<a href="/assets/{doc.id}">Keeper&#x27;s 50% log</a>' in html and 'href="document:' not in html
    assert "note-161" in html
    web = ids["http://x.test/0_file"]
    assert f'<a href="/assets/{web}">' in html and '<a class=muted href="http://x.test/0_file">' in html


def test_the_asset_page_shows_the_asset_its_chunks_and_its_buttons(deps):
    _listed_fixture(deps)
    doc = next(a for a in deps.store.assets.values() if a.url == "document:note-161")
    deps.store.assets[doc.id].metadata = {"source": "<helpdesk>"}
    status, html = call("GET", f"/assets/{doc.id}")
    assert status == 200 and "Keeper&#x27;s 50% log" in html and "note-161" in html
    assert "The lamp was lit at dusk." in html and "&lt;helpdesk&gt;" in html and "<helpdesk>" not in html
    assert f'action="/assets/{doc.id}/delete"' in html
    failed = next(a for a in deps.store.assets.values() if a.status is Status.PROCESSING_ERROR)
    deps.store.assets[failed.id].error = "no text <here>"
    status, html = call("GET", f"/assets/{failed.id}")
    assert f'action="/assets/{failed.id}/retry"' in html and "no text &lt;here&gt;" in html
    assert '<a class=muted href="http://x.test/1_file">' in html
    assert call("GET", "/assets/" + "0" * 32)[0] == 404
    assert call("GET", "/assets/nope")[0] == 400
    assert call("GET", f"/assets/{doc.id}", key=None)[0] == 401


def test_an_asset_is_found_by_id_and_unknown_or_malformed_ids_are_refused(deps):
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    assert call("GET", f"/api/assets/{asset['id']}")[1]["url"] == "http://x.test/a.txt"
    status, body = call("GET", "/api/assets/" + "0" * 32)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert call("GET", "/api/assets/nope")[0] == 400


def test_a_failed_asset_is_retried_over_http_and_anything_else_is_a_409(deps):
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    assert call("POST", f"/api/assets/{asset['id']}/retry")[0] == 409
    deps.store.move(asset["id"], Status.PROCESSING)
    deps.store.move(asset["id"], Status.PROCESSING_ERROR, error="extraction failed")
    status, body = call("POST", f"/api/assets/{asset['id']}/retry")
    assert status == 202 and body["status"] == "SUBMITTED" and "error" not in body
    assert call("POST", "/api/assets/not-an-id/retry")[0] == 400
    assert call("POST", f"/api/assets/{'0' * 32}/retry")[0] == 404


def test_an_asset_is_deleted_over_http_once(deps):
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    assert call("DELETE", f"/api/assets/{asset['id']}")[0] == 204
    assert call("GET", f"/api/assets/{asset['id']}")[0] == 404
    status, body = call("DELETE", f"/api/assets/{asset['id']}")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert deps.blobs.objects == {}


def test_an_unexpected_error_is_a_generic_500_with_a_request_id(deps, monkeypatch):
    monkeypatch.setattr(deps.store, "get_by_url", lambda url: 1 / 0)
    status, body = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    assert status == 500
    assert body["error"]["message"] == "internal error" and body["error"]["request_id"]
    assert "ZeroDivision" not in json.dumps(body)


def test_the_home_page_and_form_submit_and_show_assets(deps):
    status, page = call("POST", "/process", "url=http%3A%2F%2Fx.test%2Fa.txt",
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303
    status, html = call("GET", "/")
    assert status == 200 and "http://x.test/a.txt" in html and "SUBMITTED" in html and "<form" in html
    status, html = call("POST", "/process", "url=nonsense", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "http://" in html


def drain(queue, function_id: str):
    """Hand a fake queue's messages to a function as one SQS batch, the way Lambda's mapping does."""
    from devstack.sqs_pump import sqs_record

    fn = TEMPLATE.functions[function_id]
    arn = f"arn:aws:sqs:us-east-1:000000000000:{fn.queue_triggers[0].queue}"
    records = [sqs_record({"MessageId": str(i), "ReceiptHandle": "r", "Body": json.dumps(m)}, arn, "us-east-1")
               for i, m in enumerate(queue.messages)]
    queue.messages.clear()
    return load_handler(fn)({"Records": records}, LambdaContext(fn))


def process_all(deps):
    return drain(deps.queue, "ProcessFunction")


def test_the_queue_consumer_processes_and_reports_only_failed_records(deps):
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    deps.queue.messages.append({"no_asset_id": True})
    result = process_all(deps)
    assert result == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert deps.store.get(asset["id"]).status is Status.SEARCHABLE


def test_search_finds_the_processed_asset_and_renders_the_page(deps):
    call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    process_all(deps)
    status, body = call("GET", "/api/search?q=lighthouse+storms&limit=5")
    assert status == 200 and body["results"][0]["asset"]["url"] == "http://x.test/a.txt"
    assert call("GET", "/api/search?q=")[0] == 400
    assert call("GET", "/api/search?q=x&limit=51")[0] == 400
    status, html = call("GET", "/search?query=lighthouse")
    assert status == 200 and "http://x.test/a.txt" in html
    status, html = call("GET", "/search?query=")
    assert status == 200 and "by meaning" in html


def signed(body: str, secret: str = SECRET, msg_id: str = "msg_1") -> dict:
    from datetime import datetime

    stamp = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, stamp, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())), "webhook-signature": signature,
            "Content-Type": "application/json"}


@pytest.fixture
def waiting(deps):
    deps.embedder = FakeEmbedder(pending=True)
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/a.txt"}))
    process_all(deps)
    chunks = deps.store.chunks(asset["id"])
    output = [{"embedding": word_vector(c.text)} for c in chunks]
    body = json.dumps({"id": "p1", "status": "succeeded", "output": output})
    return asset["id"], body


def consume_webhooks(deps):
    return drain(deps.webhooks, "WebhookConsumerFunction")


def test_a_signed_embedding_webhook_is_queued_at_once_and_applied_by_the_consumer(deps, waiting):
    asset_id, body = waiting
    status, reply = call("POST", f"/webhooks/embedding/{asset_id}", body, signed(body))
    assert status == 202 and reply == {"id": asset_id, "accepted": True}
    assert deps.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS
    (message,) = deps.webhooks.messages
    assert message["kind"] == "embedding" and message["delivery_id"] == "msg_1" and message["body"] == body
    assert consume_webhooks(deps) == {"batchItemFailures": []}
    assert deps.store.get(asset_id).status is Status.SEARCHABLE


def test_a_redelivered_webhook_is_accepted_and_changes_nothing(deps, waiting):
    asset_id, body = waiting
    for _ in range(2):
        assert call("POST", f"/webhooks/embedding/{asset_id}", body, signed(body))[0] == 202
    consume_webhooks(deps)
    stamp = deps.store.get(asset_id).updated_at
    call("POST", f"/webhooks/embedding/{asset_id}", body, signed(body))
    consume_webhooks(deps)
    assert deps.store.get(asset_id).updated_at == stamp and deps.store.get(asset_id).status is Status.SEARCHABLE


def test_a_queued_delivery_that_cannot_be_applied_is_reported_for_retry(deps, waiting):
    asset_id, body = waiting
    deps.webhooks.messages.append({"kind": "embedding", "asset_id": asset_id, "body": "not json"})
    call("POST", f"/webhooks/embedding/{asset_id}", body, signed(body))
    assert consume_webhooks(deps) == {"batchItemFailures": [{"itemIdentifier": "0"}]}
    assert deps.store.get(asset_id).status is Status.SEARCHABLE


@pytest.mark.parametrize("tamper", ["unsigned", "wrong-secret", "tampered-body", "old-timestamp"])
def test_an_unsigned_or_badly_signed_webhook_is_refused_and_changes_nothing(deps, waiting, tamper):
    asset_id, body = waiting
    headers = {} if tamper == "unsigned" else signed(body, "whsec_" + "A" * 32 if tamper == "wrong-secret" else SECRET)
    if tamper == "old-timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 3600)
    sent = body.replace("succeeded", "failed") if tamper == "tampered-body" else body
    status, reply = call("POST", f"/webhooks/embedding/{asset_id}", sent, headers)
    assert status == 401 and reply["error"]["code"] == "unauthorized"
    assert deps.webhooks.messages == []
    assert deps.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS


FLAC = b"fLaC\x00\x00\x00\x22" + bytes(200)
SEGMENTS = [{"start": 0.0, "end": 4.0, "text": " And so, my fellow Americans, ask not what your country can do."}]


def recording(deps, url: str) -> tuple[str, str]:
    """A submitted recording waiting for its transcription, and the signed body Whisper would deliver."""
    deps.fetcher.pages[url] = ("audio/flac", FLAC)
    _, asset = call("POST", "/api/assets", json.dumps({"url": url}))
    process_all(deps)
    stored = deps.store.get(asset["id"])
    assert stored.status is Status.PROCESSING
    audio_url = deps.transcriber.submitted[-1][0]
    body = json.dumps({"id": stored.prediction_id, "status": "succeeded", "input": {"audio": audio_url},
                       "output": {"segments": SEGMENTS, "transcription": "..."}})
    return asset["id"], body


def forget_prediction_id(deps, asset_id: str) -> None:
    """As with Hookdeck (or a delivery faster than the id's write): the asset holds no prediction id."""
    deps.store.assets[asset_id].prediction_id = None


def test_a_transcription_posted_to_another_assets_webhook_is_refused_and_changes_nothing(deps, waiting):
    text_id, _ = waiting
    recording_id, whisper = recording(deps, "http://x.test/jfk.flac")
    forget_prediction_id(deps, text_id)
    before = deps.store.get(text_id)
    for kind in ("audio", "embedding"):
        status, reply = call("POST", f"/webhooks/{kind}/{text_id}", whisper, signed(whisper))
        assert status == 409 and reply["error"]["code"] == "conflict", (kind, reply)
    assert deps.webhooks.messages == []
    after = deps.store.get(text_id)
    assert (after.status, after.error, after.chunk_count) == (before.status, before.error, before.chunk_count)
    assert deps.store.get(recording_id).status is Status.PROCESSING, "the recording's own asset is untouched"


def test_without_stored_prediction_ids_a_delivery_is_bound_by_the_input_it_echoes(deps, waiting):
    """Hookdeck: predictions are created through its queue, so no id is stored. The asset's own
    delivery applies; the same signed delivery replayed against a later asset does not."""
    first_id, whisper = recording(deps, "http://x.test/first.flac")
    later_id, _ = recording(deps, "http://x.test/later.flac")
    forget_prediction_id(deps, first_id)
    forget_prediction_id(deps, later_id)
    assert call("POST", f"/webhooks/audio/{later_id}", whisper, signed(whisper))[0] == 409
    assert call("POST", f"/webhooks/audio/{first_id}", whisper, signed(whisper))[0] == 202
    consume_webhooks(deps)
    assert deps.store.get(first_id).status in (Status.GENERATING_EMBEDDINGS, Status.SEARCHABLE)
    assert deps.store.get(later_id).status is Status.PROCESSING and deps.store.chunks(later_id) == []

    text_id, _ = waiting
    forget_prediction_id(deps, text_id)
    chunks = [c.text for c in deps.store.chunks(text_id)]
    other = json.dumps({"id": "p-other", "status": "succeeded", "input": {"text_batch": json.dumps(["other"])},
                        "output": [{"embedding": word_vector("other")}]})
    assert call("POST", f"/webhooks/embedding/{text_id}", other, signed(other))[0] == 409
    own = json.dumps({"id": "p-own", "status": "succeeded", "input": {"text_batch": json.dumps(chunks)},
                      "output": [{"embedding": word_vector(t)} for t in chunks]})
    assert call("POST", f"/webhooks/embedding/{text_id}", own, signed(own))[0] == 202
    consume_webhooks(deps)
    assert deps.store.get(text_id).status is Status.SEARCHABLE


def test_a_foreign_delivery_already_queued_is_not_applied(deps, waiting):
    text_id, _ = waiting
    forget_prediction_id(deps, text_id)
    _, whisper = recording(deps, "http://x.test/jfk.flac")
    for kind in ("audio", "embedding"):
        deps.webhooks.messages.append({"kind": kind, "asset_id": text_id, "body": whisper})
    assert consume_webhooks(deps) == {"batchItemFailures": []}
    assert deps.store.get(text_id).status is Status.GENERATING_EMBEDDINGS and deps.store.get(text_id).error is None


def test_webhooks_for_unknown_and_malformed_ids_answer_404_and_400(deps):
    body = json.dumps({"id": "p", "status": "succeeded", "output": []})
    assert call("POST", "/webhooks/embedding/" + "0" * 32, body, signed(body))[0] == 404
    assert call("POST", "/webhooks/embedding/zzz", body, signed(body))[0] == 400
    assert call("POST", "/webhooks/audio/" + "0" * 32, body, signed(body))[0] == 404
    assert call("POST", "/webhooks/audio/" + "0" * 32, body, {})[0] == 401
    assert deps.webhooks.messages == []


def test_with_hookdeck_configured_only_hookdecks_signature_is_accepted(deps, waiting):
    import base64
    import hashlib
    import hmac

    from allthethings.adapters.signatures import HookdeckVerifier

    asset_id, body = waiting
    deps.verifier = HookdeckVerifier("hd-secret")
    hookdeck = base64.b64encode(hmac.new(b"hd-secret", body.encode(), hashlib.sha256).digest()).decode()
    assert call("POST", f"/webhooks/embedding/{asset_id}", body, signed(body))[0] == 401
    status, _ = call("POST", f"/webhooks/embedding/{asset_id}", body,
                     {"x-hookdeck-signature": hookdeck, "content-type": "application/json"})
    assert status == 202
    consume_webhooks(deps)
    assert deps.store.get(asset_id).status is Status.SEARCHABLE


def test_concurrent_requests_in_one_process_each_see_their_own_event():
    """The local gateway runs handlers on threads of one process; Powertools keeps the current
    event on a class. Under the gateway (importing it isolates requests), two resolvers (two
    "containers") resolving at once must not swap events."""
    import threading

    from aws_lambda_powertools import Logger

    import devstack.gateway  # noqa: F401 - isolates the requests of its threads
    from allthethings.entrypoints.resolver import api

    both_resolving = threading.Barrier(2, timeout=10)
    seen: dict[str, str] = {}

    def container():
        app = api(Logger(service="concurrency-test"))

        @app.get("/echo/<name>")
        def echo(name: str):
            both_resolving.wait()  # the other thread's resolve() has run by now
            seen[name] = app.current_event.path
            return {"path": app.current_event.path}
        return app

    def request(app, name):
        event = {"version": "2.0", "routeKey": "GET /echo/{name}", "rawPath": f"/echo/{name}", "rawQueryString": "",
                 "headers": {}, "requestContext": {"http": {"method": "GET", "path": f"/echo/{name}"},
                                                   "requestId": name, "stage": "$default"},
                 "pathParameters": {"name": name}}
        app.resolve(event, None)

    threads = [threading.Thread(target=request, args=(container(), name)) for name in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert seen == {"first": "/echo/first", "second": "/echo/second"}


def test_a_retry_may_ask_for_a_fresh_fetch_and_a_bad_retry_body_is_a_400(deps):
    deps.fetcher.pages["http://x.test/bad.txt"] = ("text/plain", b"FAIL")
    _, asset = call("POST", "/api/assets", json.dumps({"url": "http://x.test/bad.txt"}))
    process_all(deps)
    assert call("GET", f"/api/assets/{asset['id']}")[1]["status"] == "PROCESSING_ERROR"
    for body in ('{"refetch": "please"}', '{"refresh": true}', "[true]"):
        assert call("POST", f"/api/assets/{asset['id']}/retry", body)[0] == 400, body
    deps.fetcher.pages["http://x.test/bad.txt"] = ("text/plain", TEXT.encode())
    status, retried = call("POST", f"/api/assets/{asset['id']}/retry", '{"refetch": true}')
    assert status == 202 and retried["status"] == "SUBMITTED"
    process_all(deps)
    assert call("GET", f"/api/assets/{asset['id']}")[1]["status"] == "SEARCHABLE"
    assert deps.fetcher.calls.count("http://x.test/bad.txt") == 2
