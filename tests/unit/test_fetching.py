"""Submission answers at once and the fetch step stages large or slow bodies behind the queue
(issue 14, item 1), on fakes: the fetch function's service, its hand-overs and its failures."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from allthethings.config import Settings
from allthethings.domain.assets import Asset, Kind, Status
from allthethings.domain.content import SizeLimits
from allthethings.domain.errors import UnreachableUrl
from allthethings.domain.tasks import FetchAsset, ProcessAsset, from_message
from allthethings.services.fetch_asset import MAX_RESUMES, fetch_asset
from allthethings.services.lifecycle import delete_asset, retry_asset
from allthethings.services.submit_asset import submit_asset
from tests.fakes import fake_deps

PART = 4096
URL = "https://slow.example/episode.mp3"


def mp3(size: int, salt: bytes = b"") -> bytes:
    """An MP3-looking body (ID3 magic) of `size` bytes, different for each salt."""
    seed = hashlib.sha256(salt).digest()
    return (b"ID3" + seed * (size // len(seed) + 1))[:size]


def deps_for(body: bytes, **settings):
    options = dict(chunk_tokens=20, chunk_overlap=4, inline_fetch_bytes=1024, fetch_part_bytes=PART)
    deps = fake_deps(settings=Settings(**{**options, **settings}))
    deps.fetcher.pages[URL] = ("audio/mpeg", body)
    deps.fetcher.piece_bytes = 1000  # as a network hands them out: several pieces to a part
    return deps


def forever() -> float:
    return time.monotonic() + 3600


def run_fetches(deps, *, until=forever, limit: int = 50) -> list[FetchAsset]:
    """Run every queued fetch message, as the fetch function would, until none is left."""
    ran = []
    while deps.fetches.messages and len(ran) < limit:
        task = from_message(deps.fetches.messages.pop(0))
        ran.append(task)
        fetch_asset(task, deps, until=until())
    return ran


def test_a_body_larger_than_the_inline_budget_is_recorded_fetching_and_queued_not_read():
    body = mp3(10 * PART + 123)
    deps = deps_for(body)
    asset, queued = submit_asset(URL, deps)
    assert queued and asset.status is Status.FETCHING and asset.kind is Kind.AUDIO
    assert asset.size_bytes == len(body) and asset.fetched_bytes == 0 and asset.staged_key is None
    assert asset.to_public()["fetched_bytes"] == 0
    assert deps.blobs.objects == {} and deps.queue.messages == []
    (message,) = deps.fetches.messages
    assert from_message(message) == FetchAsset(asset.id)


def test_the_fetch_step_stages_the_body_in_parts_and_queues_its_processing():
    body = mp3(10 * PART + 123)
    deps = deps_for(body)
    asset, _ = submit_asset(URL, deps)
    run_fetches(deps)
    staged = deps.store.get(asset.id)
    assert staged.status is Status.SUBMITTED and staged.staged_key == f"staged/{asset.id}"
    assert deps.blobs.objects[staged.staged_key] == body and deps.blobs.uploads == {}
    assert staged.sha256 == hashlib.sha256(body).hexdigest() and staged.size_bytes == len(body)
    assert [from_message(m) for m in deps.queue.messages] == [ProcessAsset(asset.id)]


def test_a_fetch_out_of_time_hands_over_at_a_part_and_the_next_continues_with_a_range_request():
    body = mp3(10 * PART + 123)
    deps = deps_for(body)
    asset, _ = submit_asset(URL, deps)
    ran = run_fetches(deps, until=time.monotonic)  # every invocation's time is up after its first part
    assert [t.offset for t in ran] == [i * PART for i in range(11)]
    assert deps.fetcher.starts[-10:] == [i * PART for i in range(1, 11)], "each continuation asks for the rest"
    assert all(t.upload_id == ran[1].upload_id for t in ran[1:]) and ran[-1].etags
    staged = deps.store.get(asset.id)
    assert deps.blobs.objects[staged.staged_key] == body
    assert staged.sha256 == hashlib.sha256(body).hexdigest(), "a body fetched in several invocations is hashed back"


def test_progress_is_recorded_after_each_part():
    body = mp3(3 * PART + 10)
    deps = deps_for(body)
    asset, _ = submit_asset(URL, deps)
    task = from_message(deps.fetches.messages.pop(0))
    fetch_asset(task, deps, until=time.monotonic())  # stops after its first part
    assert deps.store.get(asset.id).fetched_bytes == PART
    assert deps.store.get(asset.id).to_public()["fetched_bytes"] == PART


def test_a_body_that_changes_between_range_requests_is_fetched_again_from_zero_never_spliced():
    old, new = mp3(6 * PART, b"v1"), mp3(6 * PART, b"v2")
    deps = deps_for(old)
    asset, _ = submit_asset(URL, deps)
    first = from_message(deps.fetches.messages.pop(0))
    fetch_asset(first, deps, until=time.monotonic())  # one part of the old version
    deps.fetcher.pages[URL] = ("audio/mpeg", new)
    ran = run_fetches(deps)
    assert ran[0].offset == PART and ran[0].restarts == 0
    staged = deps.store.get(asset.id)
    assert deps.blobs.objects[staged.staged_key] == new and staged.sha256 == hashlib.sha256(new).hexdigest()
    assert deps.blobs.uploads == {}, "the old version's parts are dropped"


def test_an_origin_that_answers_a_range_request_with_the_whole_body_fails_clearly():
    deps = deps_for(mp3(6 * PART))
    deps.fetcher.ranges = False
    asset, _ = submit_asset(URL, deps)
    run_fetches(deps, until=time.monotonic)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR
    assert "does not take Range requests" in failed.error or "cannot resume" in failed.error
    assert deps.blobs.uploads == {} and deps.queue.messages == []


def test_an_origin_that_stops_part_way_is_resumed_from_the_last_part():
    body = mp3(8 * PART + 5)
    deps = deps_for(body)
    deps.fetcher.interrupt_at[URL] = 5 * PART + 100
    asset, _ = submit_asset(URL, deps)
    ran = run_fetches(deps)
    assert [(t.offset, t.resumes) for t in ran] == [(0, 0), (5 * PART, 1)]
    assert deps.blobs.objects[f"staged/{asset.id}"] == body
    assert deps.store.get(asset.id).status is Status.SUBMITTED


def test_an_origin_that_keeps_stopping_ends_in_an_error_not_a_loop():
    body = mp3(8 * PART + 5)
    deps = deps_for(body)
    asset, _ = submit_asset(URL, deps)
    original = deps.fetcher._pieces

    def always_stopping(url, served, start):
        deps.fetcher.interrupt_at[url] = start + PART + 1
        return original(url, served, start)

    deps.fetcher._pieces = always_stopping
    ran = run_fetches(deps)
    assert len(ran) == MAX_RESUMES + 1
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and "stopped sending" in failed.error
    assert deps.blobs.uploads == {}


def test_a_body_indexed_behind_another_url_becomes_a_searchable_copy_when_fetched():
    body = mp3(5 * PART)
    deps = deps_for(body)
    twin = Asset.new("https://fast.example/same.mp3", content_type="audio/mpeg", kind=Kind.AUDIO, staged_key=None,
                     size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    deps.store.add(dataclasses.replace(twin, status=Status.SEARCHABLE, chunk_count=1))
    deps.store.put_chunks(twin.id, [])
    asset, _ = submit_asset(URL, deps)
    run_fetches(deps)
    copy = deps.store.get(asset.id)
    assert copy.status is Status.SEARCHABLE and copy.sha256 == twin.sha256
    assert deps.blobs.objects == {} and deps.queue.messages == [], "nothing staged, processed or predicted"


def test_an_asset_deleted_while_it_is_fetched_drops_its_parts():
    deps = deps_for(mp3(6 * PART))
    asset, _ = submit_asset(URL, deps)
    fetch_asset(from_message(deps.fetches.messages.pop(0)), deps, until=time.monotonic())
    assert deps.blobs.uploads
    delete_asset(asset.id, deps)
    run_fetches(deps)
    assert deps.blobs.uploads == {} and deps.blobs.objects == {} and deps.store.get(asset.id) is None


def test_a_body_past_its_kinds_limit_fails_the_fetch_with_the_limit():
    deps = deps_for(mp3(6 * PART), size_limits=SizeLimits(audio=8 * PART))
    asset, _ = submit_asset(URL, deps)
    deps.fetcher.pages[URL] = ("audio/mpeg", mp3(9 * PART))  # it grew past the limit since
    run_fetches(deps)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and "limit" in failed.error
    assert deps.blobs.uploads == {}


def test_a_url_that_now_serves_another_kind_fails_the_fetch():
    deps = deps_for(mp3(6 * PART))
    asset, _ = submit_asset(URL, deps)
    deps.fetcher.pages[URL] = ("text/html", b"<html>" + b"moved" * 5000)
    run_fetches(deps)
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and "now serves text/html" in failed.error


def test_an_unreachable_url_is_refused_at_submission_and_nothing_is_recorded():
    deps = deps_for(b"")
    with pytest.raises(UnreachableUrl):
        submit_asset("https://slow.example/missing.mp3", deps)
    assert deps.store.assets == {} and deps.fetches.messages == []


def test_a_failed_fetch_is_retried_behind_the_queue():
    body = mp3(6 * PART)
    deps = deps_for(body)
    deps.fetcher.ranges = False
    asset, _ = submit_asset(URL, deps)
    run_fetches(deps, until=time.monotonic)
    assert deps.store.get(asset.id).status is Status.PROCESSING_ERROR
    retried = retry_asset(asset.id, deps)
    assert retried.status is Status.FETCHING and retried.error is None and retried.fetched_bytes == 0
    run_fetches(deps)  # with all the time it needs, no Range request is needed
    assert deps.store.get(asset.id).status is Status.SUBMITTED
    assert deps.blobs.objects[f"staged/{asset.id}"] == body


def test_a_fetch_message_for_an_asset_already_staged_only_makes_sure_it_is_processed():
    deps = deps_for(mp3(6 * PART))
    asset, _ = submit_asset(URL, deps)
    task = from_message(deps.fetches.messages[0])
    run_fetches(deps)
    deps.queue.messages.clear()
    assert fetch_asset(task, deps, until=forever()) is Status.SUBMITTED  # a duplicate delivery
    assert [from_message(m) for m in deps.queue.messages] == [ProcessAsset(asset.id)]


def test_a_fetch_that_stopped_moving_is_fetched_again_from_zero_by_the_sweeper_then_given_up():
    from datetime import timedelta

    from allthethings.services.sweeper import sweep

    deps = deps_for(mp3(6 * PART), stuck_after_s=900, give_up_after_s=6 * 3600, api_url="https://api.test")
    asset, _ = submit_asset(URL, deps)
    deps.fetches.messages.clear()  # the fetch message was lost (or dead-lettered)
    stamp = deps.store.get(asset.id).updated_at
    assert sweep(deps, at=stamp + timedelta(seconds=899)).requeued == []
    assert sweep(deps, at=stamp + timedelta(seconds=901)).requeued == [asset.id]
    assert [from_message(m) for m in deps.fetches.messages] == [FetchAsset(asset.id, "https://api.test")]
    assert sweep(deps, at=stamp + timedelta(hours=7)).failed == [asset.id]
    failed = deps.store.get(asset.id)
    assert failed.status is Status.PROCESSING_ERROR and "fetching did not finish" in failed.error
