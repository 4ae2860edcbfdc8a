"""ReplicateClient and ReplicateEmbedder against a local server that speaks Replicate's predictions API.

The fake follows the documented shapes: POST /v1/predictions takes {"version", "input",
"webhook"?, "webhook_events_filter"?} and answers 201 with a prediction object; GET
/v1/predictions/{id} answers the prediction; `Prefer: wait=N` (sync mode) answers with the
finished prediction when the model is done within the wait, else with it still running.
Clocks and sleeps are injected: no test waits for real.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from allthethings.adapters.replicate import ReplicateClient, ReplicateEmbedder
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.ports import Pending

TOKEN = "r8_test_token"
VERSION = "b6b7585c9640cd7a9572c6e129c9549d79c9c31f0d3fdce7baac7c67ca38f305"


def embedding_of(text: str, index: int) -> list[float]:
    """What the fake model answers for a text: recognisable, so tests can check the order."""
    return [float(len(text)), float(index), 0.5]


class FakeReplicate(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReplicateHandler)
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: list[dict] = []
            self.predictions: dict[str, dict] = {}
            # How the next predictions behave:
            self.polls_needed: int | None = 0  # GETs before the model is done; None: never done
            self.final_status = "succeeded"
            self.final_error: str | None = None
            self.output_override: object = ...  # ...: the embeddings; anything else: that output
            # Answers given before any normal one: (status, headers), consumed in order.
            self.post_failures: list[tuple[int, dict]] = []
            self.get_failures: list[tuple[int, dict]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def requests_of(self, method: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method]


class _ReplicateHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeReplicate

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict | None, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self.server.lock:
            self.server.requests.append({"method": self.command, "path": self.path,
                                         "headers": {k.lower(): v for k, v in self.headers.items()}, "json": body})
        return body

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token",
                               "status": 401})
            return False
        return True

    def _finish(self, prediction: dict) -> None:
        srv = self.server
        prediction["status"] = srv.final_status
        prediction["completed_at"] = datetime.now(UTC).isoformat()
        if srv.final_status == "succeeded":
            texts = json.loads(prediction["input"]["text_batch"])
            prediction["output"] = ([{"embedding": embedding_of(t, i)} for i, t in enumerate(texts)]
                                    if srv.output_override is ... else srv.output_override)
        else:
            prediction["error"] = srv.final_error

    def do_POST(self):  # noqa: N802
        body = self._record()
        if not self._authorised():
            return
        srv = self.server
        with srv.lock:
            if srv.post_failures:
                status, headers = srv.post_failures.pop(0)
                self._answer(status, {"title": "Try again", "detail": f"fake {status}", "status": status}, headers)
                return
        if self.path != "/v1/predictions":
            self._answer(404, {"detail": "Not found.", "status": 404})
            return
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict) or body.get("version") != VERSION:
            self._answer(422, {"title": "Invalid version or not permitted", "status": 422,
                               "detail": "The specified version does not exist (or perhaps you don't have "
                                         "permission to use it?)"})
            return
        with srv.lock:
            pid = f"pred{next(srv.ids):04d}"
            prediction = {
                "id": pid, "model": "replicate/all-mpnet-base-v2", "version": body["version"],
                "input": body["input"], "logs": "", "output": None, "data_removed": False, "error": None,
                "status": "starting", "created_at": datetime.now(UTC).isoformat(),
                "urls": {"get": f"{srv.base_url}/predictions/{pid}",
                         "cancel": f"{srv.base_url}/predictions/{pid}/cancel"},
                "_polls": 0,
            }
            if "webhook" in body:
                prediction["webhook"] = body["webhook"]
            srv.predictions[pid] = prediction
            # Sync mode: a model that needs no polling is done within the wait.
            if self.headers.get("Prefer", "").startswith("wait") and srv.polls_needed == 0:
                self._finish(prediction)
            answer = {k: v for k, v in prediction.items() if not k.startswith("_")}
        self._answer(201, answer)

    def do_GET(self):  # noqa: N802
        self._record()
        if not self._authorised():
            return
        srv = self.server
        with srv.lock:
            if srv.get_failures:
                status, headers = srv.get_failures.pop(0)
                self._answer(status, {"detail": f"fake {status}", "status": status}, headers)
                return
            pid = self.path.rsplit("/", 1)[-1]
            prediction = srv.predictions.get(pid) if self.path.startswith("/v1/predictions/") else None
            if prediction is None:
                self._answer(404, {"detail": "Not found.", "status": 404})
                return
            if prediction["status"] not in ("succeeded", "failed", "canceled"):
                prediction["_polls"] += 1
                if srv.polls_needed is not None and prediction["_polls"] >= srv.polls_needed:
                    self._finish(prediction)
                else:
                    prediction["status"] = "processing"
            answer = {k: v for k, v in prediction.items() if not k.startswith("_")}
        self._answer(200, answer)


@pytest.fixture(scope="module")
def fake():
    server = FakeReplicate()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def replicate(fake):
    fake.reset()
    return fake


class Recorder:
    """A sleep that records its delays and, if given a clock, advances it instead of waiting."""

    def __init__(self, clock: FakeClock | None = None):
        self.delays: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(fake: FakeReplicate, **kwargs) -> tuple[ReplicateClient, Recorder]:
    sleep = kwargs.pop("sleep", None) or Recorder()
    return ReplicateClient(fake.base_url, lambda: TOKEN, timeout_s=5, sleep=sleep, **kwargs), sleep


def make_embedder(fake: FakeReplicate, *, deadline_s: float = 25.0, poll_s: float = 0.5, attempts: int = 4):
    clock = FakeClock()
    client, client_sleep = make_client(fake, attempts=attempts)
    poll_sleep = Recorder(clock)
    embedder = ReplicateEmbedder(client, VERSION, deadline_s=deadline_s, poll_s=poll_s, clock=clock, sleep=poll_sleep)
    return embedder, client_sleep, poll_sleep, clock


def test_every_request_carries_the_bearer_token(replicate):
    embedder, *_ = make_embedder(replicate)
    replicate.polls_needed = 1  # a POST and a GET
    embedder.embed(["hello"])
    assert [r["method"] for r in replicate.requests] == ["POST", "GET"]
    assert {r["headers"]["authorization"] for r in replicate.requests} == {f"Bearer {TOKEN}"}


def test_embed_sends_the_texts_as_a_json_text_batch_and_returns_the_vectors_in_order(replicate):
    embedder, _, poll_sleep, _ = make_embedder(replicate)
    texts = ["first text", "the second, longer text", "ünïcödé ✓"]
    vectors = embedder.embed(texts)
    (post,) = replicate.requests_of("POST")
    assert post["path"] == "/v1/predictions"
    assert post["json"]["version"] == VERSION
    assert set(post["json"]["input"]) == {"text_batch"}
    assert json.loads(post["json"]["input"]["text_batch"]) == texts
    assert "webhook" not in post["json"]
    assert post["headers"]["prefer"] == "wait=20"  # sync mode, inside the 25 s deadline
    assert vectors == [embedding_of(t, i) for i, t in enumerate(texts)]
    assert replicate.requests_of("GET") == [] and poll_sleep.delays == []


def test_a_prediction_still_starting_is_polled_until_it_succeeds(replicate):
    embedder, _, poll_sleep, _ = make_embedder(replicate, poll_s=0.5)
    replicate.polls_needed = 3
    vectors = embedder.embed(["a", "bb"])
    assert vectors == [embedding_of("a", 0), embedding_of("bb", 1)]
    gets = replicate.requests_of("GET")
    assert len(gets) == 3
    (pid,) = replicate.predictions
    assert {g["path"] for g in gets} == {f"/v1/predictions/{pid}"}
    assert poll_sleep.delays == [0.5, 0.5, 0.5]


def test_a_failed_prediction_raises_upstream_unavailable_with_its_error(replicate):
    embedder, *_ = make_embedder(replicate)
    replicate.polls_needed = 2
    replicate.final_status = "failed"
    replicate.final_error = "CUDA out of memory"
    with pytest.raises(UpstreamUnavailable, match="CUDA out of memory"):
        embedder.embed(["x"])


def test_a_canceled_prediction_raises_upstream_unavailable(replicate):
    embedder, *_ = make_embedder(replicate)
    replicate.final_status = "canceled"
    with pytest.raises(UpstreamUnavailable, match="canceled"):
        embedder.embed(["x"])


@pytest.mark.parametrize(("retry_after", "expected_delays"), [("0", [0.0, 0.0]), ("3", [3.0, 3.0])])
def test_a_429_is_retried_after_the_delay_the_server_asks_for(retry_after, expected_delays, replicate):
    embedder, client_sleep, *_ = make_embedder(replicate)
    replicate.post_failures = [(429, {"Retry-After": retry_after})] * 2
    vectors = embedder.embed(["rate limited"])
    assert vectors == [embedding_of("rate limited", 0)]
    assert len(replicate.requests_of("POST")) == 3
    # The exponential backoff alone would have slept 0.5 then 1.0.
    assert client_sleep.delays == expected_delays


def test_a_persistent_500_becomes_upstream_unavailable_after_every_attempt(replicate):
    client, sleep = make_client(replicate, attempts=3, backoff_s=0.5)
    replicate.post_failures = [(500, {})] * 10
    with pytest.raises(UpstreamUnavailable, match="after 3 tries.*HTTP 500"):
        client.create_prediction(VERSION, {"text_batch": "[]"})
    assert len(replicate.requests_of("POST")) == 3
    assert sleep.delays == [0.5, 1.0]  # no sleep after the last attempt


def test_a_transient_503_while_polling_is_retried(replicate):
    embedder, client_sleep, *_ = make_embedder(replicate)
    replicate.polls_needed = 1
    replicate.get_failures = [(503, {"Retry-After": "1"})]
    assert embedder.embed(["poll me"]) == [embedding_of("poll me", 0)]
    assert len(replicate.requests_of("GET")) == 2
    assert client_sleep.delays == [1.0]


def test_a_422_is_not_retried(replicate):
    client, sleep = make_client(replicate, attempts=4)
    with pytest.raises(UpstreamUnavailable, match="422"):
        client.create_prediction("no-such-version", {"text_batch": "[]"})
    assert len(replicate.requests) == 1
    assert sleep.delays == []


def test_a_wrong_token_is_refused_without_retrying(replicate):
    client = ReplicateClient(replicate.base_url, lambda: "r8_wrong", timeout_s=5, sleep=Recorder())
    with pytest.raises(UpstreamUnavailable, match="401"):
        client.create_prediction(VERSION, {"text_batch": "[]"})
    assert len(replicate.requests) == 1


def test_an_unreachable_api_becomes_upstream_unavailable_after_every_attempt():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = Recorder()
    client = ReplicateClient(f"http://127.0.0.1:{port}/v1", lambda: TOKEN, timeout_s=2, attempts=2,
                             backoff_s=0.25, sleep=sleep)
    with pytest.raises(UpstreamUnavailable, match="ConnectError"):
        client.get_prediction("pred0001")
    assert sleep.delays == [0.25]


def test_submit_sends_the_webhook_for_completed_events_and_returns_pending(replicate):
    embedder, _, poll_sleep, _ = make_embedder(replicate)
    webhook = "https://api.example.org/webhooks/replicate?asset=abc"
    pending = embedder.submit(["chunk one", "chunk two"], webhook)
    (post,) = replicate.requests
    assert post["method"] == "POST" and post["path"] == "/v1/predictions"
    assert post["json"]["webhook"] == webhook
    assert post["json"]["webhook_events_filter"] == ["completed"]
    assert json.loads(post["json"]["input"]["text_batch"]) == ["chunk one", "chunk two"]
    assert "prefer" not in post["headers"]  # async mode: answer at once
    assert isinstance(pending, Pending)
    assert pending.prediction_id in replicate.predictions
    assert replicate.predictions[pending.prediction_id]["status"] == "starting"
    assert poll_sleep.delays == []


def test_a_prediction_that_stays_processing_fails_once_the_deadline_passes(replicate):
    embedder, _, poll_sleep, clock = make_embedder(replicate, deadline_s=5.0, poll_s=1.0)
    replicate.polls_needed = None
    started = clock.now
    with pytest.raises(UpstreamUnavailable, match="did not finish in time"):
        embedder.embed(["slow"])
    assert 5.0 < clock.now - started <= 5.0 + 1.0
    assert len(replicate.requests_of("GET")) == len(poll_sleep.delays) == 6
    assert replicate.requests_of("POST")[0]["headers"]["prefer"] == "wait=4"


def test_a_succeeded_prediction_without_embeddings_raises_upstream_unavailable(replicate):
    embedder, *_ = make_embedder(replicate)
    replicate.output_override = None
    with pytest.raises(UpstreamUnavailable):
        embedder.embed(["x"])


def test_retries_of_a_search_embedding_stop_at_the_deadline(replicate):
    """A Replicate that keeps answering 503 cannot hold a search past API Gateway's 29 s."""
    import time as real_time

    from allthethings.adapters.replicate import ReplicateClient, ReplicateEmbedder

    replicate.post_failures = [(503, {})] * 50
    client = ReplicateClient(replicate.base_url, lambda: TOKEN, attempts=50, backoff_s=0.2)
    embedder = ReplicateEmbedder(client, "v" * 64, model="all-MiniLM-L6-v2", deadline_s=1.5)
    started = real_time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        embedder.embed(["query"])
    assert real_time.monotonic() - started < 2.5
