"""The real payload limits, crossed on the local stack's own parts (the gateway, the AWS emulator's
queues and bucket, the webhook functions and their consumer, real signatures): a webhook body
over SQS's 1 MiB goes through by claim check and is applied; a request whose Lambda event would
be over 6 MB is refused with 413, as API Gateway does; a queue refuses a message over its
configured maximum, as SQS does."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import flask
import pytest
from standardwebhooks.webhooks import Webhook

from allthethings import bootstrap
from allthethings.adapters.aws import S3BlobStore, SqsQueue, client
from allthethings.adapters.sqlite_store import SqliteStore
from allthethings.config import Settings
from allthethings.domain.assets import Asset, Kind, Status
from allthethings.domain.errors import UpstreamUnavailable
from devstack import gateway
from devstack import template as templates
from devstack.sqs_pump import QueuePump
from devstack.stack import LocalStack
from tests.fakes import fake_deps
from tests.integration.conftest import _arn, _depth

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
SQS_MAX = 1024 * 1024
LAMBDA_PAYLOAD = 6 * 1024 * 1024


def signed(body: str, msg_id: str) -> dict:
    stamp = datetime.now(UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(SECRET).sign(msg_id, stamp, body), "content-type": "application/json"}


def post(path: str, body: bytes, headers: dict):
    """One request through the local gateway, as its HTTP server hands it over."""
    with flask.Flask(__name__).test_request_context(path, method="POST", data=body, headers=headers):
        return gateway.gateway(flask.request)


@pytest.fixture(scope="module")
def routes():
    gateway.configure(templates.load(REPO / "infra" / "template.yaml"))


@pytest.fixture
def system(moto_endpoint, bucket, tmp_path, routes):
    sqs = client("sqs")
    name = f"WebhookQueue-{tmp_path.name[-20:]}".replace("_", "-")
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    limit = templates.load(REPO / "infra" / "template.yaml").raw["Resources"]["WebhookQueue"]["Properties"] \
        .get("MaximumMessageSize", SQS_MAX)
    queue = sqs.create_queue(QueueName=name, Attributes={"MaximumMessageSize": str(limit), "RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": _arn(dlq), "maxReceiveCount": "2"})})["QueueUrl"]
    store = SqliteStore(str(tmp_path / "store.db"), 16, "fake")
    deps = fake_deps(settings=Settings(chunk_tokens=20, chunk_overlap=4, replicate_webhook_secret=SECRET),
                     store=store, blobs=S3BlobStore(bucket), webhooks=SqsQueue(queue, "the webhook queue"))
    fn = templates.load(REPO / "infra" / "template.yaml").functions["WebhookConsumerFunction"]
    pump = QueuePump(sqs, fn, fn.queue_triggers[0], queue, _arn(queue), retry_delay_s=0)
    with bootstrap.use(deps):
        yield deps, pump, gateway.load_handler(fn), queue, dlq, bucket


def recording(deps) -> Asset:
    asset = Asset.new("http://x.test/talk.mp3", content_type="audio/mpeg", kind=Kind.AUDIO,
                      staged_key="staged/talk.mp3", size_bytes=1)
    deps.store.add(asset)
    deps.store.move(asset.id, Status.PROCESSING, prediction_id="whisper-1")
    return asset


def transcript(segments: int) -> str:
    """A Whisper prediction as Replicate delivers it: every segment with its tokens and scores."""
    items = [{"id": i, "seek": i * 400, "start": i * 4.0, "end": i * 4.0 + 4.0,
              "text": f" the keeper spoke of storm number {i} on the rock", "tokens": list(range(50364, 50394)),
              "temperature": 0.0, "avg_logprob": -0.21, "compression_ratio": 1.4, "no_speech_prob": 0.01}
             for i in range(segments)]
    return json.dumps({"id": "whisper-1", "status": "succeeded", "input": {"audio": "https://s3.test/staged/talk.mp3"},
                       "output": {"segments": items, "transcription": "...", "detected_language": "english"}})


def drain(pump, handler, url, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while _depth(url) and time.monotonic() < deadline:
        pump.poll_once(handler)


def objects(bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_a_webhook_body_over_a_mebibyte_goes_through_the_gateway_by_claim_check_and_is_applied(system):
    deps, pump, handler, queue, dlq, bucket = system
    asset = recording(deps)
    body = transcript(4000)
    assert SQS_MAX < len(body) < LAMBDA_PAYLOAD
    response = post(f"/webhooks/audio/{asset.id}", body.encode(), signed(body, "msg_long"))
    assert response.status_code == 202, response.get_data(as_text=True)

    (message,) = client("sqs").receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"]
    pointer = json.loads(message["Body"])
    assert len(message["Body"]) < deps.settings.claim_check_bytes and "body" not in pointer
    assert objects(bucket, f"deliveries/{asset.id}/") == [pointer["body_key"]]

    drain(pump, handler, queue)
    done = deps.store.get(asset.id)
    assert done.status is Status.SEARCHABLE, done.error
    chunks = deps.store.chunks(asset.id)
    assert chunks[-1].end_s == 16000.0 and "storm number 3999" in chunks[-1].text
    assert objects(bucket, "deliveries/") == [], "the applied delivery's body is deleted"
    assert _depth(dlq) == 0


def test_a_claimed_body_that_is_gone_while_its_delivery_is_due_is_retried_then_dead_lettered(system):
    deps, pump, handler, queue, dlq, bucket = system
    asset = recording(deps)
    body = transcript(4000)
    assert post(f"/webhooks/audio/{asset.id}", body.encode(), signed(body, "msg_lost")).status_code == 202
    for key in objects(bucket, "deliveries/"):
        client("s3").delete_object(Bucket=bucket, Key=key)
    drain(pump, handler, queue)
    assert _depth(dlq) == 1, "the delivery waits in the dead-letter queue, to be redriven or inspected"
    assert deps.store.get(asset.id).status is Status.PROCESSING, "and the asset is still accounted for"


def test_a_request_whose_lambda_event_would_be_over_6_mb_gets_413_from_the_local_gateway(system):
    deps, pump, handler, queue, dlq, bucket = system
    asset = recording(deps)
    for body, content_type in [(b"a" * (LAMBDA_PAYLOAD + 1), "application/json"),  # the body alone
                               (b"\xff" * 4_800_000, "application/octet-stream")]:  # base64-encoded: 6.4 MB
        response = post(f"/webhooks/audio/{asset.id}", body, {"content-type": content_type})
        assert response.status_code == 413
        assert response.get_json() == {"message": "Request Entity Too Large"}
    # Just under the limit, the request reaches the function (which refuses an unsigned delivery).
    response = post(f"/webhooks/audio/{asset.id}", b"a" * (LAMBDA_PAYLOAD - 4096), {"content-type": "application/json"})
    assert response.status_code == 401
    assert _depth(queue) == 0


def test_the_local_stacks_queues_refuse_a_message_over_their_configured_maximum(moto_endpoint, tmp_path):
    stack = LocalStack(template=REPO / "infra" / "template.yaml", data_dir=str(tmp_path / "data"))
    refs = stack._create_resources()
    try:
        properties = {name: stack.template.raw["Resources"][name]["Properties"] for name in stack.queue_urls}
        assert properties["WebhookQueue"]["MaximumMessageSize"] <= 256 * 1024, "the deliveries' queue says its limit"
        for name, url in stack.queue_urls.items():
            limit = int(client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
                        ["Attributes"]["MaximumMessageSize"])
            assert limit == properties[name].get("MaximumMessageSize", SQS_MAX), "the template's, else SQS's most"
            queue = SqsQueue(url, f"the {name}")
            envelope = len(json.dumps({"pad": ""}, separators=(",", ":")))
            queue.send({"pad": "x" * (limit - envelope)})
            with pytest.raises(UpstreamUnavailable, match=f"sending to the {name} failed"):
                queue.send({"pad": "x" * (limit - envelope + 1)})
    finally:  # the emulator's state is one per process: other modules create queues of these names
        for url in stack.queue_urls.values():
            client("sqs").delete_queue(QueueUrl=url)
        for logical_id in stack.template.buckets:
            client("s3").delete_bucket(Bucket=refs[logical_id])
