"""LocalReplicate, the loopback stand-in for Replicate's predictions API, against the production client.

One LocalReplicate (real faster-whisper and sentence-transformers models) serves the whole
module on 127.0.0.1, next to a webhook receiver written here that records every delivery
and can answer failures first, so retries can be counted. Audio comes from conftest's
fixture server. Waits are polls with deadlines: a prediction is polled until terminal, a
delivery is awaited on a condition variable, and "no further delivery" means none arrived
within a window well past the server's first retry delay (0.5 s).
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from allthethings.adapters.models import LocalEmbedder
from allthethings.adapters.replicate import (
    ReplicateClient,
    ReplicateEmbedder,
    ReplicateTranscriber,
    segments_from_output,
    vectors_from_output,
)
from allthethings.adapters.signatures import ReplicateVerifier
from allthethings.config import Settings
from allthethings.domain.errors import Unauthorized
from bench.common import serve
from bench.recording import TEST_FILLER, TEST_MARKERS, build_recording
from devstack.replicate import EMBEDDING_MODEL, VISION_MODEL, WHISPER_MODEL, LocalReplicate

TOKEN = "r8_test"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
WHISPER_VERSION = Settings().replicate_whisper_version
EMBEDDING_VERSION = "e" * 64
VISION_VERSION = Settings().replicate_vision_version
TERMINAL = ("succeeded", "failed", "canceled")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JFK_LINE = "ask not what your country can do for you"
TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "Ask not what your country can do."]


# -- a webhook receiver ------------------------------------------------------------------

@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float

    @property
    def prediction(self) -> dict:
        return json.loads(self.body)


class Receiver(ThreadingHTTPServer):
    """Records POSTs per route; a route may answer some statuses before settling on 200."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.changed = threading.Condition()
        self.deliveries: dict[str, list[Delivery]] = {}
        self.plans: dict[str, list[int]] = {}

    def route(self, *first_statuses: int) -> tuple[str, str]:
        name = uuid.uuid4().hex
        with self.changed:
            self.deliveries[name] = []
            self.plans[name] = list(first_statuses)
        return name, f"http://127.0.0.1:{self.server_address[1]}/hooks/{name}"

    def record(self, name: str, headers: dict[str, str], body: bytes) -> int:
        with self.changed:
            if name not in self.deliveries:
                return 404
            plan = self.plans[name]
            status = plan.pop(0) if plan else 200
            self.deliveries[name].append(Delivery(headers, body, status, time.monotonic()))
            self.changed.notify_all()
            return status

    def wait_for(self, name: str, count: int, timeout_s: float) -> list[Delivery]:
        """At least `count` deliveries to `name`, or fail once the deadline passes."""
        with self.changed:
            arrived = self.changed.wait_for(lambda: len(self.deliveries[name]) >= count, timeout=timeout_s)
            got = list(self.deliveries[name])
        assert arrived, f"expected {count} deliveries within {timeout_s} s, got {len(got)}"
        return got

    def quiet(self, name: str, count: int, window_s: float) -> list[Delivery]:
        """The deliveries to `name`, after checking that no more than `count` arrive within the window."""
        with self.changed:
            more = self.changed.wait_for(lambda: len(self.deliveries[name]) > count, timeout=window_s)
            got = list(self.deliveries[name])
        assert not more, f"expected no more than {count} deliveries, got {len(got)}"
        return got


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
        status = self.server.record(name, {k.lower(): v for k, v in self.headers.items()}, body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


# -- fixtures and helpers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def replicate():
    server = LocalReplicate(token=TOKEN, webhook_secret=SECRET, whisper_version=WHISPER_VERSION,
                            embedding_version=EMBEDDING_VERSION, vision_version=VISION_VERSION,
                            embedding_model="all-MiniLM-L6-v2").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def reference_embedder():
    return LocalEmbedder("all-MiniLM-L6-v2")


@pytest.fixture
def api(replicate):
    """A fresh keep-alive client per test, so one test's connection state cannot leak into another."""
    with httpx.Client(base_url=replicate.url, headers=AUTH, timeout=90) as client:
        yield client


def embed_body(inputs: dict, **extra) -> dict:
    return {"version": EMBEDDING_VERSION, "input": inputs, **extra}


def whisper_body(audio: str, **extra) -> dict:
    return {"version": WHISPER_VERSION, "input": {"audio": audio}, **extra}


def poll(api: httpx.Client, prediction_id: str, deadline_s: float = 120) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        prediction = api.get(f"/predictions/{prediction_id}").json()
        if prediction["status"] in TERMINAL:
            return prediction
        assert time.monotonic() < deadline, f"prediction {prediction_id} still {prediction['status']}"
        time.sleep(0.1)


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def parse_time(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- authentication ----------------------------------------------------------------------

def test_a_request_without_authorization_is_refused_with_401(replicate):
    with httpx.Client(base_url=replicate.url, timeout=10) as anonymous:
        got = anonymous.get("/predictions/anything")
        posted = anonymous.post("/predictions", json=embed_body({"text": "hello"}))
    assert got.status_code == 401
    assert posted.status_code == 401
    assert got.json()["title"] == "Unauthenticated"


@pytest.mark.parametrize("authorization", ["Bearer r8_wrong", "Token r8_wrong", "Basic r8_test", "r8_test",
                                           "Bearer", "Bearer r8_test2"])
def test_a_wrong_token_or_scheme_is_refused_with_401(replicate, authorization):
    response = httpx.get(f"{replicate.url}/predictions/anything", headers={"Authorization": authorization},
                         timeout=10)
    assert response.status_code == 401


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_both_the_bearer_and_the_token_schemes_are_accepted(replicate, scheme):
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    with httpx.Client(base_url=replicate.url, headers=headers, timeout=60) as client:
        missing = client.get("/predictions/doesnotexist")
        created = client.post("/predictions", json=embed_body({"text": "hello"}), headers={"Prefer": "wait"})
    assert missing.status_code == 404
    assert created.status_code == 201
    assert created.json()["status"] == "succeeded"


def test_a_token_with_non_ascii_characters_is_refused_with_401(replicate):
    response = httpx.get(f"{replicate.url}/predictions/anything", headers={"Authorization": b"Bearer r8_t\xe9st"},
                         timeout=10)
    assert response.status_code == 401


def test_a_post_refused_with_401_leaves_the_keep_alive_connection_usable(replicate):
    with httpx.Client(base_url=replicate.url, timeout=10) as client:
        refused = client.post("/predictions", json=embed_body({"text": "hello"}),
                              headers={"Authorization": "Bearer r8_wrong"})
        following = client.get("/predictions/doesnotexist", headers=AUTH)
    assert refused.status_code == 401
    assert following.status_code == 404, following.text[:120]


# -- routes and validation ---------------------------------------------------------------

def test_an_unknown_version_is_refused_with_422(api):
    response = api.post("/predictions", json={"version": "0" * 64, "input": {"text": "hello"}})
    assert response.status_code == 422
    assert "version" in response.json()["detail"].lower()


def test_a_version_missing_from_the_body_is_refused_with_422(api):
    assert api.post("/predictions", json={"input": {"text": "hello"}}).status_code == 422


def test_a_version_written_as_owner_name_colon_id_is_accepted(api):
    response = api.post("/predictions", json=embed_body({"text": "hello"}) | {
        "version": f"replicate/all-mpnet-base-v2:{EMBEDDING_VERSION}"}, headers={"Prefer": "wait"})
    assert response.status_code == 201
    assert response.json()["version"] == EMBEDDING_VERSION


def test_a_prediction_can_be_created_by_model_name(api):
    response = api.post("/models/replicate/all-mpnet-base-v2/predictions", json={"input": {"text": "by model"}},
                        headers={"Prefer": "wait"})
    assert response.status_code == 201
    prediction = response.json()
    assert prediction["model"] == EMBEDDING_MODEL
    assert prediction["version"] == EMBEDDING_VERSION
    assert prediction["status"] == "succeeded"
    assert len(vectors_from_output(prediction["output"])) == 1


def test_a_model_that_is_not_served_is_refused(api):
    response = api.post("/models/acme/nothing/predictions", json={"input": {"text": "hello"}})
    assert response.status_code == 422


@pytest.mark.parametrize("body", [
    pytest.param(embed_body({"text_batch": "not json"}), id="text_batch-not-json"),
    pytest.param(embed_body({"text_batch": '{"a": "b"}'}), id="text_batch-an-object"),
    pytest.param(embed_body({"text_batch": "[1, 2]"}), id="text_batch-of-numbers"),
    pytest.param(embed_body({"text_batch": ["a", "b"]}), id="text_batch-a-list-not-a-string"),
    pytest.param(embed_body({"text": 42}), id="text-not-a-string"),
    pytest.param(embed_body({}), id="no-text"),
    pytest.param({"version": EMBEDDING_VERSION}, id="no-input"),
    pytest.param(embed_body(["hello"]), id="input-not-an-object"),
    pytest.param({"version": WHISPER_VERSION, "input": {}}, id="missing-audio"),
    pytest.param(whisper_body("file:///etc/passwd"), id="file-audio-url"),
    pytest.param(whisper_body("ftp://127.0.0.1/jfk.flac"), id="ftp-audio-url"),
    pytest.param(whisper_body("jfk.flac"), id="relative-audio-url"),
    pytest.param({"version": WHISPER_VERSION, "input": {"audio": 7}}, id="audio-not-a-string"),
])
def test_an_input_that_does_not_match_the_schema_is_refused_with_422(api, replicate, body):
    before = dict(replicate.created)
    response = api.post("/predictions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("input")
    assert replicate.created == before


def test_a_body_that_is_not_json_is_refused_with_400(api):
    response = api.post("/predictions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_a_json_body_that_is_not_an_object_is_refused_with_400(replicate):
    response = httpx.post(f"{replicate.url}/predictions", content=b'["version", "input"]', headers=AUTH, timeout=10)
    assert response.status_code == 400


@pytest.mark.parametrize("method, path", [("GET", "/nothing"), ("POST", "/nothing"), ("GET", "/predictions"),
                                          ("POST", "/predictions/abc/restart"), ("GET", "/models/openai/whisper")])
def test_an_unknown_path_answers_404(api, method, path):
    response = api.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 404


def test_getting_or_cancelling_an_unknown_prediction_answers_404(api):
    assert api.get("/predictions/nosuchprediction").status_code == 404
    assert api.post("/predictions/nosuchprediction/cancel").status_code == 404


# -- the prediction object ---------------------------------------------------------------

def test_a_prediction_has_every_field_replicate_documents(api, replicate):
    inputs = {"text": "shape of a prediction"}
    response = api.post("/predictions", json=embed_body(inputs), headers={"Prefer": "wait"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    prediction = response.json()
    documented = {"id", "model", "version", "input", "logs", "output", "error", "status", "created_at",
                  "started_at", "completed_at", "urls"}
    assert documented <= prediction.keys()
    assert re.fullmatch(r"[a-z0-9]{26}", prediction["id"])
    assert prediction["model"] == EMBEDDING_MODEL
    assert prediction["version"] == EMBEDDING_VERSION
    assert prediction["input"] == inputs
    assert isinstance(prediction["logs"], str)
    assert prediction["error"] is None
    assert prediction["status"] == "succeeded"
    assert parse_time(prediction["created_at"]) <= parse_time(prediction["started_at"]) \
        <= parse_time(prediction["completed_at"])
    urls = prediction["urls"]
    assert urls["get"] == f"{replicate.url}/predictions/{prediction['id']}"
    assert urls["cancel"] == f"{replicate.url}/predictions/{prediction['id']}/cancel"
    fetched = httpx.get(urls["get"], headers=AUTH, timeout=10)
    assert fetched.status_code == 200
    assert fetched.json() == prediction


# -- embeddings --------------------------------------------------------------------------

def test_prefer_wait_answers_a_finished_text_batch_with_embeddings_in_input_order(api, reference_embedder):
    response = api.post("/predictions", json=embed_body({"text_batch": json.dumps(TEXTS)}),
                        headers={"Prefer": "wait"})
    assert response.status_code == 201
    prediction = response.json()
    assert prediction["status"] == "succeeded"
    output = prediction["output"]
    assert isinstance(output, list) and len(output) == len(TEXTS)
    assert all(set(item) == {"embedding"} for item in output)
    vectors = [item["embedding"] for item in output]
    assert all(len(v) == 384 and all(isinstance(x, float) for x in v) for v in vectors)
    assert all(abs(norm(v) - 1) < 1e-4 for v in vectors)
    expected = reference_embedder.embed(TEXTS)
    for i, vector in enumerate(vectors):
        assert cosine(vector, expected[i]) > 0.9999
        # The texts differ enough that a shuffled output would be caught.
        assert all(cosine(vector, expected[j]) < 0.9 for j in range(len(TEXTS)) if j != i)


def test_a_single_text_input_returns_one_embedding(api, reference_embedder):
    prediction = api.post("/predictions", json=embed_body({"text": TEXTS[1]}), headers={"Prefer": "wait=30"}).json()
    assert prediction["status"] == "succeeded"
    (vector,) = vectors_from_output(prediction["output"])
    assert len(vector) == 384
    assert abs(norm(vector) - 1) < 1e-4
    assert cosine(vector, reference_embedder.embed([TEXTS[1]])[0]) > 0.9999


def test_without_prefer_the_answer_is_starting_and_polling_reaches_succeeded(api, reference_embedder):
    response = api.post("/predictions", json=embed_body({"text_batch": json.dumps(TEXTS[:2])}))
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "starting"
    assert created["output"] is None and created["started_at"] is None and created["completed_at"] is None
    finished = poll(api, created["id"], deadline_s=60)
    assert finished["status"] == "succeeded"
    assert finished["created_at"] == created["created_at"]
    vectors = vectors_from_output(finished["output"])
    expected = reference_embedder.embed(TEXTS[:2])
    assert [round(cosine(v, e), 4) for v, e in zip(vectors, expected)] == [1.0, 1.0]


def test_the_production_embedder_embeds_through_the_local_server(replicate, reference_embedder):
    embedder = ReplicateEmbedder(ReplicateClient(replicate.url, lambda: TOKEN), EMBEDDING_VERSION,
                                 model="all-MiniLM-L6-v2")
    vectors = embedder.embed(TEXTS)
    expected = reference_embedder.embed(TEXTS)
    assert len(vectors) == len(TEXTS) == len(expected)
    assert all(len(v) == embedder.dimensions == 384 for v in vectors)
    assert all(cosine(v, e) > 0.9999 for v, e in zip(vectors, expected))


class PickedUpBeforeAnswering(LocalReplicate):
    """Holds create() between enqueueing a prediction and answering until a worker has picked it up.

    This is an interleaving the scheduler produces on its own a good part of the time (often
    when the start event is subscribed, as starting its delivery thread yields); holding it
    open makes the outcome certain.
    """

    def _notify(self, prediction_id: str, event: str) -> None:
        if event == "start":
            deadline = time.monotonic() + 30
            while self.snapshot(prediction_id)["status"] == "starting" and time.monotonic() < deadline:
                time.sleep(0.01)
        super()._notify(prediction_id, event)


def test_the_creation_answer_is_starting_however_quickly_a_worker_picks_it_up(receiver):
    _, url = receiver.route()
    server = PickedUpBeforeAnswering(token=TOKEN, webhook_secret=SECRET, whisper_version=WHISPER_VERSION,
                                     embedding_version=EMBEDDING_VERSION).start()
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            created = client.post("/predictions", json=embed_body({"text": "quick"}, webhook=url)).json()
            finished = poll(client, created["id"], deadline_s=60)
    finally:
        server.stop()
    assert finished["status"] == "succeeded"
    assert (created["status"], created["started_at"]) == ("starting", None)


# -- whisper -----------------------------------------------------------------------------

def transcribe(api: httpx.Client, audio_url: str) -> dict:
    response = api.post("/predictions", json=whisper_body(audio_url), headers={"Prefer": "wait"})
    assert response.status_code == 201
    prediction = response.json()
    return prediction if prediction["status"] in TERMINAL else poll(api, prediction["id"])


def test_whisper_transcribes_a_flac_recording_into_replicates_output_shape(api, fixture_server):
    prediction = transcribe(api, f"{fixture_server}/jfk.flac")
    assert prediction["status"] == "succeeded", prediction["error"]
    assert prediction["model"] == WHISPER_MODEL
    output = prediction["output"]
    assert output["detected_language"] == "english"
    assert JFK_LINE in words(output["transcription"])
    assert output["segments"], "no segments"
    for item in output["segments"]:
        assert isinstance(item["text"], str)
        assert 0 <= item["start"] <= item["end"]
    segments = segments_from_output(output)
    assert len(segments) == len(output["segments"])
    assert [s.start_s for s in segments] == sorted(s.start_s for s in segments)
    assert segments[-1].end_s <= 11.1
    assert JFK_LINE in words(" ".join(s.text for s in segments))


def test_whisper_transcribes_the_english_speech_of_a_video(api, fixture_server):
    prediction = transcribe(api, f"{fixture_server}/autocut_test001.mp4")
    assert prediction["status"] == "succeeded", prediction["error"]
    assert "video for testing" in words(prediction["output"]["transcription"])
    assert segments_from_output(prediction["output"])


def test_a_recording_longer_than_a_window_keeps_increasing_segment_times_offset_by_each_window(
        api, replicate, monkeypatch, tmp_path):
    monkeypatch.setattr(replicate, "whisper_window_s", 50.0)
    (marker,) = build_recording(tmp_path / "long.wav", 2.5, markers=TEST_MARKERS, filler=TEST_FILLER, at=[100.0])
    base, server = serve(tmp_path)
    try:
        prediction = transcribe(api, f"{base}/long.wav")
    finally:
        server.shutdown()
        server.server_close()
    assert prediction["status"] == "succeeded", prediction["error"]
    segments = segments_from_output(prediction["output"])
    starts = [s.start_s for s in segments]
    assert starts == sorted(starts), "segment times go back at a window boundary"
    assert all(a.end_s <= b.start_s + 0.5 for a, b in zip(segments, segments[1:]))
    assert 140 <= segments[-1].end_s <= 150.0, "the last window was not transcribed, or not offset"
    assert [item["id"] for item in prediction["output"]["segments"]] == list(range(len(segments)))
    # Whisper may split the phrase over two segments: it is found where its first words start.
    (found,) = [a for a, b in zip(segments, segments[1:] + segments[-1:])
                if words(a.text).startswith("ask") and "ask not what your country" in words(f"{a.text} {b.text}")]
    assert 100 <= marker.offset_s < 112
    assert abs(found.start_s - marker.offset_s) < 2.0, (found, marker)


def test_an_audio_url_that_answers_404_fails_the_prediction_with_an_error(api, fixture_server):
    prediction = transcribe(api, f"{fixture_server}/no-such-recording.flac")
    assert prediction["status"] == "failed"
    assert isinstance(prediction["error"], str) and "404" in prediction["error"]
    assert prediction["output"] is None
    assert prediction["completed_at"] is not None


def test_the_production_transcriber_is_called_back_with_segments(replicate, receiver, fixture_server):
    name, url = receiver.route()
    transcriber = ReplicateTranscriber(ReplicateClient(replicate.url, lambda: TOKEN), WHISPER_VERSION)
    pending = transcriber.submit(f"{fixture_server}/jfk.flac", url)
    (delivery,) = receiver.wait_for(name, 1, timeout_s=120)
    assert ReplicateVerifier(SECRET).verify(delivery.body, delivery.headers) == delivery.headers["webhook-id"]
    prediction = delivery.prediction
    assert prediction["id"] == pending.prediction_id
    assert prediction["status"] == "succeeded"
    assert prediction["input"]["audio"] == f"{fixture_server}/jfk.flac"
    segments = transcriber.segments_from_output(prediction["output"])
    assert JFK_LINE in words(" ".join(s.text for s in segments))
    receiver.quiet(name, 1, window_s=1.0)


# -- webhooks ----------------------------------------------------------------------------

def test_a_completed_filter_delivers_exactly_one_signed_webhook_with_the_finished_prediction(api, receiver):
    name, url = receiver.route()
    body = embed_body({"text": "call me back"}, webhook=url, webhook_events_filter=["completed"])
    created = api.post("/predictions", json=body).json()
    (delivery,) = receiver.wait_for(name, 1, timeout_s=60)
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["webhook-id"]
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert ReplicateVerifier(SECRET).verify(delivery.body, delivery.headers) == delivery.headers["webhook-id"]
    assert Webhook(SECRET).verify(delivery.body, delivery.headers) == delivery.prediction
    with pytest.raises(Unauthorized):
        ReplicateVerifier(SECRET).verify(delivery.body.replace(b"succeeded", b"failed"), delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()).verify(delivery.body, delivery.headers)
    prediction = delivery.prediction
    assert prediction["id"] == created["id"]
    assert prediction["status"] == "succeeded"
    assert len(vectors_from_output(prediction["output"])) == 1
    assert prediction == api.get(f"/predictions/{created['id']}").json()
    receiver.quiet(name, 1, window_s=1.0)


def test_without_a_filter_a_start_event_is_delivered_as_well(api, receiver):
    name, url = receiver.route()
    created = api.post("/predictions", json=embed_body({"text": "every event"}, webhook=url)).json()
    deliveries = receiver.wait_for(name, 2, timeout_s=60)
    deliveries = receiver.quiet(name, 2, window_s=1.0)
    for delivery in deliveries:
        ReplicateVerifier(SECRET).verify(delivery.body, delivery.headers)
    assert len({d.headers["webhook-id"] for d in deliveries}) == 2
    assert {d.prediction["id"] for d in deliveries} == {created["id"]}
    statuses = sorted(d.prediction["status"] for d in deliveries)
    assert statuses[1] == "succeeded"
    assert statuses[0] in ("processing", "starting")


def test_a_receiver_that_fails_twice_gets_the_same_webhook_id_on_every_retry(api, receiver):
    name, url = receiver.route(500, 500)
    api.post("/predictions", json=embed_body({"text": "retry me"}, webhook=url, webhook_events_filter=["completed"]))
    deliveries = receiver.wait_for(name, 3, timeout_s=30)
    deliveries = receiver.quiet(name, 3, window_s=2.5)
    assert [d.answered for d in deliveries] == [500, 500, 200]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1
    # Each attempt is signed afresh, and every one of them verifies.
    assert all(ReplicateVerifier(SECRET).verify(d.body, d.headers) for d in deliveries)
    gaps = [later.at - earlier.at for earlier, later in zip(deliveries, deliveries[1:])]
    assert gaps[0] >= 0.4 and gaps[1] >= gaps[0], f"no backoff between attempts: {gaps}"


def test_a_receiver_that_answers_404_gets_exactly_one_attempt(api, receiver):
    name, url = receiver.route(404)
    api.post("/predictions", json=embed_body({"text": "gone"}, webhook=url, webhook_events_filter=["completed"]))
    receiver.wait_for(name, 1, timeout_s=30)
    (delivery,) = receiver.quiet(name, 1, window_s=2.0)
    assert delivery.answered == 404


# -- cancel ------------------------------------------------------------------------------

def test_cancelling_a_queued_transcription_ends_it_canceled_and_calls_back(api, receiver, fixture_server):
    name, url = receiver.route()
    ahead = [api.post("/predictions", json=whisper_body(f"{fixture_server}/jfk.flac")).json()["id"]
             for _ in range(3)]
    last = api.post("/predictions", json=whisper_body(f"{fixture_server}/jfk.flac", webhook=url,
                                                       webhook_events_filter=["completed"])).json()
    response = api.post(f"/predictions/{last['id']}/cancel")
    assert response.status_code == 200
    answered = response.json()
    assert answered["id"] == last["id"]
    # Everything queued ahead of it runs to completion; by then the worker has passed it.
    assert [poll(api, pid)["status"] for pid in ahead] == ["succeeded"] * 3
    final = poll(api, last["id"])
    (delivery,) = receiver.wait_for(name, 1, timeout_s=120)
    ReplicateVerifier(SECRET).verify(delivery.body, delivery.headers)
    if answered["status"] == "canceled":
        assert final["status"] == "canceled"
        assert final["output"] is None and final["error"] is None
        assert final["completed_at"] == answered["completed_at"]
    else:  # it had already finished: cancelling must not have touched it
        assert answered["status"] == "succeeded"
        assert final["status"] == "succeeded" and final["output"]
    assert delivery.prediction["status"] == final["status"]
    assert delivery.prediction == final
    receiver.quiet(name, 1, window_s=1.0)


def test_cancelling_a_finished_prediction_leaves_it_succeeded_and_sends_nothing(api, receiver):
    name, url = receiver.route()
    created = api.post("/predictions", json=embed_body({"text": "too late"}, webhook=url,
                                                      webhook_events_filter=["completed"]),
                       headers={"Prefer": "wait"}).json()
    assert created["status"] == "succeeded"
    receiver.wait_for(name, 1, timeout_s=30)
    response = api.post(f"/predictions/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json() == created
    assert api.get(f"/predictions/{created['id']}").json()["status"] == "succeeded"
    receiver.quiet(name, 1, window_s=1.0)


# -- counters ----------------------------------------------------------------------------

def test_created_counts_accepted_predictions_per_model(api, replicate, fixture_server):
    before = dict(replicate.created)
    api.post("/predictions", json=embed_body({"text": "one"}), headers={"Prefer": "wait"})
    api.post("/models/replicate/all-mpnet-base-v2/predictions", json={"input": {"text": "two"}},
             headers={"Prefer": "wait"})
    assert api.post("/predictions", json=embed_body({"text_batch": "nope"})).status_code == 422
    assert api.post("/predictions", json={"version": "0" * 64, "input": {"text": "x"}}).status_code == 422
    failing = api.post("/predictions", json=whisper_body(f"{fixture_server}/no-such-recording.flac")).json()
    after = dict(replicate.created)
    assert set(after) == {WHISPER_MODEL, EMBEDDING_MODEL, VISION_MODEL}
    assert {model: after[model] - before[model] for model in after} == {WHISPER_MODEL: 1, EMBEDDING_MODEL: 2,
                                                                        VISION_MODEL: 0}
    assert poll(api, failing["id"])["status"] == "failed"


def test_the_vision_model_reads_an_image_in_the_format_its_prompt_asks_for(api, fixture_server):
    from allthethings.adapters.images import VISION_PROMPT, reading_from_output

    body = {"version": VISION_VERSION, "input": {"media": f"{fixture_server}/images/xmp-bluesquare-described.jpg",
                                                 "prompt": VISION_PROMPT, "max_new_tokens": 512}}
    done = poll(api, api.post("/predictions", json=body).json()["id"])
    assert done["status"] == "succeeded" and isinstance(done["output"], str)
    reading = reading_from_output(done["output"])
    assert "BlueSquare" in reading.description and "EXIF ImageDescription" in reading.description_source
    text = {"version": VISION_VERSION, "input": {"media": f"{fixture_server}/images/tesseract-eurotext.png",
                                                 "prompt": VISION_PROMPT}}
    reading = reading_from_output(poll(api, api.post("/predictions", json=text).json()["id"])["output"])
    assert "aspammer@website.com" in reading.text and reading.description is None


@pytest.mark.parametrize("inputs, named", [({"prompt": "x"}, "media"), ({"media": "file:///etc/passwd"}, "media"),
                                           ({"media": "http://x.test/a.png", "max_new_tokens": 4096},
                                            "max_new_tokens")])
def test_the_vision_model_refuses_input_outside_its_schema(api, inputs, named):
    response = api.post("/predictions", json={"version": VISION_VERSION, "input": inputs})
    assert response.status_code == 422 and named in response.json()["detail"]


def test_an_image_the_vision_model_cannot_read_fails_the_prediction_with_the_reason(api, fixture_server):
    body = {"version": VISION_VERSION, "input": {"media": f"{fixture_server}/binary/legacy-word.doc"}}
    done = poll(api, api.post("/predictions", json=body).json()["id"])
    assert done["status"] == "failed" and "image" in done["error"]
