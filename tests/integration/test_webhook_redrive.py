"""A failure drill under the AWS emulator: the store is down while a webhook is applied; SQS
retries, the redrive policy parks the delivery in the dead-letter queue, nothing is lost; the
store comes back, `redrive` moves the delivery back, and the asset becomes SEARCHABLE."""

from __future__ import annotations

import json
import time
from pathlib import Path

from allthethings import bootstrap
from allthethings.adapters.aws import SqsQueue, client, redrive
from allthethings.adapters.sqlite_store import SqliteStore
from allthethings.domain.assets import Asset, Chunk, Kind, Status
from allthethings.domain.errors import UpstreamUnavailable
from devstack import template as templates
from devstack.gateway import load_handler
from devstack.sqs_pump import QueuePump
from tests.fakes import FakeEmbedder, fake_deps, word_vector
from tests.integration.conftest import _arn, _depth

REPO = Path(__file__).resolve().parents[2]


class FlakyStore(SqliteStore):
    """A real SQLite store whose writes fail while `down` is set, as Atlas does in an outage."""

    down = False

    def make_searchable(self, asset_id, vectors):
        if self.down:
            raise UpstreamUnavailable("the database is unavailable (ServerSelectionTimeoutError)")
        return super().make_searchable(asset_id, vectors)


def pump_until_empty(pump: QueuePump, handler, url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _depth(url) and time.monotonic() < deadline:
        pump.poll_once(handler)
    assert _depth(url) == 0, "the queue did not drain"


def test_a_delivery_that_keeps_failing_is_dead_lettered_then_redriven_to_searchable(moto_endpoint, tmp_path):
    max_receives = 3
    sqs = client("sqs")
    dlq = sqs.create_queue(QueueName="WebhookDeadLetterQueue")["QueueUrl"]
    queue = sqs.create_queue(QueueName="WebhookQueue", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": _arn(dlq), "maxReceiveCount": str(max_receives)})})["QueueUrl"]
    store = FlakyStore(str(tmp_path / "store.db"), 16, "fake")
    deps = fake_deps(store=store, embedder=FakeEmbedder(pending=True), webhooks=SqsQueue(queue))

    asset = Asset.new("http://x.test/a.txt", content_type="text/plain", kind=Kind.TEXT, staged_key="k",
                      size_bytes=1)
    store.add(asset)
    for status in (Status.PROCESSING, Status.PROCESSED):
        store.move(asset.id, status)
    store.put_chunks(asset.id, [Chunk(asset.id, 0, "keepers lit the lamp")])
    store.move(asset.id, Status.GENERATING_EMBEDDINGS, chunk_count=1, prediction_id="p1")
    output = [{"embedding": word_vector("keepers lit the lamp")}]
    body = json.dumps({"id": "p1", "status": "succeeded", "output": output})
    deps.webhooks.send({"kind": "embedding", "asset_id": asset.id, "delivery_id": "msg_1", "body": body})

    template = templates.load(REPO / "infra" / "template.yaml")
    fn = template.functions["WebhookConsumerFunction"]
    pump = QueuePump(sqs, fn, fn.queue_triggers[0], queue, _arn(queue), retry_delay_s=0)
    handler = load_handler(fn)
    with bootstrap.use(deps):
        store.down = True
        pump_until_empty(pump, handler, queue)
        assert _depth(dlq) == 1, "the failing delivery waits in the dead-letter queue"
        assert store.get(asset.id).status is Status.GENERATING_EMBEDDINGS, "and the asset is still accounted for"

        store.down = False
        assert redrive(dlq, queue) == 1
        assert _depth(dlq) == 0
        pump_until_empty(pump, handler, queue)
    assert store.get(asset.id).status is Status.SEARCHABLE
