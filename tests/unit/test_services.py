"""The use cases, with fakes behind every port: no network, no disk, no model."""

import pytest

from allthethings.domain.assets import Status
from allthethings.domain.errors import (
    Conflict,
    ExtractionFailed,
    InvalidInput,
    NotFound,
    UnreachableUrl,
    UnsupportedContentType,
    UpstreamUnavailable,
)
from allthethings.entrypoints import shapes
from allthethings.services.assets import fail_asset
from allthethings.services.embeddings import apply_embedding_prediction
from allthethings.services.lifecycle import delete_asset, retry_asset
from allthethings.services.process_asset import process_asset
from allthethings.services.search import parse_request
from allthethings.services.search import search as run_search
from allthethings.services.submit_asset import submit_asset
from tests.fakes import FakeEmbedder, FakeFetcher, FakeQueue, fake_deps, word_vector

LIGHTHOUSE = ("Lighthouse keepers trimmed wicks and polished lenses through the night. "
              "Storms cut the keepers off for weeks on the rock towers. ") * 4
SOURDOUGH = "Feed the sourdough starter daily with flour and water; discard half before feeding. " * 3


def deps_with(pages, **kw):
    return fake_deps(fetcher=FakeFetcher(pages), **kw)


def test_a_submitted_url_is_staged_queued_and_recorded():
    deps = deps_with({"http://x.test/a.txt": ("text/plain", LIGHTHOUSE.encode())})
    asset, created = submit_asset("http://X.test/a.txt", deps, webhook_base="https://api.test")
    assert created and asset.status is Status.SUBMITTED
    assert asset.url == "http://x.test/a.txt" and asset.content_type == "text/plain"
    assert deps.blobs.objects[asset.staged_key] == LIGHTHOUSE.encode()
    assert deps.queue.messages == [{"kind": "process_asset", "asset_id": asset.id, "webhook_base": "https://api.test"}]
    assert deps.store.get(asset.id).status is Status.SUBMITTED


def test_the_same_url_again_returns_the_existing_asset_without_fetching():
    deps = deps_with({"http://x.test/a.txt": ("text/plain", b"words")})
    first, _ = submit_asset("http://x.test/a.txt", deps)
    again, created = submit_asset("http://x.test/a.txt#section", deps)
    assert not created and again.id == first.id
    assert deps.fetcher.calls == ["http://x.test/a.txt"]
    assert len(deps.queue.messages) == 1


@pytest.mark.parametrize("pages, url, error", [
    ({}, "http://x.test/missing", UnreachableUrl),
    ({"http://x.test/e": ("text/plain", b"")}, "http://x.test/e", ExtractionFailed),
    ({"http://x.test/a.exe": ("application/octet-stream", b"MZ\x90\x00" + b"\x00" * 50)}, "http://x.test/a.exe",
     UnsupportedContentType),
    ({}, "not a url", InvalidInput),
])
def test_a_failed_submission_leaves_nothing_behind(pages, url, error):
    deps = deps_with(pages)
    with pytest.raises(error):
        submit_asset(url, deps)
    assert deps.store.assets == {} and deps.blobs.objects == {} and deps.queue.messages == []


def test_a_submission_that_cannot_be_queued_is_undone():
    deps = deps_with({"http://x.test/a.txt": ("text/plain", b"words")}, queue=FakeQueue(fail=True))
    with pytest.raises(UpstreamUnavailable):
        submit_asset("http://x.test/a.txt", deps)
    assert deps.store.assets == {} and deps.blobs.objects == {}


def test_the_same_bytes_behind_another_url_become_a_searchable_copy_without_new_work():
    deps = fake_deps()
    original = submitted(deps, "http://x.test/a.txt")
    assert process_asset(original, deps) is Status.SEARCHABLE
    staged, queued, embedded = len(deps.blobs.objects), len(deps.queue.messages), len(deps.embedder.calls)
    deps.fetcher.pages["http://mirror.test/copy.txt"] = ("text/plain", LIGHTHOUSE.encode())
    copy, created = submit_asset("http://mirror.test/copy.txt", deps)
    assert created and copy.id != original and copy.status is Status.SEARCHABLE
    assert copy.sha256 == deps.store.get(original).sha256 is not None
    assert [c.text for c in deps.store.chunks(copy.id)] == [c.text for c in deps.store.chunks(original)]
    assert (len(deps.blobs.objects), len(deps.queue.messages), len(deps.embedder.calls)) == (staged, queued, embedded)
    results = run_search(parse_request({"q": "lighthouse keepers", "host": "mirror.test"}), deps).results
    assert [r.asset.id for r in results] == [copy.id]


def test_the_same_bytes_as_an_asset_still_in_progress_are_processed_on_their_own():
    deps = fake_deps()
    first = submitted(deps, "http://x.test/a.txt")  # not processed yet: nothing to reuse
    second = submitted(deps, "http://mirror.test/a.txt")
    assert second != first and deps.store.get(second).status is Status.SUBMITTED
    assert len(deps.queue.messages) == 2


def submitted(deps, url="http://x.test/a.txt", text=LIGHTHOUSE):
    deps.fetcher.pages[url] = ("text/plain", text.encode())
    asset, _ = submit_asset(url, deps)
    return asset.id


def test_processing_chunks_embeds_and_makes_the_asset_searchable():
    deps = fake_deps()
    asset_id = submitted(deps)
    assert process_asset(asset_id, deps) is Status.SEARCHABLE
    asset = deps.store.get(asset_id)
    assert asset.chunk_count == len(deps.store.chunks(asset_id)) > 1
    assert all(len(c.text.split()) <= 20 for c in deps.store.chunks(asset_id))
    assert len(deps.store.vectors[asset_id]) == asset.chunk_count


def test_a_redelivered_message_changes_nothing_and_embeds_nothing():
    deps = fake_deps()
    asset_id = submitted(deps)
    process_asset(asset_id, deps)
    calls = len(deps.embedder.calls)
    before = deps.store.get(asset_id)
    assert process_asset(asset_id, deps) is Status.SEARCHABLE
    assert len(deps.embedder.calls) == calls
    assert deps.store.get(asset_id).updated_at == before.updated_at


def test_a_document_without_text_ends_in_processing_error():
    deps = fake_deps()
    asset_id = submitted(deps, text="FAIL")
    assert process_asset(asset_id, deps) is Status.PROCESSING_ERROR
    assert deps.store.get(asset_id).error == "no text"


def test_a_model_failure_is_retried_from_the_stored_chunks():
    deps = fake_deps(embedder=FakeEmbedder(fail_times=1))
    asset_id = submitted(deps)
    with pytest.raises(UpstreamUnavailable):
        process_asset(asset_id, deps)
    assert deps.store.get(asset_id).status is Status.PROCESSED
    assert process_asset(asset_id, deps) is Status.SEARCHABLE


def test_a_message_for_a_deleted_asset_is_dropped():
    assert process_asset("0" * 32, fake_deps()) is None


def pending_asset(deps):
    asset_id = submitted(deps)
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.GENERATING_EMBEDDINGS
    return asset_id


def prediction(asset_id, deps, status="succeeded", **extra):
    texts = [c.text for c in deps.store.chunks(asset_id)]
    body = {"id": deps.store.get(asset_id).prediction_id, "status": status,
            "output": [{"embedding": word_vector(t)} for t in texts]}
    body.update(extra)
    return body


def test_a_remote_embedder_gets_a_webhook_and_the_asset_waits_for_it():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = pending_asset(deps)
    texts, webhook = deps.embedder.submitted[0]
    assert webhook == f"https://api.test/webhooks/embedding/{asset_id}"
    assert texts == [c.text for c in deps.store.chunks(asset_id)]
    assert deps.store.get(asset_id).prediction_id == "p1"


def test_a_succeeded_prediction_makes_the_asset_searchable_once():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = pending_asset(deps)
    body = prediction(asset_id, deps)
    assert apply_embedding_prediction(asset_id, body, deps).status is Status.SEARCHABLE
    stamp = deps.store.get(asset_id).updated_at
    assert apply_embedding_prediction(asset_id, body, deps).status is Status.SEARCHABLE
    assert deps.store.get(asset_id).updated_at == stamp


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_a_failed_prediction_records_replicates_reason(status):
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = pending_asset(deps)
    asset = apply_embedding_prediction(asset_id, prediction(asset_id, deps, status, error="CUDA out of memory"), deps)
    assert asset.status is Status.EMBEDDINGS_ERROR
    assert status in asset.error and "CUDA out of memory" in asset.error


def test_a_late_success_cannot_undo_a_failure_and_a_late_failure_cannot_undo_success():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    failed_id = pending_asset(deps)
    apply_embedding_prediction(failed_id, prediction(failed_id, deps, "failed"), deps)
    assert apply_embedding_prediction(failed_id, prediction(failed_id, deps), deps).status is Status.EMBEDDINGS_ERROR
    ok_id = submitted(deps, url="http://x.test/b.txt", text=SOURDOUGH)
    process_asset(ok_id, deps)
    apply_embedding_prediction(ok_id, prediction(ok_id, deps), deps)
    assert apply_embedding_prediction(ok_id, prediction(ok_id, deps, "failed"), deps).status is Status.SEARCHABLE


def test_a_prediction_with_the_wrong_number_of_vectors_fails_the_asset():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = pending_asset(deps)
    body = prediction(asset_id, deps)
    body["output"] = body["output"][:1]
    asset = apply_embedding_prediction(asset_id, body, deps)
    assert asset.status is Status.EMBEDDINGS_ERROR and "vectors" in asset.error


def test_a_stale_prediction_is_ignored():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = pending_asset(deps)
    body = prediction(asset_id, deps, id="someone-else")
    assert apply_embedding_prediction(asset_id, body, deps).status is Status.GENERATING_EMBEDDINGS


def test_webhooks_for_unknown_or_malformed_ids_are_refused():
    deps = fake_deps()
    with pytest.raises(NotFound):
        apply_embedding_prediction("0" * 32, {"status": "succeeded"}, deps)
    with pytest.raises(InvalidInput):
        apply_embedding_prediction("../etc", {"status": "succeeded"}, deps)


def test_search_answers_one_result_per_asset_best_first():
    deps = fake_deps()
    for url, text in [("http://x.test/l.txt", LIGHTHOUSE), ("http://x.test/s.txt", SOURDOUGH)]:
        process_asset(submitted(deps, url, text), deps)
    results = search("sourdough starter flour", 10, deps)
    assert [r["asset"]["url"] for r in results] == ["http://x.test/s.txt", "http://x.test/l.txt"]
    assert "sourdough" in results[0]["snippet"].lower()
    assert results[0]["score"] > results[1]["score"]


def test_search_widens_until_it_has_enough_assets():
    deps = fake_deps()
    process_asset(submitted(deps, "http://x.test/l.txt", LIGHTHOUSE * 30), deps)
    process_asset(submitted(deps, "http://x.test/s.txt", SOURDOUGH), deps)
    assert len(deps.store.chunks(deps.store.get_by_url("http://x.test/l.txt").id)) > 16
    results = search("lighthouse keepers storms", 2, deps)
    assert len(results) == 2


def test_unsearchable_assets_are_not_found():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    pending_asset(deps)
    assert search("lighthouse", 5, deps) == []


@pytest.mark.parametrize("params, named", [
    ({}, "q"), ({"q": "   "}, "q"), ({"q": "x" * 1001}, "q"), ({"q": "ok", "limit": "0"}, "limit"),
    ({"q": "ok", "limit": "51"}, "limit"), ({"q": "ok", "limit": "ten"}, "limit"),
    ({"q": "ok", "mode": "fuzzy"}, "mode"),
    ({"q": "ok", "kind": "html,sculpture"}, "kind"), ({"q": "ok", "host": "bad host!"}, "host"),
    ({"q": "ok", "after": "yesterday"}, "after"), ({"q": "ok", "before": "2026-13-45"}, "before"),
    ({"q": "ok", "after": "2026-02-01", "before": "2026-01-01"}, "after"),
    ({"q": "ok", "source": "feed-1"}, "source"), ({"q": "ok", "source": "src_" + "A" * 32}, "source"),
    ({"q": "ok", "published_after": "last week"}, "published_after"),
    ({"q": "ok", "published_before": "2026-02-30"}, "published_before"),
    ({"q": "ok", "published_after": "2026-02-01", "published_before": "2026-02-01"}, "published_after"),
])
def test_bad_search_parameters_are_refused_naming_the_parameter(params, named):
    with pytest.raises(InvalidInput) as refused:
        parse_request(params)
    assert refused.value.message.startswith(named)


def test_the_source_and_publication_parameters_become_the_search_filter_and_its_cursor_key():
    from datetime import UTC, datetime

    from allthethings.domain.search import fingerprint

    source = "src_" + "0123456789abcdef" * 2
    request = parse_request({"q": "ok", "source": f" {source} ", "published_after": "2026-03-01",
                             "published_before": "2026-04-01T12:00:00+02:00", "after": "2026-01-01"})
    got = request.search_filter
    assert (got.source, got.published_after, got.published_before, got.after) == (
        source, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, 10, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC))
    assert not got.is_empty
    unfiltered = parse_request({"q": "ok"})
    assert unfiltered.search_filter.source is None and unfiltered.search_filter.is_empty
    keys = {fingerprint("ok", request.mode, parse_request({"q": "ok", **extra}).search_filter)
            for extra in ({}, {"source": source}, {"published_after": "2026-03-01"},
                          {"published_before": "2026-03-01"})}
    assert len(keys) == 4, "a cursor of one of these searches is refused by the others"


def search(query, limit, deps, **params):
    page = run_search(parse_request({"q": query, "limit": str(limit), **params}), deps)
    return [shapes.search_result(r) for r in page.results]  # as the API answers them


# -- audio and video ---------------------------------------------------------------------------

FLAC = b"fLaC\x00\x00\x00\x22" + bytes(200)
WHISPER_SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 7.5, "text": " And so my fellow Americans ask not what your country can do for you"},
    {"id": 1, "start": 7.5, "end": 10.6, "text": " ask what you can do for your country"},
]


def audio_asset(deps, url="http://x.test/jfk.flac"):
    deps.fetcher.pages[url] = ("audio/flac", FLAC)
    asset, _ = submit_asset(url, deps)
    assert process_asset(asset.id, deps, webhook_base="https://api.test") is Status.PROCESSING
    return asset.id


def transcription(asset_id, deps, status="succeeded", segments=WHISPER_SEGMENTS, **extra):
    body = {"id": deps.store.get(asset_id).prediction_id, "status": status,
            "output": {"segments": segments, "transcription": "...", "detected_language": "english"}}
    body.update(extra)
    return body


def test_a_recording_is_sent_to_whisper_by_a_presigned_url_with_a_webhook():
    deps = fake_deps()
    asset_id = audio_asset(deps)
    asset = deps.store.get(asset_id)
    assert asset.kind.value == "audio" and asset.prediction_id == "t1"
    ((audio_url, webhook),) = deps.transcriber.submitted
    assert audio_url.startswith("https://staging.test/staged/") and "x.test" not in audio_url
    assert webhook == f"https://api.test/webhooks/audio/{asset_id}"
    assert process_asset(asset_id, deps) is Status.PROCESSING
    assert len(deps.transcriber.submitted) == 1, "a redelivered message requests no second transcription"


def test_a_transcript_becomes_timed_chunks_and_the_asset_searchable():
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps()
    asset_id = audio_asset(deps)
    asset = apply_transcription_prediction(asset_id, transcription(asset_id, deps), deps)
    assert asset.status is Status.SEARCHABLE
    chunks = deps.store.chunks(asset_id)
    assert chunks[0].start_s == 0.0 and chunks[-1].end_s == 10.6
    results = search("ask what you can do for your country", 5, deps)
    assert results[0]["asset"]["id"] == asset_id and 0.0 <= results[0]["start_s"] < results[0]["end_s"] <= 10.6


def test_a_second_or_late_transcription_changes_nothing_and_requests_nothing():
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = audio_asset(deps)
    body = transcription(asset_id, deps)
    assert apply_transcription_prediction(asset_id, body, deps).status is Status.GENERATING_EMBEDDINGS
    assert apply_transcription_prediction(asset_id, body, deps).status is Status.GENERATING_EMBEDDINGS
    assert apply_transcription_prediction(asset_id, dict(body, status="failed"), deps).status \
        is Status.GENERATING_EMBEDDINGS
    assert len(deps.embedder.submitted) == 1


def test_concurrent_deliveries_of_one_transcription_request_one_embedding():
    import threading

    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = audio_asset(deps)
    body = transcription(asset_id, deps)
    threads = [threading.Thread(target=apply_transcription_prediction, args=(asset_id, body, deps))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(deps.embedder.submitted) == 1
    assert deps.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_a_failed_transcription_records_replicates_reason(status):
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps()
    asset_id = audio_asset(deps)
    asset = apply_transcription_prediction(asset_id, transcription(asset_id, deps, status, error="bad audio"), deps)
    assert asset.status is Status.PROCESSING_ERROR and status in asset.error and "bad audio" in asset.error


def test_an_error_never_shows_the_servers_file_paths():
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps()
    asset_id = audio_asset(deps)
    reason = "RuntimeError: Invalid data found when processing input: '/tmp/tmpq1x_8k/episode.wav'"
    asset = apply_transcription_prediction(asset_id, transcription(asset_id, deps, "failed", error=reason), deps)
    assert "Invalid data found when processing input" in asset.error
    assert "/tmp" not in asset.error and "episode.wav" not in asset.error


@pytest.mark.parametrize("output", [None, {"segments": "nope"}, {"segments": [{"text": "x"}]}])
def test_an_unusable_transcript_ends_in_processing_error(output):
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps()
    asset_id = audio_asset(deps)
    body = transcription(asset_id, deps)
    body["output"] = output
    assert apply_transcription_prediction(asset_id, body, deps).status is Status.PROCESSING_ERROR


def test_silence_ends_in_processing_error():
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps()
    asset_id = audio_asset(deps)
    asset = apply_transcription_prediction(asset_id, transcription(asset_id, deps, segments=[]), deps)
    assert asset.status is Status.PROCESSING_ERROR and "no speech" in asset.error


def test_a_stale_transcription_is_ignored():
    from allthethings.services.transcription import apply_transcription_prediction

    deps = fake_deps()
    asset_id = audio_asset(deps)
    body = transcription(asset_id, deps, id="an-older-prediction")
    assert apply_transcription_prediction(asset_id, body, deps).status is Status.PROCESSING


def test_an_embedding_webhook_that_beats_the_stored_prediction_id_is_still_applied():
    deps = fake_deps(embedder=FakeEmbedder(pending=True))
    asset_id = submitted(deps)
    from allthethings.services.process_asset import process_asset as run

    run(asset_id, deps)
    deps.store.assets[asset_id].status = Status.PROCESSED  # as if the webhook came before the id was stored
    deps.store.assets[asset_id].prediction_id = None
    body = {"id": "p-new", "status": "succeeded",
            "output": [{"embedding": word_vector(c.text)} for c in deps.store.chunks(asset_id)]}
    assert apply_embedding_prediction(asset_id, body, deps).status is Status.SEARCHABLE


def test_a_queued_webhook_for_a_deleted_asset_is_dropped_not_retried():
    from allthethings.services.webhooks import apply_webhook

    body = '{"id": "p1", "status": "succeeded", "output": []}'
    assert apply_webhook({"kind": "embedding", "asset_id": "0" * 32, "body": body}, fake_deps()) is None


@pytest.mark.parametrize("message", [
    {"kind": "sms", "asset_id": "0" * 32, "body": "{}"},
    {"kind": "audio", "asset_id": "0" * 32, "body": "[1, 2]"},
    {"kind": "audio", "asset_id": "0" * 32, "body": "not json"},
])
def test_a_queued_webhook_that_makes_no_sense_raises_so_it_is_dead_lettered(message):
    from allthethings.services.webhooks import apply_webhook

    with pytest.raises(ValueError):
        apply_webhook(message, fake_deps())


# -- lifecycle: retry and delete ------------------------------------------------------------------

def test_a_failed_processing_is_retried_from_a_fresh_fetch_of_its_url_and_then_succeeds():
    deps = fake_deps()
    asset_id = submitted(deps, text="FAIL")
    assert process_asset(asset_id, deps) is Status.PROCESSING_ERROR
    deps.fetcher.pages["http://x.test/a.txt"] = ("text/plain", LIGHTHOUSE.encode())  # the origin mended its page
    retried = retry_asset(asset_id, deps, webhook_base="https://api.test")
    assert retried.status is Status.SUBMITTED and retried.error is None
    assert deps.fetcher.calls == ["http://x.test/a.txt"] * 2, "fetched again"
    assert deps.queue.messages[-1] == {"kind": "process_asset", "asset_id": asset_id, "webhook_base": "https://api.test"}
    assert process_asset(asset_id, deps) is Status.SEARCHABLE


def test_a_retry_whose_staged_body_is_gone_fetches_the_url_again():
    """After a local stack restart the emulator had forgotten every staged body, and "submit it
    again" answered the failed asset (200) while a retry could never succeed."""
    deps = fake_deps()
    asset_id = submitted(deps)
    deps.blobs.objects.clear()  # the stack restarted: staged bodies gone
    assert process_asset(asset_id, deps) is Status.PROCESSING_ERROR
    assert "gone" in deps.store.get(asset_id).error
    again, queued = submit_asset("http://x.test/a.txt", deps)  # sending the URL again re-fetches it
    assert queued and again.id == asset_id and again.status is Status.SUBMITTED
    assert process_asset(asset_id, deps) is Status.SEARCHABLE


def test_a_fresh_fetch_can_be_asked_for_even_when_the_staged_bytes_are_kept():
    deps = fake_deps(embedder=FakeEmbedder(fail_times=1))
    asset_id = submitted(deps)
    with pytest.raises(UpstreamUnavailable):
        process_asset(asset_id, deps)
    fail_asset(asset_id, Status.EMBEDDINGS_ERROR, "the model was down", deps)
    deps.fetcher.pages["http://x.test/a.txt"] = ("text/plain", SOURDOUGH.encode())  # the page changed since
    before = deps.store.get(asset_id).sha256
    retried = retry_asset(asset_id, deps, refetch=True)
    assert retried.status is Status.SUBMITTED and retried.sha256 != before
    assert process_asset(asset_id, deps) is Status.SEARCHABLE
    assert "sourdough" in " ".join(c.text for c in deps.store.chunks(asset_id)).lower()


def test_a_recording_whose_transcription_failed_is_transcribed_again_without_a_new_download():
    deps = fake_deps()
    asset_id = audio_asset(deps)
    fail_asset(asset_id, Status.PROCESSING_ERROR, "transcription failed: the model timed out", deps)
    retry_asset(asset_id, deps)
    assert deps.fetcher.calls == ["http://x.test/jfk.flac"], "the staged recording is reused"


def test_a_document_cannot_be_fetched_again():
    from allthethings.services.documents import ingest_documents

    deps = fake_deps()
    (doc,) = ingest_documents({"documents": [{"id": "d1", "text": "a note"}]}, deps)
    fail_asset(doc.asset.id, Status.EMBEDDINGS_ERROR, "the model was down", deps)
    with pytest.raises(Conflict, match="send the document again"):
        retry_asset(doc.asset.id, deps, refetch=True)  # its URL, document:d1, is no place to fetch from


def test_failed_embeddings_are_retried_from_the_stored_chunks_without_extracting_again():
    deps = fake_deps(embedder=FakeEmbedder(fail_times=1))
    asset_id = submitted(deps)
    with pytest.raises(UpstreamUnavailable):
        process_asset(asset_id, deps)
    deps.store.move(asset_id, Status.EMBEDDINGS_ERROR, error="the model API failed")
    chunks = deps.store.chunks(asset_id)
    assert retry_asset(asset_id, deps).status is Status.PROCESSED
    assert process_asset(asset_id, deps) is Status.SEARCHABLE
    assert deps.store.chunks(asset_id) == chunks


@pytest.mark.parametrize("status", [Status.SUBMITTED, Status.PROCESSING, Status.GENERATING_EMBEDDINGS,
                                    Status.SEARCHABLE])
def test_only_a_failed_asset_can_be_retried(status):
    deps = fake_deps()
    asset_id = submitted(deps)
    deps.store.assets[asset_id].status = status
    queued = len(deps.queue.messages)
    with pytest.raises(Conflict, match="only a failed asset"):
        retry_asset(asset_id, deps)
    assert deps.store.get(asset_id).status is status and len(deps.queue.messages) == queued


def test_a_retry_that_cannot_be_queued_leaves_the_asset_failed_with_its_reason():
    deps = fake_deps()
    asset_id = submitted(deps, text="FAIL")
    process_asset(asset_id, deps)
    reason = deps.store.get(asset_id).error
    deps.queue.fail = True
    with pytest.raises(UpstreamUnavailable):
        retry_asset(asset_id, deps)
    after = deps.store.get(asset_id)
    assert after.status is Status.PROCESSING_ERROR and after.error == reason


def test_an_asset_whose_staged_body_expired_fails_with_a_reason_instead_of_retrying_for_ever():
    deps = fake_deps()
    asset_id = submitted(deps)
    deps.blobs.objects.clear()
    assert process_asset(asset_id, deps) is Status.PROCESSING_ERROR
    assert "staged body is gone" in deps.store.get(asset_id).error


def test_deleting_an_asset_removes_its_record_chunks_and_staged_object_and_search_forgets_it():
    deps = fake_deps()
    asset_id = submitted(deps)
    process_asset(asset_id, deps)
    key = deps.store.get(asset_id).staged_key
    delete_asset(asset_id, deps)
    assert deps.store.get(asset_id) is None and deps.store.chunks(asset_id) == [] and key not in deps.blobs.objects
    assert run_search(parse_request({"q": "lighthouse keepers"}), deps).results == []
    with pytest.raises(NotFound):
        delete_asset(asset_id, deps)


def test_messages_for_a_deleted_asset_are_dropped():
    deps = fake_deps()
    asset_id = submitted(deps)
    delete_asset(asset_id, deps)
    assert process_asset(asset_id, deps) is None


def test_a_hybrid_search_embeds_the_query_while_the_store_runs_its_keyword_half():
    import threading

    keyword_started, armed = threading.Event(), threading.Event()
    overlapped: list[bool] = []

    class SlowEmbedder(FakeEmbedder):
        def embed(self, texts):
            if armed.is_set():
                overlapped.append(keyword_started.wait(timeout=5))  # the keyword half starts meanwhile
            return super().embed(texts)

    deps = fake_deps(embedder=SlowEmbedder())
    process_asset(submitted(deps, "http://x.test/s.txt", SOURDOUGH), deps)
    keyword_search = deps.store.keyword_search

    def watched_keyword_search(*args, **kwargs):
        keyword_started.set()
        return keyword_search(*args, **kwargs)

    deps.store.keyword_search = watched_keyword_search
    armed.set()
    results = search("sourdough starter flour", 10, deps, mode="hybrid")
    assert overlapped == [True], "the query's embedding waited for the keyword half to start"
    assert [r["asset"]["url"] for r in results] == ["http://x.test/s.txt"]
