"""S3BlobStore, SqsQueue and the local SQS event-source mapping against moto in server mode.

moto runs as a real HTTP server on 127.0.0.1; boto3 reaches it through
AWS_ENDPOINT_URL, exactly as the local stack does. The queue pump is driven one
poll at a time with poll_once, with the handler loaded from a throwaway function
folder the way Lambda (and the local stack) loads it.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from allthethings.adapters import aws
from allthethings.adapters.aws import S3BlobStore, SqsQueue, client
from allthethings.domain.errors import NotFound, UpstreamUnavailable
from devstack.gateway import load_handler
from devstack.sqs_pump import QueuePump
from devstack.template import Function, QueueTrigger
from tests.conftest import FIXTURES
from tests.integration.conftest import _arn, _depth

MEMO = FIXTURES / "pdf" / "fake-memo.pdf"


def _drain(url: str) -> list[dict]:
    """Every message now in the queue, received (and left in flight)."""
    found, deadline = [], time.monotonic() + 10
    while _depth(url) > len(found) and time.monotonic() < deadline:
        found += client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                               AttributeNames=["All"]).get("Messages", [])
    return found


# -- S3 and SQS adapters --------------------------------------------------------------------------


def test_a_staged_fixture_file_round_trips_through_s3_and_is_deleted(bucket):
    store = S3BlobStore(bucket)
    with MEMO.open("rb") as fh:
        store.put("staged/memo.pdf", fh, "application/pdf")
    assert store.get("staged/memo.pdf") == MEMO.read_bytes()
    head = client("s3").head_object(Bucket=bucket, Key="staged/memo.pdf")
    assert head["ContentType"] == "application/pdf"
    store.delete("staged/memo.pdf")
    with pytest.raises(NotFound):
        store.get("staged/memo.pdf")


def test_a_body_over_the_single_put_limit_is_staged_in_parts_from_a_spooled_file(bucket):
    import tempfile


    body = os.urandom(aws.SINGLE_PUT_BYTES + 1024 * 1024)
    spooled = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    spooled.write(body)
    spooled.seek(0)
    S3BlobStore(bucket).put("staged/big", spooled, "application/pdf")
    assert S3BlobStore(bucket).get("staged/big") == body
    head = client("s3").head_object(Bucket=bucket, Key="staged/big")
    assert "-" in head["ETag"], "a multipart upload's ETag carries its part count"


def test_reading_a_missing_key_is_not_found_not_a_failure_worth_retrying(bucket):
    # Processing turns NotFound into an error status; UpstreamUnavailable would retry into the DLQ.
    with pytest.raises(NotFound, match="reading the staged body"):
        S3BlobStore(bucket).get("never/put")


def test_staging_into_a_missing_bucket_raises_upstream_unavailable(moto_endpoint):
    with pytest.raises(UpstreamUnavailable, match="staging the body"):
        S3BlobStore(f"missing-{uuid.uuid4().hex[:8]}").put("k", io.BytesIO(b"x"), "text/plain")


class _DroppingS3(BaseHTTPRequestHandler):
    """An S3 that announces a whole object, sends its first bytes and hangs up."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(MEMO.stat().st_size))
        self.end_headers()
        self.wfile.write(MEMO.read_bytes()[:64])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def dropping_s3(moto_endpoint, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingS3)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    aws._clients.clear()
    yield
    aws._clients.clear()  # the next test builds its clients against moto again
    server.shutdown()
    server.server_close()


def test_a_connection_lost_while_reading_a_staged_body_raises_upstream_unavailable(dropping_s3):
    with pytest.raises(UpstreamUnavailable):
        S3BlobStore("staging").get("staged/memo.pdf")


def test_a_sent_task_is_received_as_the_same_json(queues):
    main, _ = queues
    task = {"asset_id": "a1b2", "url": "https://example.org/doc", "note": "ünïcödé"}
    SqsQueue(main).send(task)
    (message,) = _drain(main)
    assert json.loads(message["Body"]) == task


def test_sending_to_a_missing_queue_raises_upstream_unavailable(moto_endpoint):
    url = f"{moto_endpoint}/123456789012/no-such-queue-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UpstreamUnavailable, match="sending to the webhook queue failed"):
        SqsQueue(url, "the webhook queue").send({"asset_id": "x"})


# -- the local event-source mapping ----------------------------------------------------------------

HANDLER = '''\
"""A throwaway SQS consumer: Powertools partial batch responses; records with "poison" fail."""
import json
from pathlib import Path

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

LOG = Path({log!r})
ACCEPT_POISON = {accept_poison!r}
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record):
    poisoned = "poison" in record.body and not ACCEPT_POISON
    with LOG.open("a") as fh:
        fh.write(json.dumps({{"body": record.body, "receives": int(record.attributes.approximate_receive_count),
                              "ok": not poisoned}}) + "\\n")
    if poisoned:
        raise ValueError("cannot digest this record")


def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
'''

RAISES = '''\
def handler(event, context):
    raise RuntimeError("the function crashed before looking at the batch")
'''


def _function(tmp_path, source: str, *, report_failures: bool = True) -> tuple[Function, QueueTrigger]:
    """A function folder holding app.py; a fresh logical id, since handlers are imported once per id."""
    logical_id = f"Consumer{uuid.uuid4().hex[:8]}"
    code_dir = tmp_path / logical_id
    code_dir.mkdir()
    (code_dir / "app.py").write_text(source)
    trigger = QueueTrigger(queue="Tasks", batch_size=10, report_failures=report_failures)
    return Function(logical_id, code_dir, "app.handler", {}, [], [trigger]), trigger


def _consumer(tmp_path, log, *, accept_poison: bool):
    return _function(tmp_path, HANDLER.format(log=str(log), accept_poison=accept_poison))


def _attempts(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _pump_until_empty(pump: QueuePump, handler, url: str, timeout_s: float = 30) -> int:
    polls, deadline = 0, time.monotonic() + timeout_s
    while _depth(url) > 0:
        assert time.monotonic() < deadline, f"{url} still holds {_depth(url)} messages after {polls} polls"
        pump.poll_once(handler)
        polls += 1
    return polls


def _send(url: str, *bodies: str) -> None:
    for body in bodies:
        client("sqs").send_message(QueueUrl=url, MessageBody=body)


def test_good_records_are_handled_once_and_a_poison_record_lands_in_the_dlq_after_three_receives(tmp_path, queues):
    main, dlq = queues
    log = tmp_path / "attempts.jsonl"
    function, trigger = _consumer(tmp_path, log, accept_poison=False)
    handler = load_handler(function)
    pump = QueuePump(client("sqs"), function, trigger, main, _arn(main), retry_delay_s=0)
    good = [json.dumps({"asset_id": f"good-{n}"}) for n in range(3)]
    poison = json.dumps({"asset_id": "bad", "note": "poison"})
    _send(main, *good, poison)

    _pump_until_empty(pump, handler, main)

    attempts = _attempts(log)
    handled = [a["body"] for a in attempts if a["ok"]]
    assert sorted(handled) == sorted(good), "each good record exactly once"
    assert [a["receives"] for a in attempts if a["body"] == poison] == [1, 2, 3]
    (dead,) = _drain(dlq)
    assert dead["Body"] == poison


def test_a_redriven_record_is_processed_by_a_fixed_consumer(tmp_path, queues):
    main, dlq = queues
    log = tmp_path / "attempts.jsonl"
    poison = json.dumps({"asset_id": "bad", "note": "poison"})
    _send(main, poison)
    function, trigger = _consumer(tmp_path, log, accept_poison=False)
    _pump_until_empty(QueuePump(client("sqs"), function, trigger, main, _arn(main), retry_delay_s=0),
                      load_handler(function), main)
    (dead,) = _drain(dlq)

    # Redrive: the body goes back to the main queue and leaves the DLQ.
    _send(main, dead["Body"])
    client("sqs").delete_message(QueueUrl=dlq, ReceiptHandle=dead["ReceiptHandle"])
    fixed, fixed_trigger = _consumer(tmp_path, log, accept_poison=True)
    _pump_until_empty(QueuePump(client("sqs"), fixed, fixed_trigger, main, _arn(main), retry_delay_s=0),
                      load_handler(fixed), main)

    assert [a["ok"] for a in _attempts(log) if a["body"] == poison] == [False, False, False, True]
    assert _depth(dlq) == 0


def test_redrive_moves_what_was_waiting_and_stops_though_a_poison_message_fails_straight_back(tmp_path, queues):
    from allthethings.adapters.aws import redrive

    main, dlq = queues
    poison = json.dumps({"asset_id": "bad", "note": "poison"})
    _send(main, poison)
    function, trigger = _consumer(tmp_path, tmp_path / "attempts.jsonl", accept_poison=False)
    pump = QueuePump(client("sqs"), function, trigger, main, _arn(main), retry_delay_s=0)
    _pump_until_empty(pump, load_handler(function), main)
    assert _depth(dlq) == 1
    pump.start()  # a consumer that still fails it, as fast as it can, while the redrive runs
    try:
        assert redrive(dlq, main) == 1
        deadline = time.monotonic() + 30
        while (_depth(dlq), _depth(main)) != (1, 0) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        pump.stop()
        pump.join(timeout=10)
    assert (_depth(dlq), _depth(main)) == (1, 0), "back in the dead-letter queue, kept, once"


def test_a_handler_that_raises_leaves_the_whole_batch_for_retry(tmp_path, queues):
    main, _ = queues
    function, trigger = _function(tmp_path, RAISES)
    pump = QueuePump(client("sqs"), function, trigger, main, _arn(main), retry_delay_s=0)
    bodies = [json.dumps({"asset_id": f"a{n}"}) for n in range(3)]
    _send(main, *bodies)

    assert pump.poll_once(load_handler(function)) == 3
    assert pump.batches == 1

    again = _drain(main)
    assert sorted(m["Body"] for m in again) == sorted(bodies)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in again} == {"2"}


def test_without_report_batch_item_failures_a_returned_failure_list_is_ignored(tmp_path, queues):
    # As in Lambda: the response only counts when the mapping enables ReportBatchItemFailures.
    main, dlq = queues
    log = tmp_path / "attempts.jsonl"
    function, trigger = _function(tmp_path, HANDLER.format(log=str(log), accept_poison=False),
                                  report_failures=False)
    pump = QueuePump(client("sqs"), function, trigger, main, _arn(main), retry_delay_s=0)
    _send(main, "fine", "poison")

    _pump_until_empty(pump, load_handler(function), main)

    assert sorted(a["body"] for a in _attempts(log)) == ["fine", "poison"]
    assert _depth(dlq) == 0
