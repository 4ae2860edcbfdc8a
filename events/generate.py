"""Write the sample events in this folder for `sam local invoke` (see README.md).

    python events/generate.py          # rewrite every event, byte for byte the same as committed
    python events/generate.py --now    # webhook events re-signed with the current time (so they verify)

The HTTP events are API Gateway HTTP API payload format 2.0, one per route in
infra/template.yaml; process-sqs.json is an SQS event as Lambda receives it.
The webhook events carry a real Standard Webhooks signature made with
TEST_WEBHOOK_SECRET; verification also checks that webhook-timestamp is within
five minutes, hence --now. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
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
BASE_TIME = datetime(2025, 11, 21, 5, 40, 0, tzinfo=UTC)

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
               extra_headers: dict[str, str] | None = None, accept: str = "application/json") -> dict:
    """An HTTP API (payload 2.0) event as API Gateway would deliver it for this request.

    API Gateway leaves out queryStringParameters, pathParameters and body when
    the request has none; so do these events.
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
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
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
    message = message or {"asset_id": ASSET_ID, "webhook_base": f"https://{DOMAIN}"}
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


def events(now: bool) -> dict[str, dict]:
    form = urlencode({"url": "https://en.wikipedia.org/wiki/Mozilla"})
    browser = {"accept-encoding": "gzip, deflate, br, zstd", "accept-language": "en-US,en;q=0.5"}
    html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
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
    return {
        "submit-health.json": http_event(1, "GET", "/api/health", "/api/health"),
        "submit-create-asset.json": http_event(
            2, "POST", "/api/assets", "/api/assets", body=json.dumps({"url": "https://en.wikipedia.org/wiki/Mozilla"})),
        "submit-list-assets.json": http_event(3, "GET", "/api/assets", "/api/assets", query={"limit": "20"}),
        "submit-get-asset.json": http_event(4, "GET", "/api/assets/{id}", f"/api/assets/{ASSET_ID}",
                                            path_parameters={"id": ASSET_ID}),
        "submit-home.json": http_event(5, "GET", "/", "/", user_agent=BROWSER, accept=html, extra_headers=browser),
        # A browser form post: HTTP APIs base64-encode application/x-www-form-urlencoded bodies.
        "submit-process-form.json": http_event(
            6, "POST", "/process", "/process", body=form, base64_body=True,
            content_type="application/x-www-form-urlencoded", user_agent=BROWSER, accept=html,
            extra_headers=browser | {"origin": f"https://{DOMAIN}", "referer": f"https://{DOMAIN}/"}),
        "search.json": http_event(7, "GET", "/api/search", "/api/search",
                                  query={"q": "open source web browser", "limit": "5"}),
        "search-page.json": http_event(8, "GET", "/search", "/search", query={"query": "browser"},
                                       user_agent=BROWSER, accept=html,
                                       extra_headers=browser | {"referer": f"https://{DOMAIN}/"}),
        "webhook-embedding.json": webhook_event(9, "embedding", embedding, "msg_2pQzE0fTg7dKx1VbN8cHs4YwLm", now),
        "webhook-audio.json": webhook_event(10, "audio", audio, "msg_2pQzF3hUj9eLy2WcP0dJt5ZxMn", now),
        "process-sqs.json": sqs_event(),
        # What the audio webhook function queues for the webhook consumer: a verified delivery.
        "webhook-consumer-sqs.json": sqs_event(
            {"kind": "audio", "asset_id": ASSET_ID, "delivery_id": "msg_2pQzF3hUj9eLy2WcP0dJt5ZxMn",
             "webhook_base": f"https://{DOMAIN}", "body": json.dumps(audio)},
            queue="allthethings-WebhookQueue-Tq7LmR2zX9cD", sender="allthethings-WebhookAudioFunction-Mv3nB6yP0sKw"),
    }


def main(argv: list[str]) -> None:
    now = "--now" in argv
    for name, event in events(now).items():
        if now and not name.startswith("webhook-"):
            continue
        (HERE / name).write_text(json.dumps(event, indent=2) + "\n")
        print(f"wrote events/{name}")


if __name__ == "__main__":
    main(sys.argv[1:])
