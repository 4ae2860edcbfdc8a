"""Fetching behind the queue over real HTTP into S3 (moto): a local origin that is slow, stops,
lies, ignores Range or changes its body between requests (issue 14's bad input), the real
fetcher with its address checks, and S3 multipart uploads."""

from __future__ import annotations

import hashlib
import time

import pytest

from allthethings.adapters.aws import S3BlobStore, client
from allthethings.adapters.fetch import HttpFetcher
from allthethings.config import Settings
from allthethings.domain.assets import Status
from allthethings.domain.content import SizeLimits
from allthethings.domain.errors import UnreachableUrl
from allthethings.domain.network import is_public_address
from allthethings.domain.tasks import FetchAsset, from_message
from allthethings.services.fetch_asset import fetch_asset
from allthethings.services.submit_asset import submit_asset
from devstack.origin import Origin
from tests.fakes import fake_deps

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part


def recording(size: int, salt: bytes = b"") -> bytes:
    """An MP3-looking body (ID3 magic), different for each salt."""
    block = hashlib.sha256(salt).digest() * 2048
    return (b"ID3" + block * (size // len(block) + 1))[:size]


@pytest.fixture
def origin():
    with Origin() as server:
        yield server


def deps_for(bucket, *, timeout_s: float = 3.0, allowed=None, **settings):
    options = dict(chunk_tokens=20, chunk_overlap=4, inline_fetch_bytes=256 * 1024, inline_fetch_s=0.5,
                   fetch_part_bytes=PART, fetch_slice_s=600.0)
    fetcher = HttpFetcher(allow_private=allowed is None, timeout_s=timeout_s)
    if allowed is not None:
        fetcher.allowed = allowed
    return fake_deps(settings=Settings(**{**options, **settings}), fetcher=fetcher, blobs=S3BlobStore(bucket))


def run_fetches(deps, slice_s: float = 600.0, limit: int = 30) -> list[FetchAsset]:
    ran = []
    while deps.fetches.messages and len(ran) < limit:
        task = from_message(deps.fetches.messages.pop(0))
        ran.append(task)
        fetch_asset(task, deps, until=time.monotonic() + slice_s)
    return ran


def unfinished_uploads(bucket) -> list:
    return client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def staged(deps, bucket, asset_id) -> bytes:
    return client("s3").get_object(Bucket=bucket, Key=f"staged/{asset_id}")["Body"].read()


def test_a_large_body_from_a_slow_origin_is_submitted_at_once_and_fetched_in_invocations(origin, bucket):
    body = recording(3 * PART + 12345)
    url = origin.put("/episode.mp3", body, "audio/mpeg") + f"?rate={8 * MiB}"
    deps = deps_for(bucket)
    started = time.monotonic()
    asset, _ = submit_asset(url, deps)
    assert time.monotonic() - started < 2, "the submission does not wait for the body"
    assert asset.status is Status.FETCHING and asset.size_bytes == len(body)
    ran = run_fetches(deps, slice_s=0.3)  # every invocation runs out of time after its first part
    assert [t.offset for t in ran] == [0, PART, 2 * PART, 3 * PART]
    ranges = [r["range"] for r in origin.requests if r["range"]]
    assert ranges == [f"bytes={PART}-", f"bytes={2 * PART}-", f"bytes={3 * PART}-"]
    assert all(r["if_range"] for r in origin.requests if r["range"]), "each continuation names the version"
    done = deps.store.get(asset.id)
    assert done.status is Status.SUBMITTED and done.sha256 == hashlib.sha256(body).hexdigest()
    assert staged(deps, bucket, asset.id) == body and unfinished_uploads(bucket) == []


def test_an_origin_that_drops_the_connection_part_way_is_resumed_with_a_range_request(origin, bucket):
    body = recording(2 * PART + 999)
    url = origin.put("/drop.mp3", body, "audio/mpeg") + f"?drop_at={PART + 4321}"
    deps = deps_for(bucket)
    asset, _ = submit_asset(url, deps)
    ran = run_fetches(deps)
    assert [(t.offset, t.resumes) for t in ran] == [(0, 0), (PART, 1)]
    assert staged(deps, bucket, asset.id) == body
    assert deps.store.get(asset.id).sha256 == hashlib.sha256(body).hexdigest()


def test_an_origin_that_stalls_part_way_is_resumed_after_the_read_timeout(origin, bucket):
    body = recording(PART + 999)
    path = "/stall.mp3"
    url = origin.put(path, body, "audio/mpeg") + f"?stall_at={PART + 10}"
    deps = deps_for(bucket, timeout_s=1.0)
    asset, _ = submit_asset(url, deps)
    task = from_message(deps.fetches.messages.pop(0))
    fetch_asset(task, deps, until=time.monotonic() + 600)
    (resume,) = [from_message(m) for m in deps.fetches.messages]
    assert (resume.offset, resume.resumes) == (PART, 1)
    # The origin still stalls at the same byte, so the resumed fetch (from PART) gets 10 bytes, then
    # stalls again; five resumes later it is an error the user can see and retry.
    run_fetches(deps)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and "stopped sending" in failed.error
    assert unfinished_uploads(bucket) == []


def test_an_origin_that_announces_more_than_it_sends_ends_in_an_error_not_a_stuck_asset(origin, bucket):
    body = recording(PART + 999)
    url = origin.put("/liar.mp3", body, "audio/mpeg") + f"?declare={2 * PART}"
    deps = deps_for(bucket)
    asset, _ = submit_asset(url, deps)
    run_fetches(deps)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and failed.error.startswith("fetching the URL failed")
    assert unfinished_uploads(bucket) == [] and deps.queue.messages == []


def test_a_body_that_grows_past_its_limit_without_a_length_fails_with_the_limit(origin, bucket):
    url = origin.put("/endless.mp3", recording(3 * PART), "audio/mpeg") + "?chunked=1"
    deps = deps_for(bucket, size_limits=SizeLimits(audio=2 * PART))
    asset, _ = submit_asset(url, deps)
    assert asset.status is Status.FETCHING and asset.size_bytes is None
    run_fetches(deps)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and f"limit of {2 * PART} bytes" in failed.error
    assert unfinished_uploads(bucket) == []


def test_a_range_request_answered_with_the_whole_body_fails_clearly(origin, bucket):
    body = recording(2 * PART + 5)
    url = origin.put("/norange.mp3", body, "audio/mpeg") + f"?ranges=0&rate={8 * MiB}"
    deps = deps_for(bucket)
    asset, _ = submit_asset(url, deps)
    run_fetches(deps, slice_s=0.3)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and "Range" in failed.error
    assert unfinished_uploads(bucket) == []


def test_a_body_that_changes_between_range_requests_is_fetched_again_from_zero(origin, bucket):
    old, new = recording(2 * PART + 5, b"old"), recording(2 * PART + 77, b"new")
    url = origin.put("/changing.mp3", old, "audio/mpeg") + f"?rate={8 * MiB}"
    deps = deps_for(bucket)
    asset, _ = submit_asset(url, deps)
    first = from_message(deps.fetches.messages.pop(0))
    fetch_asset(first, deps, until=time.monotonic() + 0.3)  # one part of the old version
    origin.replace("/changing.mp3", new)
    ran = run_fetches(deps)
    assert ran[0].offset == PART
    done = deps.store.get(asset.id)
    assert staged(deps, bucket, asset.id) == new, "never a splice of the two versions"
    assert done.sha256 == hashlib.sha256(new).hexdigest() and unfinished_uploads(bucket) == []


def test_every_range_request_passes_the_address_check(origin, bucket):
    """The continuation is a new connection, vetted like the first: here the policy turns the host
    away after the first two connections (the submission's and the first fetch's)."""
    connections = []

    def allowed(address: str) -> bool:
        connections.append(address)
        return len(connections) <= 2 and (address == "127.0.0.1" or is_public_address(address))

    body = recording(2 * PART + 5)
    url = origin.put("/vetted.mp3", body, "audio/mpeg") + f"?rate={8 * MiB}"
    deps = deps_for(bucket, allowed=allowed)
    asset, _ = submit_asset(url, deps)
    run_fetches(deps, slice_s=0.3)
    failed = deps.store.get(asset.id)
    assert len(connections) == 3 and failed.status is Status.PROCESSING_ERROR
    assert "non-public address" in failed.error and unfinished_uploads(bucket) == []


def test_an_origin_that_stalls_before_its_first_bytes_is_refused_within_a_few_seconds(origin, bucket):
    url = origin.put("/silent.mp3", recording(PART), "audio/mpeg") + "?stall_at=0"
    deps = deps_for(bucket, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(UnreachableUrl):
        submit_asset(url, deps)
    assert time.monotonic() - started < 5 and deps.store.assets == {}
