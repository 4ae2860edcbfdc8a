"""Outputs of any size, with fakes: a webhook backend embeds an asset in groups of at most
EMBEDDING_GROUP_CHUNKS chunks, one prediction after another, and attaches every vector once
the last group arrives; a delivery too large for the webhook queue travels by claim check."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from allthethings.config import Settings
from allthethings.domain.assets import Asset, Chunk, Kind, Status
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.services.documents import embed_documents, ingest_documents
from allthethings.services.embeddings import apply_embedding_prediction, group_key, request_embeddings
from allthethings.services.sweeper import sweep
from allthethings.services.webhooks import MissingDelivery, apply_webhook, foreign_delivery, receive_webhook
from tests.fakes import FakeEmbedder, FakePredictions, FakeQueue, fake_deps, word_vector

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GROUP = 3


def settings(**extra):
    return Settings(chunk_tokens=20, chunk_overlap=4, embedding_group_chunks=GROUP, replicate_webhook_secret=SECRET,
                    api_url="https://api.test", **extra)


def remote(**extra):
    return fake_deps(settings=settings(**extra), embedder=FakeEmbedder(pending=True))


def processed(deps, count, url="http://x.test/long.txt", filler=""):
    """A PROCESSED text asset with `count` chunks of distinct words (and `filler`)."""
    asset = Asset.new(url, content_type="text/plain", kind=Kind.TEXT, staged_key="staged/x", size_bytes=1)
    deps.store.add(asset)
    deps.store.move(asset.id, Status.PROCESSING)
    texts = [f"chunk{i} words about topic{i}{filler}" for i in range(count)]
    deps.store.put_chunks(asset.id, [Chunk(asset.id, i, text) for i, text in enumerate(texts)])
    deps.store.move(asset.id, Status.PROCESSED, chunk_count=count)
    return asset.id


def delivery(deps, asset_id, texts=None, status="succeeded", prediction_id="current"):
    """The prediction Replicate delivers for `texts` (default: the asset's current group)."""
    asset = deps.store.get(asset_id)
    if texts is None:
        texts = deps.embedder.submitted[-1][0]
    return {"id": asset.prediction_id if prediction_id == "current" else prediction_id, "status": status,
            "input": {"text_batch": json.dumps(texts)},
            "output": [{"embedding": word_vector(t)} for t in texts] if status == "succeeded" else None}


def signed(body: str, msg_id: str = "msg_1") -> dict:
    stamp = datetime.now(UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(SECRET).sign(msg_id, stamp, body), "content-type": "application/json"}


def test_a_webhook_backend_is_asked_in_groups_one_after_another_and_the_last_makes_the_asset_searchable():
    deps = remote()
    asset_id = processed(deps, 10)
    texts = [c.text for c in deps.store.chunks(asset_id)]
    assert request_embeddings(asset_id, deps, "https://api.test") is Status.GENERATING_EMBEDDINGS
    progress = []
    while deps.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS:
        asset = deps.store.get(asset_id)
        progress.append((asset.embedded_chunks, asset.to_public()["embedded_chunks"]))
        apply_embedding_prediction(asset_id, delivery(deps, asset_id), deps, "https://api.test")
    assert [group for group, _ in deps.embedder.submitted] == [texts[0:3], texts[3:6], texts[6:9], texts[9:10]]
    assert {url for _, url in deps.embedder.submitted} == {f"https://api.test/webhooks/embedding/{asset_id}"}
    assert progress == [(0, 0), (3, 3), (6, 6), (9, 9)]
    assert deps.metrics.counts["predictions_created"] == 4  # ceil(10 / 3)
    assert deps.store.get(asset_id).status is Status.SEARCHABLE
    assert deps.store.vectors[asset_id] == [word_vector(t) for t in texts]
    assert not [key for key in deps.blobs.objects if key.startswith("embeddings/")], "kept groups are deleted"


def test_an_asset_of_one_group_costs_one_prediction_and_keeps_nothing():
    deps = remote()
    asset_id = processed(deps, GROUP)
    request_embeddings(asset_id, deps, None)
    assert apply_embedding_prediction(asset_id, delivery(deps, asset_id), deps).status is Status.SEARCHABLE
    assert len(deps.embedder.submitted) == 1 and deps.blobs.objects == {}


def test_a_repeated_or_stale_group_delivery_changes_nothing():
    deps = remote()
    asset_id = processed(deps, 7)
    request_embeddings(asset_id, deps, None)
    first = delivery(deps, asset_id)
    apply_embedding_prediction(asset_id, first, deps)
    after = deps.store.get(asset_id)
    assert after.embedded_chunks == 3 and after.prediction_id == "p2"
    apply_embedding_prediction(asset_id, first, deps)  # redelivered: no longer the asset's prediction
    assert deps.store.get(asset_id) == after and len(deps.embedder.submitted) == 2
    assert foreign_delivery("embedding", after, first, deps) == "another prediction than the asset's"


def test_without_a_stored_prediction_id_a_delivery_must_have_embedded_the_current_groups_texts():
    deps = remote()
    asset_id = processed(deps, 7)
    request_embeddings(asset_id, deps, None)
    first = delivery(deps, asset_id)
    apply_embedding_prediction(asset_id, first, deps)
    deps.store.move(asset_id, Status.GENERATING_EMBEDDINGS, prediction_id=None)  # created through Hookdeck
    asset = deps.store.get(asset_id)
    texts = [c.text for c in deps.store.chunks(asset_id)]
    assert foreign_delivery("embedding", asset, delivery(deps, asset_id, texts[3:6], prediction_id="h2"), deps) \
        is None
    for other in (texts[0:3], texts[4:7], texts[3:6] + ["not a chunk"], []):
        assert foreign_delivery("embedding", asset, delivery(deps, asset_id, other, prediction_id="hx"), deps) \
            == "it embedded other texts than the asset's chunks"


def test_a_group_with_the_wrong_number_of_vectors_fails_the_asset_with_the_reason():
    deps = remote()
    asset_id = processed(deps, 7)
    request_embeddings(asset_id, deps, None)
    body = delivery(deps, asset_id)
    body["output"] = body["output"][:2]
    asset = apply_embedding_prediction(asset_id, body, deps)
    assert asset.status is Status.EMBEDDINGS_ERROR
    assert asset.error == "the model returned 2 vectors for the 3 chunks from chunk 0"


def test_a_kept_group_that_is_lost_fails_the_asset_so_that_a_retry_embeds_it_again():
    deps = remote()
    asset_id = processed(deps, 5)
    request_embeddings(asset_id, deps, None)
    apply_embedding_prediction(asset_id, delivery(deps, asset_id), deps)
    del deps.blobs.objects[group_key(asset_id, 0)]
    asset = apply_embedding_prediction(asset_id, delivery(deps, asset_id), deps)
    assert asset.status is Status.EMBEDDINGS_ERROR
    assert f"embeddings/{asset_id}/0 is not in the staging bucket" in asset.error and "retry" in asset.error


def test_a_group_failed_by_the_model_fails_the_asset():
    deps = remote()
    asset_id = processed(deps, 5)
    request_embeddings(asset_id, deps, None)
    apply_embedding_prediction(asset_id, delivery(deps, asset_id), deps)
    failed = dict(delivery(deps, asset_id), status="failed", error="CUDA error: out of memory")
    asset = apply_embedding_prediction(asset_id, failed, deps)
    assert asset.status is Status.EMBEDDINGS_ERROR and "CUDA error" in asset.error


def test_a_first_group_delivered_before_its_request_was_recorded_is_not_overwritten():
    """The webhook can be faster than the answer to the request that created its prediction."""
    deps = remote()
    asset_id = processed(deps, 5)
    embedder = deps.embedder
    submit = embedder.submit

    def fast(texts, webhook_url):
        pending = submit(texts, webhook_url)
        if len(embedder.submitted) == 1:  # the first group's result arrives before submit returns
            body = {"id": None, "status": "succeeded", "input": {"text_batch": json.dumps(list(texts))},
                    "output": [{"embedding": word_vector(t)} for t in texts]}
            apply_embedding_prediction(asset_id, body, deps)
        return pending

    embedder.submit = fast
    request_embeddings(asset_id, deps, None)
    asset = deps.store.get(asset_id)
    assert asset.embedded_chunks == 3 and asset.prediction_id == "p2", "the second group is the one awaited"


def test_a_local_embedder_embeds_every_chunk_in_one_call():
    deps = fake_deps(settings=settings())
    asset_id = processed(deps, 10)
    assert request_embeddings(asset_id, deps, None) is Status.SEARCHABLE
    assert [len(call) for call in deps.embedder.calls] == [10]


def test_the_bulk_documents_path_never_puts_more_than_a_group_in_one_prediction():
    deps = remote()
    long_text = " ".join(f"word{i}" for i in range(120))
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate([long_text, "a short one", long_text[:300]])]
    results = ingest_documents({"documents": documents}, deps)
    ids = [r.asset.id for r in results]
    statuses = embed_documents(ids, deps)
    assert set(statuses.values()) == {Status.GENERATING_EMBEDDINGS}
    while any(deps.store.get(i).status is Status.GENERATING_EMBEDDINGS for i in ids):
        for asset_id in ids:
            asset = deps.store.get(asset_id)
            if asset.status is Status.GENERATING_EMBEDDINGS:
                texts = deps.embedder.submitted[int(asset.prediction_id[1:]) - 1][0]
                apply_embedding_prediction(asset_id, delivery(deps, asset_id, texts), deps)
    assert {deps.store.get(i).status for i in ids} == {Status.SEARCHABLE}
    assert max(len(texts) for texts, _ in deps.embedder.submitted) == GROUP
    chunks = [deps.store.get(i).chunk_count for i in ids]
    assert len(deps.embedder.submitted) == sum(-(-n // GROUP) for n in chunks) > len(ids)


def test_the_sweeper_applies_a_group_whose_webhook_was_lost_and_requests_the_next():
    deps = remote(stuck_after_s=900, give_up_after_s=6 * 3600)
    deps.predictions = FakePredictions()
    asset_id = processed(deps, 5)
    request_embeddings(asset_id, deps, None)
    for _ in range(2):
        asset = deps.store.get(asset_id)
        deps.predictions.predictions[asset.prediction_id] = delivery(deps, asset_id)
        report = sweep(deps, at=asset.updated_at + timedelta(seconds=901))
        assert report.finished == [asset_id]
    assert deps.store.get(asset_id).status is Status.SEARCHABLE
    assert deps.embedder.submitted[1][1] == f"https://api.test/webhooks/embedding/{asset_id}"


def test_the_sweeper_leaves_an_asset_for_the_next_sweep_when_the_next_group_cannot_be_requested():
    deps = remote(stuck_after_s=900, give_up_after_s=6 * 3600)
    deps.predictions = FakePredictions()
    asset_id = processed(deps, 5)
    request_embeddings(asset_id, deps, None)
    asset = deps.store.get(asset_id)
    deps.predictions.predictions[asset.prediction_id] = delivery(deps, asset_id)

    def down(texts, webhook_url):
        raise UpstreamUnavailable("Replicate refused POST /predictions: HTTP 503")

    deps.embedder.submit = down
    report = sweep(deps, at=asset.updated_at + timedelta(seconds=901))
    assert report.unreachable == [asset_id]
    assert deps.store.get(asset_id).prediction_id == asset.prediction_id, "still waiting on the same group"


# -- the claim check ----------------------------------------------------------------------------

def waiting_delivery(deps, count):
    asset_id = processed(deps, count, filler=" and more words" * 40)
    request_embeddings(asset_id, deps, None)
    return asset_id, json.dumps(delivery(deps, asset_id))


def test_a_delivery_over_the_claim_check_size_is_stored_and_a_small_pointer_is_queued_then_applied():
    deps = remote(claim_check_bytes=1024)
    asset_id, body = waiting_delivery(deps, 3)
    assert len(body) > 1024
    receive_webhook("embedding", asset_id, body.encode(), signed(body), deps, webhook_base="https://api.test")
    (message,) = deps.webhooks.messages
    assert "body" not in message and len(json.dumps(message)) < 1024
    assert message["body_key"].startswith(f"deliveries/{asset_id}/msg_1-")
    assert deps.blobs.objects[message["body_key"]] == body.encode()
    assert message["prediction_id"] == "p1" and message["body_bytes"] == len(body)
    assert apply_webhook(message, deps).status is Status.SEARCHABLE
    assert message["body_key"] not in deps.blobs.objects, "the applied delivery's body is deleted"


def test_a_delivery_under_the_claim_check_size_travels_in_the_message():
    deps = remote()
    asset_id, body = waiting_delivery(deps, 3)
    receive_webhook("embedding", asset_id, body.encode(), signed(body), deps)
    (message,) = deps.webhooks.messages
    assert message["body"] == body and "body_key" not in message and deps.blobs.objects == {}


def test_a_missing_claimed_body_of_a_delivery_still_due_fails_clearly_to_be_retried_then_dead_lettered(caplog):
    deps = remote(claim_check_bytes=1024)
    asset_id, body = waiting_delivery(deps, 3)
    receive_webhook("embedding", asset_id, body.encode(), signed(body), deps)
    (message,) = deps.webhooks.messages
    deps.blobs.objects.clear()
    with pytest.raises(MissingDelivery, match="is missing from the staging bucket"):
        apply_webhook(message, deps)
    assert "is missing from the staging bucket" in caplog.text
    assert deps.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS


def test_a_missing_claimed_body_of_a_delivery_applied_already_is_dropped():
    deps = remote(claim_check_bytes=1024)
    asset_id, body = waiting_delivery(deps, 3)
    receive_webhook("embedding", asset_id, body.encode(), signed(body), deps)
    (message,) = deps.webhooks.messages
    apply_webhook(message, deps)
    assert apply_webhook(message, deps).status is Status.SEARCHABLE  # SQS delivered the message again


def test_when_the_queue_refuses_a_claim_checked_delivery_its_body_is_not_left_behind():
    deps = remote(claim_check_bytes=1024)
    asset_id, body = waiting_delivery(deps, 3)
    deps.webhooks = FakeQueue(fail=True)
    with pytest.raises(UpstreamUnavailable):
        receive_webhook("embedding", asset_id, body.encode(), signed(body), deps)
    assert deps.blobs.objects == {}


def test_a_transcript_over_a_mebibyte_is_claim_checked_and_becomes_timed_chunks():
    deps = fake_deps(settings=settings())
    asset = Asset.new("http://x.test/long.mp3", content_type="audio/mpeg", kind=Kind.AUDIO,
                      staged_key="staged/long.mp3", size_bytes=1)
    deps.store.add(asset)
    deps.store.move(asset.id, Status.PROCESSING, prediction_id="t1")
    segments = [{"id": i, "start": i * 4.0, "end": i * 4.0 + 4.0, "text": f" sentence number {i} of the talk",
                 "tokens": list(range(50000 + i, 50030 + i)), "avg_logprob": -0.2, "no_speech_prob": 0.01}
                for i in range(4000)]
    body = json.dumps({"id": "t1", "status": "succeeded", "input": {"audio": "https://staging.test/staged/long.mp3"},
                       "output": {"segments": segments, "transcription": "...", "detected_language": "english"}})
    assert len(body) > 1024 * 1024
    receive_webhook("audio", asset.id, body.encode(), signed(body), deps)
    (message,) = deps.webhooks.messages
    assert "body_key" in message and len(json.dumps(message)) < deps.settings.claim_check_bytes
    done = apply_webhook(message, deps)
    assert done.status is Status.SEARCHABLE and done.chunk_count > 100
    assert deps.store.chunks(asset.id)[-1].end_s == 16000.0
