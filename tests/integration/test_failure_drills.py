"""Failure drills on the whole local system, in-process so that faults can be injected: the real
handlers behind the local gateway, the queues (with the template's redrive policies) and the
bucket, SQLite, and the production Replicate path (predictions created over HTTP, results by
signed webhook) against the local Replicate behind a chaos proxy. The drill runs twice: on the
embedded queues and bucket (the default) and on the AWS emulator (LOCAL_AWS=moto).

Each asset meets one fault: S3 failing reads, the store failing in the middle of processing,
Replicate answering 429, 500 and timing out, Replicate refusing one asset's predictions for
good, S3 refusing one asset's body for good, the store failing while a webhook is applied, a
lost webhook, S3 down while a URL is submitted, and a poison message. Transient faults are
retried; persistent ones park the message in the dead-letter queue; the faults are mended, the
queue is redriven, the sweeper finds the asset whose webhook was lost, and at the end every asset
is SEARCHABLE and findable, and only the poison message is left in a dead-letter queue.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import threading
import time
from datetime import timedelta

import httpx
import pytest

from allthethings import bootstrap
from allthethings.adapters import aws
from allthethings.adapters.aws import client, redrive
from allthethings.domain.assets import Status, now
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.services.sweeper import sweep
from devstack import gateway
from devstack.embedded import EmbeddedSqs
from devstack.stack import LocalStack, free_port

KEY = "drill_" + "d" * 24
TOPICS = ["lighthouse keepers trimming wicks", "sourdough starters fed with rye", "glaciers carving fjords",
          "beekeepers smoking hives", "tram lines of old Lisbon", "origami cranes folded from foil",
          "falconers training merlins", "violin varnish recipes", "salt marsh samphire"]
# Which fault meets which document (by index into TOPICS).
S3_READ_BLIPS, STORE_BLIP, REPLICATE_BLIPS, REPLICATE_REFUSES, S3_LOST, WEBHOOK_STORE_BLIP, WEBHOOK_LOST, \
    S3_DOWN_AT_SUBMIT = 1, 2, 3, 4, 5, 6, 7, 8


def document(i: int) -> str:
    topic = TOPICS[i]
    return (f"A field guide to {topic}. Marker word drill{i}x. " + f"This page is about {topic} and little else. " * 6)


class ChaosProxy:
    """An HTTP proxy in front of `target` that answers some requests itself: `decide(method, path,
    body)` returns None (forward), an HTTP status to answer with, "timeout" (answer only after the
    client has given up), or "drop" (swallow the request and answer 200, as a lost webhook)."""

    def __init__(self, target: str, decide, hang_s: float):
        self.target, self.decide, self.hang_s = target.rstrip("/"), decide, hang_s
        self.seen: list[tuple[str, str, object]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes, headers: dict) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout drill)

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                verdict = proxy.decide(self.command, self.path, body)
                proxy.seen.append((self.command, self.path, verdict))
                if verdict == "timeout":
                    time.sleep(proxy.hang_s)
                    return self._answer(504, b"{}", {"Content-Type": "application/json"})
                if verdict == "drop":
                    return self._answer(200, b"{}", {"Content-Type": "application/json"})
                if isinstance(verdict, int):
                    return self._answer(verdict, json.dumps({"detail": f"drill: HTTP {verdict}"}).encode(),
                                        {"Content-Type": "application/json", "Retry-After": "0"})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = httpx.request(self.command, proxy.target + self.path, content=body, headers=headers,
                                         timeout=60)
                self._answer(upstream.status_code, upstream.content, dict(upstream.headers))

            do_GET = do_POST = _handle  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Faults:
    """The switches of the drill, shared by the proxies and the faulty adapters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.mended = False
        self.s3_down_for_puts = False

    def once(self, name: str, times: int) -> bool:
        """True for the first `times` calls named `name`."""
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            return self.counts[name] <= times


class FaultyStore:
    """The real store, but failing as Atlas does in an outage for the drill's chosen assets."""

    def __init__(self, real, faults: Faults, marked: dict[int, str]):
        self.real, self.faults, self.marked = real, faults, marked

    def __getattr__(self, name):
        return getattr(self.real, name)

    def _which(self, asset_id: str) -> int | None:
        asset = self.real.get(asset_id)
        return next((i for i, url in self.marked.items() if asset and asset.url == url), None)

    def put_chunks(self, asset_id, chunks):
        if self._which(asset_id) == STORE_BLIP and self.faults.once("put_chunks", 2):
            raise UpstreamUnavailable("the database is unavailable (drill)")
        return self.real.put_chunks(asset_id, chunks)

    def make_searchable(self, asset_id, vectors):
        if self._which(asset_id) == WEBHOOK_STORE_BLIP and self.faults.once("make_searchable", 2):
            raise UpstreamUnavailable("the database is unavailable (drill)")
        return self.real.make_searchable(asset_id, vectors)


class FaultyBlobs:
    """The real S3 adapter, failing reads of chosen bodies and every write while S3 is 'down'."""

    def __init__(self, real, faults: Faults, keys: dict[int, str]):
        self.real, self.faults, self.keys = real, faults, keys

    def __getattr__(self, name):
        return getattr(self.real, name)

    def put(self, key, body, content_type):
        if self.faults.s3_down_for_puts:
            raise UpstreamUnavailable("the staging bucket could not be written (drill: S3 returned 503)")
        return self.real.put(key, body, content_type)

    def get(self, key):
        if key == self.keys.get(S3_READ_BLIPS) and self.faults.once("s3_blip", 2):
            raise UpstreamUnavailable("S3 is unavailable (drill: SlowDown)")
        if key == self.keys.get(S3_LOST) and not self.faults.mended:
            raise UpstreamUnavailable("S3 is unavailable (drill: persistent InternalError)")
        return self.real.get(key)


class Queues:
    """The few queue calls the drill makes itself, on whichever queues the stack runs: SQS's client
    API on the emulator, or the embedded queues through the pumps' shim. A redrive is the one
    `python -m devstack redrive` makes in the same mode."""

    def __init__(self, stack: LocalStack):
        if stack.embedded:
            self.sqs = EmbeddedSqs(os.path.join(os.environ["EMBEDDED_AWS_DIR"], "queues.db"))
            self.redrive = self.sqs.queues.redrive
        else:
            self.sqs = client("sqs")
            self.redrive = redrive

    def send(self, url: str, body: str) -> None:
        self.sqs.send_message(QueueUrl=url, MessageBody=body)

    def depth(self, url: str) -> int:
        """Messages waiting plus messages in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return sum(int(attributes["Attributes"][name])
                   for name in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))

    def receive(self, url: str) -> list[dict]:
        return self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])


@pytest.fixture(params=["moto", "embedded"])
def drill(request, tmp_path):
    """The whole local system in this process, on the production embedding path, and restored after."""
    from devstack.replicate import LocalReplicate

    saved_env = dict(os.environ)
    aws._clients.clear()
    bootstrap._deps = None
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(len(TOPICS)):
        (docs / f"doc{i}.txt").write_text(document(i))
    import functools

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}), directory=str(docs)))
    threading.Thread(target=files.serve_forever, daemon=True).start()

    faults = Faults()
    replicate = LocalReplicate(token="r8_drill_" + "t" * 20,
                               webhook_secret="whsec_" + "ZHJpbGwtc2VjcmV0LWZvci10ZXN0cw==",
                               whisper_version="w" * 64, embedding_version="e" * 64).start()

    def replicate_rule(method, path, body):
        if method != "POST" or not path.endswith("/predictions"):
            return None
        text = body.decode("utf-8", "replace")
        if f"drill{REPLICATE_REFUSES}x" in text and not faults.mended:
            return 503
        if f"drill{REPLICATE_BLIPS}x" in text:
            step = faults.counts.get("replicate_blips", 0)
            faults.once("replicate_blips", 3)
            return (429, 500, "timeout", None)[min(step, 3)]
        return None

    port = free_port()
    webhooks = ChaosProxy(f"http://127.0.0.1:{port}", lambda m, p, b: None, hang_s=0)
    replicate_proxy = ChaosProxy(replicate.url.removesuffix("/v1"), replicate_rule, hang_s=2.5)
    os.environ.update({
        "API_KEYS": f"drill={KEY}", "EMBEDDER_BACKEND": "replicate", "EMBEDDING_MODEL": "all-MiniLM-L6-v2",
        "REPLICATE_API_BASE": replicate_proxy.url + "/v1", "REPLICATE_API_TOKEN": replicate.token,
        "REPLICATE_WEBHOOK_SECRET": replicate.webhook_secret, "REPLICATE_EMBEDDING_VERSION": "e" * 64,
        "REPLICATE_WHISPER_VERSION": "w" * 64, "REPLICATE_TIMEOUT_S": "1.5", "PUBLIC_BASE_URL": webhooks.url,
        "HF_HUB_OFFLINE": "1", "LOCAL_AWS": request.param})
    stack = LocalStack(port=port, data_dir=str(tmp_path / "data"), retry_delay_s=0, pollers=2)
    try:
        stack.start()
        stack.serve_in_thread()
        base = f"http://127.0.0.1:{files.server_address[1]}"
        yield dataclasses.make_dataclass(
            "Drill", ["stack", "faults", "replicate", "webhooks", "base", "deps", "queues"])(
            stack, faults, replicate_proxy, webhooks, base, bootstrap.deps(), Queues(stack))
    finally:
        stack.stop()
        replicate.stop()
        for proxy in (replicate_proxy, webhooks):
            proxy.stop()
        files.shutdown()
        os.environ.clear()
        os.environ.update(saved_env)
        aws._clients.clear()
        bootstrap._deps = None
        gateway._router = None


def wait_for(check, what: str, timeout_s: float = 150):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_asset_survives_its_fault_and_ends_searchable(drill):
    http = httpx.Client(base_url=drill.stack.url, headers={"x-api-key": KEY}, timeout=60)
    urls = {i: f"{drill.base}/doc{i}.txt" for i in range(len(TOPICS))}
    deps = drill.deps
    deps.store = FaultyStore(deps.store, drill.faults, urls)
    staged: dict[int, str] = {}
    deps.blobs = FaultyBlobs(deps.blobs, drill.faults, staged)
    lost_webhooks: list[str] = []

    # S3 down while a URL is submitted: a clear 503, and no record of the asset at all.
    drill.faults.s3_down_for_puts = True
    refused = http.post("/api/assets", json={"url": urls[S3_DOWN_AT_SUBMIT]})
    assert refused.status_code == 503 and "staging bucket" in refused.json()["error"]["message"]
    listed = http.get("/api/assets", params={"limit": 100}).json()["assets"]
    assert urls[S3_DOWN_AT_SUBMIT] not in {a["url"] for a in listed}, "no half-written record"
    drill.faults.s3_down_for_puts = False

    ids: dict[int, str] = {}
    for i, url in urls.items():
        response = http.post("/api/assets", json={"url": url})
        assert response.status_code == 202, response.text
        ids[i] = response.json()["id"]
        staged[i] = deps.store.get(ids[i]).staged_key

    def lose_one_assets_webhooks(method, path, body):
        if path.endswith(ids[WEBHOOK_LOST]):
            lost_webhooks.append(path)
            return "drop"
        return None

    drill.webhooks.decide = lose_one_assets_webhooks
    queues = drill.queues
    queue_url, dead_url = (drill.stack.queue_urls[q] for q in ("ProcessQueue", "ProcessDeadLetterQueue"))
    queues.send(queue_url, "{this is not json")  # the poison message

    # Transient faults are retried away; persistent ones end in the dead-letter queue.
    def settled():
        statuses = {i: deps.store.get(a).status for i, a in ids.items()}
        parked = queues.depth(dead_url) == 3  # the refused prediction, the lost body, the poison
        rest = [s for i, s in statuses.items() if i not in (REPLICATE_REFUSES, S3_LOST, WEBHOOK_LOST)]
        return parked and queues.depth(queue_url) == 0 and all(s is Status.SEARCHABLE for s in rest) \
            and statuses[WEBHOOK_LOST] is Status.GENERATING_EMBEDDINGS and lost_webhooks and statuses
    statuses = wait_for(settled, "the drill's faults to play out")
    assert statuses[REPLICATE_REFUSES] is Status.PROCESSED, "chunks stored, embeddings refused: still accounted for"
    assert statuses[S3_LOST] in (Status.SUBMITTED, Status.PROCESSING), statuses[S3_LOST]
    verdicts = [v for m, p, v in drill.replicate.seen if m == "POST"]
    assert {429, 500, "timeout", 503} <= set(verdicts), verdicts

    # Mend, redrive, and sweep: the lost webhook's prediction is fetched from Replicate.
    drill.faults.mended = True
    assert queues.redrive(dead_url, queue_url) == 3
    wait_for(lambda: all(deps.store.get(ids[i]).status is Status.SEARCHABLE for i in (REPLICATE_REFUSES, S3_LOST)),
             "the redriven assets")
    report = sweep(deps, at=now() + timedelta(seconds=deps.settings.stuck_after_s + 1))
    assert report.finished == [ids[WEBHOOK_LOST]], report
    wait_for(lambda: queues.depth(dead_url) == 1 and queues.depth(queue_url) == 0,
             "the poison message to be parked again")

    # Every asset accounted for: all searchable and findable by their own words; only the poison is parked.
    final = {a["id"]: a for a in http.get("/api/assets", params={"limit": 100}).json()["assets"]}
    assert set(final) == set(ids.values()) and all(a["status"] == "SEARCHABLE" for a in final.values()), final
    for i, asset_id in ids.items():
        hits = http.get("/api/search", params={"q": f"drill{i}x", "mode": "keyword", "limit": 3}).json()["results"]
        assert hits and hits[0]["asset"]["id"] == asset_id, (i, hits)
    (parked,) = queues.receive(dead_url)
    assert parked["Body"] == "{this is not json", "the poison message is kept, as sent, for a person to read"
    assert queues.depth(drill.stack.queue_urls["WebhookDeadLetterQueue"]) == 0
