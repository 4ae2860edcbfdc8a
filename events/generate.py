"""Write the sample events in this folder for `sam local invoke` (see README.md).

    python events/generate.py              # rewrite every event, byte for byte the same as committed
    python events/generate.py --now        # webhook events re-signed with the current time (so they verify)
    python events/generate.py --out DIR    # write to DIR instead of this folder

The HTTP events are API Gateway HTTP API payload format 2.0, one per route in
infra/template.yaml, each named after the function that owns the route (samples()
says which). A route the template puts behind the Lambda authorizer is sent with
the example API key in x-api-key and arrives, as API Gateway passes it on, with
the authorizer's answer in requestContext.authorizer.lambda; authorizer-request.json
is what the authorizer itself receives for one of them. The *-sqs.json files
are SQS events as Lambda receives them. The webhook
events carry a real Standard Webhooks signature made with TEST_WEBHOOK_SECRET;
verification also checks that webhook-timestamp is within five minutes, hence --now.
Standard library only, so it runs without the project's virtualenv.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

HERE = Path(__file__).resolve().parent

TEST_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"allthethings-test-secret").decode()
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "example"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
ASSET_ID = "3f9c2b7e8a1d4c6f9e0b5a2d7c4e1f08"
PREDICTION_ID = "q8w2hk7x1drj40cm3v9t5yn6pe"
AUDIO_PREDICTION_ID = "c7mz4t0kq9rg2m1xw6dy3hb8fa"
EMBEDDING_VERSION = "b6b7585c9640cd7a9572c6e129c9549d79c9c31f0d3fdce7baac7c67ca38f305"
WHISPER_VERSION = "8099696689d249cf8b122d833c36ac3f75505c666a395ca40ef26f68e7d3d16e"
VISION_VERSION = "bf57361c75677fc33d480d0c5f02926e621b2caa2000347cb74aeae9d2ca07ee"
IMAGE_PREDICTION_ID = "h3kd8w1qz7tr5m0yc2vx9bn4ga"
# The source the sources events talk about: the Python Insider blog's Atom feed.
SOURCE_ID = "src_9d4e2a7c1b8f4e06a3c5d7b9e1f20468"
FEED_URL = "https://blog.python.org/feeds/posts/default"
SOURCE_QUEUE = "allthethings-SourceQueue-Vb6pK1sD9wHn"
BASE_TIME = datetime(2025, 11, 21, 5, 40, 0, tzinfo=UTC)
# Fake, and public: it exists only so these events (and tests/unit/test_events.py) have a key of
# the accepted shape (a name, and at least 20 characters). Never configure it on a deployed stack.
EXAMPLE_KEY_NAME = "example"
EXAMPLE_API_KEY = "example-key-not-a-secret-0000"

CLIENT_IP = "203.0.113.24"      # TEST-NET-3
REPLICATE_IP = "198.51.100.17"  # TEST-NET-2
CURL = "curl/8.5.0"
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0")


def _request_id(n: int) -> str:
    """Like API Gateway's: 11 random bytes in base64, 16 characters ending in "=" (here without + or /)."""
    return base64.b64encode(hashlib.sha256(f"request-{n}".encode()).digest()[:11], altchars=b"Qx").decode()


def _trace_id(epoch: int, n: int) -> str:
    return f"Root=1-{epoch:08x}-{hashlib.sha256(f'trace-{n}'.encode()).hexdigest()[:24]}"


def http_event(n: int, method: str, route: str, path: str, *, query: dict[str, str] | None = None,
               path_parameters: dict[str, str] | None = None, body: str | None = None, base64_body: bool = False,
               content_type: str | None = None, user_agent: str = CURL, source_ip: str = CLIENT_IP,
               extra_headers: dict[str, str] | None = None, accept: str = "application/json",
               keyed: bool = False) -> dict:
    """An HTTP API (payload 2.0) event as API Gateway would deliver it for this request.

    API Gateway leaves out queryStringParameters, pathParameters and body when
    the request has none; so do these events. `keyed`: the request carries the
    example key and the route runs the authorizer, so the event arrives with the
    context the authorizer answered (for a valid key: its name, and no sign-in).
    """
    when = BASE_TIME.timestamp() + n * 7
    epoch = int(when)
    raw_query = urlencode(query or {}, quote_via=quote)
    headers = {"accept": accept}
    if body is not None:
        headers["content-length"] = str(len(body.encode()))
        headers["content-type"] = content_type or "application/json"
    headers |= {
        "host": DOMAIN,
        "user-agent": user_agent,
        "x-amzn-trace-id": _trace_id(epoch, n),
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if keyed:
        headers["x-api-key"] = EXAMPLE_API_KEY
    headers |= extra_headers or {}
    headers = dict(sorted(headers.items()))
    event: dict = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
    }
    if query:
        event["queryStringParameters"] = query
    context: dict = {"accountId": ACCOUNT_ID, "apiId": API_ID}
    if keyed:
        context["authorizer"] = {"lambda": {"key": EXAMPLE_KEY_NAME, "signin": ""}}
    event["requestContext"] = context | {
        "domainName": DOMAIN,
        "domainPrefix": API_ID,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                 "userAgent": user_agent},
        "requestId": _request_id(n),
        "routeKey": f"{method} {route}",
        "stage": "$default",
        "time": datetime.fromtimestamp(epoch, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(when * 1000) + 123,
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = base64.b64encode(body.encode()).decode() if base64_body else body
    event["isBase64Encoded"] = base64_body
    return event


def authorizer_request(event: dict) -> dict:
    """The payload 2.0 REQUEST event the Lambda authorizer gets for the request behind `event`.

    The request as the function would see it, less what the authorizer never gets (the body)
    and what it has yet to decide (requestContext.authorizer). identitySource is empty because
    the template configures none: the authorizer must also see requests that carry no key.
    """
    context = {k: v for k, v in event["requestContext"].items() if k != "authorizer"}
    method, _, path = event["routeKey"].partition(" ")
    request = {k: context if k == "requestContext" else v for k, v in event.items()
               if k not in ("version", "body", "isBase64Encoded")}
    # Ordered as in the API Gateway developer guide's payload 2.0 example.
    return {"version": "2.0", "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{context['stage']}/{method}{path}",
            "identitySource": [], **request}


def _iso(seconds_after_base: float) -> str:
    return datetime.fromtimestamp(BASE_TIME.timestamp() + seconds_after_base, UTC).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


def _signed_headers(body: str, msg_id: str, timestamp: int) -> dict[str, str]:
    """Standard Webhooks: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    key = base64.b64decode(TEST_WEBHOOK_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def webhook_event(n: int, kind: str, prediction: dict, msg_id: str, now: bool) -> dict:
    body = json.dumps(prediction, separators=(",", ":"))
    timestamp = int(time.time()) if now else int(BASE_TIME.timestamp() + n * 7)
    return http_event(n, "POST", f"/webhooks/{kind}/{{id}}", f"/webhooks/{kind}/{ASSET_ID}",
                      path_parameters={"id": ASSET_ID}, body=body, user_agent="Replicate-Webhook/1.0",
                      source_ip=REPLICATE_IP, accept="*/*",
                      extra_headers=_signed_headers(body, msg_id, timestamp))


def prediction(pid: str, model: str, version: str, inputs: dict, output, kind: str, started: float) -> dict:
    return {
        "id": pid,
        "model": model,
        "version": version,
        "input": inputs,
        "logs": "",
        "output": output,
        "data_removed": False,
        "error": None,
        "status": "succeeded",
        "created_at": _iso(started),
        "started_at": _iso(started + 0.41),
        "completed_at": _iso(started + 1.37),
        "urls": {"cancel": f"https://api.replicate.com/v1/predictions/{pid}/cancel",
                 "get": f"https://api.replicate.com/v1/predictions/{pid}",
                 "web": f"https://replicate.com/p/{pid}"},
        "metrics": {"predict_time": 0.958},
        "webhook": f"https://{DOMAIN}/webhooks/{kind}/{ASSET_ID}",
        "webhook_events_filter": ["completed"],
    }


def sqs_event(message: dict | None = None, queue: str = "allthethings-ProcessQueue-Xk2JcV8pQ1aB",
              sender: str = "allthethings-SubmitFunction-Hq4vW8nZ1cTe") -> dict:
    message = message or {"kind": "process_asset", "asset_id": ASSET_ID, "webhook_base": f"https://{DOMAIN}"}
    body = json.dumps(message, separators=(",", ":"))
    sent = int(BASE_TIME.timestamp() * 1000) + 14_512
    return {"Records": [{
        "messageId": "5c2e8f4a-9b1d-4e7a-8c3f-2d6b0a9e1f47",
        "receiptHandle": base64.b64encode(hashlib.sha512(b"receipt-1").digest() * 2).decode(),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "AWSTraceHeader": f"Root=1-{sent // 1000:08x}-{hashlib.sha256(b'sqs').hexdigest()[:24]};"
                              f"Parent=5e1b4151d2ea3f29;Sampled=1",
            "SentTimestamp": str(sent),
            "SenderId": f"AROA2EXAMPLEROLEID7K3:{sender}",
            "ApproximateFirstReceiveTimestamp": str(sent + 38),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}",
        "awsRegion": REGION,
    }]}


class Sample(NamedTuple):
    function: str  # the template's logical id of the function to invoke with it
    event: dict


def samples(now: bool) -> dict[str, Sample]:
    """Every event file, in the order README.md lists them (a walk through one asset's life, then
    documents, embeddings and a source)."""
    form = urlencode({"url": "https://en.wikipedia.org/wiki/Mozilla"})
    browser = {"accept-encoding": "gzip, deflate, br, zstd", "accept-language": "en-US,en;q=0.5"}
    html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = {"user_agent": BROWSER, "accept": html}
    # A browser's form post from the home page. HTTP APIs base64-encode form bodies; a form with
    # no fields (the row and sign-out buttons) sends an empty body, which the event leaves out.
    posted = browser | {"origin": f"https://{DOMAIN}", "referer": f"https://{DOMAIN}/"}
    form_post = {"content_type": "application/x-www-form-urlencoded", "base64_body": True, **page}
    empty_form = posted | {"content-length": "0", "content-type": "application/x-www-form-urlencoded"}
    asset = {"path_parameters": {"id": ASSET_ID}}
    source = {"path_parameters": {"id": SOURCE_ID}}
    on_sources = posted | {"referer": f"https://{DOMAIN}/sources"}  # a form post from the sources page
    embedding = prediction(
        PREDICTION_ID, "replicate/all-mpnet-base-v2", EMBEDDING_VERSION,
        {"text_batch": json.dumps(["Mozilla is a free software community founded in 1998."])},
        [{"embedding": [0.0123, -0.0456, 0.0789]}], "embedding", 30)
    audio = prediction(
        AUDIO_PREDICTION_ID, "openai/whisper", WHISPER_VERSION,
        {"audio": "https://example-staging.s3.amazonaws.com/staged/talk.mp3", "model": "large-v3"},
        {"detected_language": "english", "transcription": " Welcome to the talk.",
         "segments": [{"id": 0, "start": 0.0, "end": 1.9, "text": " Welcome to the talk."}]},
        "audio", 40)
    image = prediction(
        IMAGE_PREDICTION_ID, "lucataco/qwen2-vl-7b-instruct", VISION_VERSION,
        {"media": "https://example-staging.s3.amazonaws.com/staged/whiteboard.jpg",
         "prompt": "Describe this image in one paragraph, then transcribe the text in it.", "max_new_tokens": 512},
        "DESCRIPTION: A whiteboard with a hand-drawn architecture diagram.\nTEXT:\nSubmit -> Queue -> Process",
        "image", 50)
    # The first argument of http_event numbers the request (its id, trace and time). The numbers
    # are kept when events are added, so that adding one leaves the others' files unchanged.
    create = http_event(2, "POST", "/api/assets", "/api/assets", keyed=True,
                        body=json.dumps({"url": "https://en.wikipedia.org/wiki/Mozilla"}))
    return {
        "submit-health.json": Sample("SubmitFunction", http_event(1, "GET", "/api/health", "/api/health")),
        "pages-openapi.json": Sample("PagesFunction", http_event(11, "GET", "/api/openapi.json", "/api/openapi.json")),
        "pages-docs.json": Sample("PagesFunction", http_event(12, "GET", "/api/docs", "/api/docs", **page,
                                                              extra_headers=browser)),
        "submit-create-asset.json": Sample("SubmitFunction", create),
        # The same request as the authorizer sees it, before API Gateway lets it through.
        "authorizer-request.json": Sample("AuthorizerFunction", authorizer_request(create)),
        "submit-list-assets.json": Sample("SubmitFunction", http_event(
            3, "GET", "/api/assets", "/api/assets", query={"limit": "20"}, keyed=True)),
        "submit-get-asset.json": Sample("SubmitFunction", http_event(
            4, "GET", "/api/assets/{id}", f"/api/assets/{ASSET_ID}", **asset, keyed=True)),
        "process-sqs.json": Sample("ProcessFunction", sqs_event()),
        # A body too large or too slow to read inside the submission: the fetch queue's message, and
        # the hand-over an invocation that ran out of time queues (the rest by a Range request).
        "fetch-sqs.json": Sample("FetchFunction", sqs_event(
            {"kind": "fetch_asset", "asset_id": ASSET_ID, "webhook_base": f"https://{DOMAIN}", "offset": 0},
            queue="allthethings-FetchQueue-Hn4sW8cE2rQz", sender="allthethings-SubmitFunction-Lp2xR7nK4vTu")),
        "fetch-continue-sqs.json": Sample("FetchFunction", sqs_event(
            {"kind": "fetch_asset", "asset_id": ASSET_ID, "webhook_base": f"https://{DOMAIN}",
             "offset": 8388608, "upload_id": "VXBsb2FkIElEIGZvciBhbGx0aGV0aGluZ3M",
             "etags": ['"5f363e0e58a95f06cbe9bbc662c5dfb6"'], "etag": '"a3f9-5d41402abc4b"',
             "last_modified": "Tue, 14 Nov 2023 22:13:20 GMT", "restarts": 0, "resumes": 0},
            queue="allthethings-FetchQueue-Hn4sW8cE2rQz", sender="allthethings-FetchFunction-Qe8vN3tJ6wYb")),
        "webhook-embedding.json": Sample("WebhookEmbeddingFunction", webhook_event(
            9, "embedding", embedding, "msg_2pQzE0fTg7dKx1VbN8cHs4YwLm", now)),
        "webhook-audio.json": Sample("WebhookAudioFunction", webhook_event(
            10, "audio", audio, "msg_2pQzF3hUj9eLy2WcP0dJt5ZxMn", now)),
        "webhook-audio-image.json": Sample("WebhookAudioFunction", webhook_event(
            41, "image", image, "msg_2pQzG5kVm1fNz3XdQ2eKu6AyPo", now)),
        "submit-thumbnail.json": Sample("SubmitFunction", http_event(
            42, "GET", "/api/assets/{id}/thumbnail", f"/api/assets/{ASSET_ID}/thumbnail", **asset, keyed=True)),
        # What the audio webhook function queues for the webhook consumer: a verified delivery.
        "webhook-consumer-sqs.json": Sample("WebhookConsumerFunction", sqs_event(
            {"kind": "audio", "asset_id": ASSET_ID, "delivery_id": "msg_2pQzF3hUj9eLy2WcP0dJt5ZxMn",
             "webhook_base": f"https://{DOMAIN}", "body": json.dumps(audio)},
            queue="allthethings-WebhookQueue-Tq7LmR2zX9cD", sender="allthethings-WebhookAudioFunction-Mv3nB6yP0sKw")),
        # A scanned PDF's text detection finished: Textract's notice, put on the webhook queue by the
        # OCR topic's raw delivery (the job id is the one the process function recorded).
        "webhook-consumer-ocr-sqs.json": Sample("WebhookConsumerFunction", sqs_event(
            {"JobId": "8e4c1f2a9b7d3e6f0a5c2b8d1e9f4a7c3b6d0e2f5a8c1b4d7e0f3a6c9b2d5e8f", "Status": "SUCCEEDED",
             "API": "StartDocumentTextDetection", "JobTag": ASSET_ID, "Timestamp": 1763703720000,
             "DocumentLocation": {"S3ObjectName": f"staged/{ASSET_ID}", "S3Bucket": "allthethings-stagingbucket"}},
            queue="allthethings-WebhookQueue-Tq7LmR2zX9cD", sender="sns.amazonaws.com")),
        "search.json": Sample("SearchFunction", http_event(
            7, "GET", "/api/search", "/api/search", query={"q": "open source web browser", "limit": "5"}, keyed=True)),
        # Signing in is public (it is how a browser gets its key); the pages after it are keyed.
        "pages-session.json": Sample("PagesFunction", http_event(
            13, "POST", "/session", "/session", body=urlencode({"key": EXAMPLE_API_KEY, "next": "/"}), **form_post,
            extra_headers=posted)),
        "pages-home.json": Sample("PagesFunction", http_event(5, "GET", "/", "/", **page, extra_headers=browser,
                                                              keyed=True)),
        "pages-asset.json": Sample("PagesFunction", http_event(
            25, "GET", "/assets/{id}", f"/assets/{ASSET_ID}", path_parameters={"id": ASSET_ID}, **page,
            extra_headers=browser, keyed=True)),
        "pages-process-form.json": Sample("PagesFunction", http_event(
            6, "POST", "/process", "/process", body=form, **form_post, extra_headers=posted, keyed=True)),
        "search-page.json": Sample("SearchFunction", http_event(
            8, "GET", "/search", "/search", query={"query": "browser"}, **page,
            extra_headers=browser | {"referer": f"https://{DOMAIN}/"}, keyed=True)),
        "submit-retry-asset.json": Sample("SubmitFunction", http_event(
            14, "POST", "/api/assets/{id}/retry", f"/api/assets/{ASSET_ID}/retry", **asset, keyed=True)),
        "pages-retry-form.json": Sample("PagesFunction", http_event(
            15, "POST", "/assets/{id}/retry", f"/assets/{ASSET_ID}/retry",
            path_parameters={"id": ASSET_ID}, **page, extra_headers=empty_form, keyed=True)),
        "pages-delete-form.json": Sample("PagesFunction", http_event(
            24, "POST", "/assets/{id}/delete", f"/assets/{ASSET_ID}/delete",
            path_parameters={"id": ASSET_ID}, **page, extra_headers=empty_form, keyed=True)),
        "submit-delete-asset.json": Sample("SubmitFunction", http_event(
            16, "DELETE", "/api/assets/{id}", f"/api/assets/{ASSET_ID}", **asset, keyed=True)),
        "pages-signout.json": Sample("PagesFunction", http_event(
            17, "POST", "/signout", "/signout", **page, extra_headers=empty_form)),
        "documents-ingest.json": Sample("DocumentsFunction", http_event(
            18, "POST", "/api/documents", "/api/documents", keyed=True, body=json.dumps({"documents": [
                {"id": "faq-17", "title": "Refunds", "text": "Refunds reach your card within five working days.",
                 "metadata": {"source": "helpdesk", "lang": "en"}},
                {"text": "Shipping to the EU takes two to four days."}]}))),
        # The processing message document ingestion queues: embed these documents' chunks together.
        "process-documents-sqs.json": Sample("ProcessFunction", sqs_event(
            {"kind": "embed_documents", "asset_ids": [ASSET_ID, "5d41402abc4b2a76b9719d911017c592"], "webhook_base": f"https://{DOMAIN}"},
            sender="allthethings-DocumentsFunction-Rw5kT2mQ8vLe")),
        # What OpenAI's Python client sends (it asks for base64 unless told otherwise).
        "embeddings-create.json": Sample("EmbeddingsFunction", http_event(
            19, "POST", "/v1/embeddings", "/v1/embeddings", keyed=True, body=json.dumps(
                {"input": ["open source web browser", "a free software community"], "model": "all-mpnet-base-v2",
                 "encoding_format": "base64"}))),
        "embeddings-models.json": Sample("EmbeddingsFunction", http_event(
            20, "GET", "/v1/models", "/v1/models", keyed=True)),
        "embeddings-model.json": Sample("EmbeddingsFunction", http_event(
            21, "GET", "/v1/models/{model+}", "/v1/models/sentence-transformers/all-mpnet-base-v2",
            path_parameters={"model": "sentence-transformers/all-mpnet-base-v2"}, keyed=True)),
        # A feed added as a source: its items are remembered, then submitted as assets behind the
        # source queue by the source worker (each message is what the function named as its sender queues).
        "sources-create-source.json": Sample("SourcesFunction", http_event(
            43, "POST", "/api/sources", "/api/sources", keyed=True,
            body=json.dumps({"url": FEED_URL, "refresh_interval_s": 3600}))),
        "source-worker-submit-sqs.json": Sample("SourceWorkerFunction", sqs_event(
            {"kind": "submit_entries", "source_id": SOURCE_ID, "webhook_base": f"https://{DOMAIN}"},
            queue=SOURCE_QUEUE, sender="allthethings-SourcesFunction-Jc3tF8mW2qXa")),
        "sources-list-sources.json": Sample("SourcesFunction", http_event(
            44, "GET", "/api/sources", "/api/sources", query={"limit": "20"}, keyed=True)),
        "sources-get-source.json": Sample("SourcesFunction", http_event(
            45, "GET", "/api/sources/{id}", f"/api/sources/{SOURCE_ID}", **source, keyed=True)),
        "sources-refresh-source.json": Sample("SourcesFunction", http_event(
            46, "POST", "/api/sources/{id}/refresh", f"/api/sources/{SOURCE_ID}/refresh", **source, keyed=True)),
        # A conditional read (force: false), as the refresh route and the sweeper's schedule queue it.
        "source-worker-read-sqs.json": Sample("SourceWorkerFunction", sqs_event(
            {"kind": "read_source", "source_id": SOURCE_ID, "webhook_base": f"https://{DOMAIN}", "force": False},
            queue=SOURCE_QUEUE, sender="allthethings-SourcesFunction-Jc3tF8mW2qXa")),
        "sources-delete-source.json": Sample("SourcesFunction", http_event(
            47, "DELETE", "/api/sources/{id}", f"/api/sources/{SOURCE_ID}", query={"assets": "true"}, **source,
            keyed=True)),
        # The assets a deletion with assets=true could not delete within the request.
        "source-worker-delete-sqs.json": Sample("SourceWorkerFunction", sqs_event(
            {"kind": "delete_source_assets", "source_id": SOURCE_ID, "webhook_base": f"https://{DOMAIN}"},
            queue=SOURCE_QUEUE, sender="allthethings-SourcesFunction-Jc3tF8mW2qXa")),
        # EventBridge's Scheduled Event, as the sweeper's rate(10 minutes) rule delivers it.
        "sweeper-schedule.json": Sample("SweeperFunction", {
            "version": "0", "id": "5e0f4f1c-2b8a-4c1e-9d3f-7a6b5c4d3e2f", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT_ID, "time": "2025-11-21T06:00:00Z", "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/allthethings-SweeperFunctionEvery10Minutes"],
            "detail": {}}),
        # The same source from the browser's sources page: its form adds the feed, a row's buttons
        # read it again and delete it with its assets (each 303 back to the page with a notice).
        "pages-sources.json": Sample("PagesFunction", http_event(
            60, "GET", "/sources", "/sources", **page, extra_headers=browser, keyed=True)),
        "pages-add-source-form.json": Sample("PagesFunction", http_event(
            61, "POST", "/sources", "/sources", body=urlencode({"url": FEED_URL}), **form_post,
            extra_headers=on_sources, keyed=True)),
        "pages-refresh-source-form.json": Sample("PagesFunction", http_event(
            62, "POST", "/sources/{id}/refresh", f"/sources/{SOURCE_ID}/refresh", **source, **page,
            extra_headers=empty_form | {"referer": f"https://{DOMAIN}/sources"}, keyed=True)),
        "pages-delete-source-form.json": Sample("PagesFunction", http_event(
            63, "POST", "/sources/{id}/delete", f"/sources/{SOURCE_ID}/delete", body=urlencode({"assets": "true"}),
            **source, **form_post, extra_headers=on_sources, keyed=True)),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--now", action="store_true", help="rewrite only the webhook events, signed now")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write to (default: this one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, sample in samples(args.now).items():
        if args.now and not name.startswith("webhook-"):
            continue
        (args.out / name).write_text(json.dumps(sample.event, indent=2) + "\n")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main(sys.argv[1:])
