"""Hookdeck: its signature on deliveries (with a rotated secret), and predictions created through a
Hookdeck source that queues them for Replicate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from allthethings.adapters.replicate import ReplicateClient, ReplicateTranscriber
from allthethings.adapters.signatures import HookdeckVerifier
from allthethings.domain.errors import Unauthorized

SECRET = "hookdeck-signing-secret-1"
BODY = b'{"id":"p1","status":"succeeded","output":{"segments":[]}}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_a_delivery_signed_with_the_secret_is_accepted():
    assert HookdeckVerifier(SECRET).verify(BODY, {"X-Hookdeck-Signature": sign(BODY), "X-Hookdeck-EventId": "evt_1"}) \
        == "evt_1"


def test_during_a_rotation_the_second_signature_is_enough():
    headers = {"x-hookdeck-signature": sign(BODY, "the-new-secret"), "x-hookdeck-signature-2": sign(BODY)}
    HookdeckVerifier(SECRET).verify(BODY, headers)


@pytest.mark.parametrize("headers", [
    {},
    {"x-hookdeck-signature": ""},
    {"x-hookdeck-signature": sign(BODY, "another-secret")},
    {"x-hookdeck-signature": sign(BODY + b" ")},
    {"x-hookdeck-signature": sign(BODY)[:-4] + "AAAA"},
    {"x-hookdeck-signature-2": sign(b"{}")},
])
def test_a_missing_wrong_or_tampered_signature_is_refused(headers):
    with pytest.raises(Unauthorized):
        HookdeckVerifier(SECRET).verify(BODY, headers)


def test_without_a_configured_secret_every_delivery_is_refused():
    with pytest.raises(Unauthorized, match="not configured"):
        HookdeckVerifier(None).verify(BODY, {"x-hookdeck-signature": sign(BODY, "")})


@pytest.fixture
def recorder():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            reply = json.dumps({"status": "SUCCESS", "message": "Request handled.", "request_id": "req_1"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_a_webhooked_prediction_goes_through_the_hookdeck_source_with_replicates_request(recorder):
    hookdeck, seen = recorder
    client = ReplicateClient("http://127.0.0.1:9/v1", lambda: "r8_token", queue_url=f"{hookdeck}/src_abc/",
                             attempts=1)
    pending = ReplicateTranscriber(client, "v" * 64).submit("https://bucket.test/a.flac?sig=1",
                                                             "https://api.test/webhooks/audio/" + "0" * 32)
    assert pending.prediction_id is None, "the id comes with the webhook"
    (request,) = seen
    assert request["path"] == "/src_abc/predictions" and request["auth"] == "Bearer r8_token"
    assert request["body"]["version"] == "v" * 64 and request["body"]["input"]["audio"].startswith("https://bucket")
    assert request["body"]["webhook_events_filter"] == ["completed"]
