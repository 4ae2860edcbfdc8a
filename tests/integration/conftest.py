"""Integration fixtures: the AWS emulator (moto, server mode) on a free loopback port."""

from __future__ import annotations

import json
import uuid

import pytest

from allthethings.adapters import aws
from allthethings.adapters.aws import client


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS",
                     "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # Neither a real config file nor instance metadata may be consulted.
        mp.setenv("AWS_CONFIG_FILE", "/dev/null")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        aws._clients.clear()
        yield endpoint
        aws._clients.clear()
    server.stop()


@pytest.fixture
def bucket(moto_endpoint):
    name = f"staging-{uuid.uuid4().hex[:12]}"
    client("s3").create_bucket(Bucket=name)
    return name


def _arn(url: str) -> str:
    return client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


@pytest.fixture
def queues(moto_endpoint):
    """A main queue whose redrive policy sends a record to its DLQ after 3 receives."""
    sqs = client("sqs")
    suffix = uuid.uuid4().hex[:10]
    dlq = sqs.create_queue(QueueName=f"tasks-dlq-{suffix}")["QueueUrl"]
    main = sqs.create_queue(QueueName=f"tasks-{suffix}", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": _arn(dlq), "maxReceiveCount": "3"}),
    })["QueueUrl"]
    return main, dlq


def _depth(url: str) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


