"""One contract for queues, run against SQS (moto in server mode, through boto3) and against the
embedded SQLite queues (issue 15): send, delay, batch receive, visibility timeout, receive count,
dead-letter after maxReceiveCount, redrive, delete and change of visibility by receipt, and the
maximum message size behave alike in both. The embedded queues also survive `kill -9`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from allthethings.adapters.aws import client, redrive
from allthethings.adapters.embedded_queue import _READY, EmbeddedQueues, MessageTooLarge, Received

VISIBILITY_S = 1


class SqsQueues:
    """The same interface over SQS (boto3), with queue names mapped to their URLs."""

    def __init__(self):
        self.urls: dict[str, str] = {}

    def create(self, name, *, visibility_s=30, dead_letter=None, max_receives=None, max_bytes=262144):
        attributes = {"VisibilityTimeout": str(int(visibility_s)), "MaximumMessageSize": str(max_bytes)}
        if dead_letter:
            arn = client("sqs").get_queue_attributes(QueueUrl=self.urls[dead_letter],
                                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)})
        self.urls[name] = client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return name

    def send(self, queue, body, *, delay_s=0):
        from botocore.exceptions import ClientError

        try:
            return client("sqs").send_message(QueueUrl=self.urls[queue], MessageBody=body,
                                              DelaySeconds=int(delay_s))["MessageId"]
        except ClientError as exc:
            raise MessageTooLarge(str(exc)) from exc

    def receive(self, queue, *, limit=10, visibility_s=None, wait_s=0):
        extra = {} if visibility_s is None else {"VisibilityTimeout": int(visibility_s)}
        messages = client("sqs").receive_message(QueueUrl=self.urls[queue], MaxNumberOfMessages=limit,
                                                 WaitTimeSeconds=int(wait_s), AttributeNames=["All"],
                                                 **extra).get("Messages", [])
        return [Received(m["MessageId"], m["Body"], m["ReceiptHandle"],
                         int(m["Attributes"]["ApproximateReceiveCount"]),
                         int(m["Attributes"]["SentTimestamp"]) / 1000) for m in messages]

    def delete(self, queue, receipt):
        client("sqs").delete_message(QueueUrl=self.urls[queue], ReceiptHandle=receipt)

    def change_visibility(self, queue, receipt, visibility_s):
        client("sqs").change_message_visibility(QueueUrl=self.urls[queue], ReceiptHandle=receipt,
                                                VisibilityTimeout=int(visibility_s))

    def redrive(self, dead_letter, queue, *, limit=None):
        return redrive(self.urls[dead_letter], self.urls[queue], limit=limit)


@pytest.fixture(params=["sqs", "embedded"])
def queues(request, tmp_path):
    if request.param == "sqs":
        request.getfixturevalue("moto_endpoint")
        return SqsQueues()
    return EmbeddedQueues(str(tmp_path / "queues.db"))


@pytest.fixture
def pair(queues):
    """A queue whose messages go to its dead-letter queue after 2 receives, and that DLQ."""
    suffix = uuid.uuid4().hex[:8]
    dlq = queues.create(f"dlq-{suffix}", visibility_s=VISIBILITY_S)
    main = queues.create(f"main-{suffix}", visibility_s=VISIBILITY_S, dead_letter=dlq, max_receives=2,
                         max_bytes=262144)
    return queues, main, dlq


def receive_all(queues, queue, wait_s=2.5, expect=1):
    got, deadline = [], time.monotonic() + wait_s
    while len(got) < expect and time.monotonic() < deadline:
        got += queues.receive(queue, limit=10, wait_s=1)
    return got


def test_a_message_is_received_with_its_body_and_a_receive_count(pair):
    queues, main, _ = pair
    queues.send(main, json.dumps({"asset_id": "a1", "note": "ünïcödé"}))
    (message,) = receive_all(queues, main)
    assert json.loads(message.body) == {"asset_id": "a1", "note": "ünïcödé"} and message.receives == 1


def test_a_batch_receive_gives_up_to_ten_each_once(pair):
    queues, main, _ = pair
    for n in range(12):
        queues.send(main, f"m{n}")
    got = receive_all(queues, main, expect=12, wait_s=5)
    assert sorted(m.body for m in got) == sorted(f"m{n}" for n in range(12)), "each once, none lost"


def test_a_received_message_is_hidden_until_its_visibility_timeout_then_counted_again(pair):
    queues, main, _ = pair
    queues.send(main, "again")
    (first,) = receive_all(queues, main)
    assert queues.receive(main, limit=10) == [], "in flight: not handed out twice"
    time.sleep(VISIBILITY_S + 0.3)
    (second,) = receive_all(queues, main)
    assert second.body == "again" and second.receives == 2 and second.receipt != first.receipt


def test_a_deleted_message_is_gone(pair):
    queues, main, _ = pair
    queues.send(main, "done")
    (message,) = receive_all(queues, main)
    queues.delete(main, message.receipt)
    time.sleep(VISIBILITY_S + 0.3)
    assert queues.receive(main, limit=10, wait_s=1) == []


def test_a_change_of_visibility_to_zero_hands_it_out_again_at_once(pair):
    queues, main, _ = pair
    queues.send(main, "retry me")
    (message,) = receive_all(queues, main)
    queues.change_visibility(main, message.receipt, 0)
    (again,) = queues.receive(main, limit=10, wait_s=1)
    assert again.body == "retry me" and again.receives == 2


def test_a_message_received_max_receives_times_goes_to_the_dead_letter_queue_and_is_redriven(pair):
    queues, main, dlq = pair
    queues.send(main, "poison")
    for attempt in (1, 2):
        (message,) = receive_all(queues, main, wait_s=VISIBILITY_S + 3)
        assert message.receives == attempt
        queues.change_visibility(main, message.receipt, 0)  # failed: back at once
    assert queues.receive(main, limit=10, wait_s=1) == [], "a third receive moves it to the DLQ instead"
    (dead,) = receive_all(queues, dlq)
    assert dead.body == "poison"
    queues.change_visibility(dlq, dead.receipt, 0)
    assert queues.redrive(dlq, main) == 1
    (back,) = receive_all(queues, main)
    assert back.body == "poison" and back.receives == 1, "redriven with a fresh count"


def test_a_delayed_message_is_not_visible_before_its_delay(pair):
    queues, main, _ = pair
    queues.send(main, "later", delay_s=2)
    assert queues.receive(main, limit=10) == []
    (message,) = receive_all(queues, main, wait_s=4)
    assert message.body == "later"


def test_a_message_over_the_queues_maximum_is_refused(pair):
    queues, main, _ = pair
    with pytest.raises(MessageTooLarge):
        queues.send(main, "x" * (262144 + 1))
    queues.send(main, "x" * 262144)
    (message,) = receive_all(queues, main)
    assert len(message.body) == 262144


def test_the_embedded_queues_keep_every_message_through_kill_9(tmp_path):
    path = tmp_path / "queues.db"
    script = (
        "import os, signal, sys\n"
        "from allthethings.adapters.embedded_queue import EmbeddedQueues\n"
        f"q = EmbeddedQueues({str(path)!r})\n"
        "q.create('dlq'); q.create('main', visibility_s=600, dead_letter='dlq', max_receives=3)\n"
        "for n in range(200): q.send('main', f'm{n}')\n"
        "q.receive('main', limit=10)\n"  # ten in flight when it dies
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert done.returncode == -9, done.stderr
    queues = EmbeddedQueues(str(path))
    assert queues.depth("main") == {"visible": 190, "not_visible": 10}
    got = []
    while batch := queues.receive("main", limit=10):
        got += batch
    assert sorted(m.body for m in got) == sorted(f"m{n}" for n in range(10, 200))


def test_an_embedded_receive_is_an_index_search_not_a_walk_of_the_backlog(tmp_path):
    """Each receive reads the queue's visible messages through the (queue, visible_at, id) index,
    so its cost does not grow with the backlog (the benchmark measures it)."""
    queues = EmbeddedQueues(str(tmp_path / "queues.db"))
    queues.create("main")
    plan = " ".join(row[-1] for row in queues._conn().execute(f"EXPLAIN QUERY PLAN {_READY}",
                                                              ("main", time.time(), 10)))
    assert "USING INDEX messages_ready" in plan and "SCAN messages" not in plan, plan
