"""The production embedding path, end to end over real HTTP: the stack asks a Replicate-speaking
server for a `text_batch` prediction with a webhook, the server calls back with a Standard
Webhooks signature, and the asset becomes searchable; search uses `Prefer: wait`.

The server here computes deterministic bag-of-words vectors (the real model behind a local
Replicate is the next issue's); everything on the stack's side is the deployed code."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.conftest import RunningStack
from tests.fakes import word_vector

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
VERSION = "b6b7585c9640cd7a9572c6e129c9549d79c9c31f0d3fdce7baac7c67ca38f305"


@dataclasses.dataclass
class Delivery:
    url: str
    payload: bytes
    headers: dict
    status: int | None = None  # what the stack answered (None while the request is under way)


class FakeReplicate:
    """A Replicate-speaking server: each prediction succeeds at once with `output(input)` (bag-of-words
    vectors here) and is delivered to its webhook, signed."""

    def __init__(self):
        self.requests: list[dict] = []
        self.deliveries: list[Delivery] = []
        self.fail_next = False
        self.predictions: dict[str, dict] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"headers": dict(self.headers), "body": body})
                prediction = {"id": uuid.uuid4().hex[:20], "version": body["version"], "input": body["input"],
                              "status": "starting", "output": None, "error": None,
                              "created_at": datetime.now(UTC).isoformat()}
                done = dict(prediction, status="succeeded", output=owner.output(body["input"]))
                if owner.fail_next:
                    owner.fail_next = False
                    done = dict(prediction, status="failed", error="CUDA error: out of memory")
                owner.predictions[prediction["id"]] = done
                if "webhook" in body:
                    self._reply(201, prediction)
                    threading.Thread(target=owner.deliver, args=(body["webhook"], done), daemon=True).start()
                else:
                    self._reply(201, done if self.headers.get("Prefer", "").startswith("wait") else prediction)

            def do_GET(self):  # noqa: N802
                self._reply(200, owner.predictions[self.path.rsplit("/", 1)[1]])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def deliver(self, url: str, prediction: dict) -> None:
        payload = json.dumps(prediction)
        msg_id = f"msg_{uuid.uuid4().hex}"
        stamp = datetime.now(UTC)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                   "webhook-signature": Webhook(SECRET).sign(msg_id, stamp, payload),
                   "content-type": "application/json"}
        delivery = Delivery(url, payload.encode(), headers)
        self.deliveries.append(delivery)
        delivery.status = httpx.post(url, content=payload, headers=headers, timeout=60).status_code

    def output(self, inputs: dict) -> object:
        return [{"embedding": word_vector(t, 768)} for t in json.loads(inputs["text_batch"])]


@pytest.fixture(scope="module")
def replicate():
    fake = FakeReplicate()
    yield fake
    fake.server.shutdown()


@pytest.fixture(scope="module")
def remote_stack(tmp_path_factory, replicate):
    running = RunningStack(tmp_path_factory.mktemp("remote"), EMBEDDER_BACKEND="replicate",
                           EMBEDDING_MODEL="all-mpnet-base-v2",
                           REPLICATE_API_BASE=replicate.url, REPLICATE_API_TOKEN="r8_test_token",
                           REPLICATE_WEBHOOK_SECRET=SECRET)
    yield running
    running.stop()


def test_an_asset_is_embedded_by_one_webhooked_prediction_and_found_by_a_waiting_one(remote_stack, replicate,
                                                                                      fixture_server):
    before = len(replicate.requests)
    asset = remote_stack.http.post("/api/assets", json={"url": f"{fixture_server}/text/sourdough.md"}).json()
    done = remote_stack.wait_for(asset["id"], timeout_s=60)
    assert done["status"] == "SEARCHABLE", done
    (request,) = replicate.requests[before:]
    assert request["headers"]["Authorization"] == "Bearer r8_test_token"
    assert request["body"]["version"] == VERSION
    assert request["body"]["webhook"] == f"{remote_stack.url}/webhooks/embedding/{asset['id']}"
    assert request["body"]["webhook_events_filter"] == ["completed"]
    assert len(json.loads(request["body"]["input"]["text_batch"])) == done["chunk_count"]

    results = remote_stack.http.get("/api/search", params={"q": "feed the sourdough starter"}).json()["results"]
    assert results[0]["asset"]["id"] == asset["id"]
    assert replicate.requests[-1]["headers"]["Prefer"].startswith("wait")
    assert "webhook" not in replicate.requests[-1]["body"]


def test_a_redelivered_webhook_changes_nothing_and_a_forged_one_is_refused(remote_stack, replicate):
    last = replicate.deliveries[-1]
    url, payload, headers = last.url, last.payload, last.headers
    asset_id = url.rsplit("/", 1)[1]
    before = remote_stack.http.get(f"/api/assets/{asset_id}").json()
    again = httpx.post(url, content=payload, headers=headers, timeout=30)
    assert again.status_code == 202
    forged = payload.replace(b"succeeded", b"failed")
    refused = httpx.post(url, content=forged, headers=headers, timeout=30)
    assert refused.status_code == 401
    deadline = time.monotonic() + 5  # give the queued redelivery time to be applied (as a no-op)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        assert remote_stack.http.get(f"/api/assets/{asset_id}").json() == before


def test_a_failed_prediction_ends_in_embeddings_error_with_replicates_reason(remote_stack, replicate,
                                                                              fixture_server):
    replicate.fail_next = True
    asset = remote_stack.http.post("/api/assets",
                                   json={"url": f"{fixture_server}/text/lighthouse-keeping.txt"}).json()
    done = remote_stack.wait_for(asset["id"], timeout_s=60)
    assert done["status"] == "EMBEDDINGS_ERROR"
    assert "CUDA error: out of memory" in done["error"]
    assert remote_stack.http.get(f"/api/assets/{asset['id']}").json()["status"] == "EMBEDDINGS_ERROR"


def test_with_every_model_call_on_the_local_replicate_a_recording_costs_two_predictions(tmp_path, fixture_server):
    running = RunningStack(tmp_path / "parity", EMBEDDER_BACKEND="replicate")
    try:
        manifest = json.loads((tmp_path / "parity" / "local-stack.json").read_text())
        stats = f"{manifest['replicate']['url']}/_local/stats"
        auth = {"Authorization": f"Bearer {manifest['replicate']['token']}"}
        before = sum(httpx.get(stats, headers=auth).json()["created"].values())
        asset = running.http.post("/api/assets", json={"url": f"{fixture_server}/jfk.flac"}).json()
        assert running.wait_for(asset["id"])["status"] == "SEARCHABLE"
        assert sum(httpx.get(stats, headers=auth).json()["created"].values()) - before == 2
        results = running.http.get("/api/search", params={"q": "ask not what your country can do"}).json()["results"]
        assert results[0]["asset"]["id"] == asset["id"] and results[0]["end_s"] <= 11.1
    finally:
        running.stop()
