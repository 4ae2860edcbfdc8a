"""Document ingestion: the request rules, idempotency on id, batch embedding, and no half-written record."""

import json

import pytest

from allthethings import bootstrap
from allthethings.config import Settings
from allthethings.domain.assets import Status
from allthethings.domain.documents import Document, parse_batch
from allthethings.domain.errors import InvalidInput, UpstreamUnavailable
from allthethings.entrypoints import shapes
from allthethings.services.documents import embed_documents, ingest_documents
from allthethings.services.search import parse_request, search
from tests.fakes import FakeEmbedder, FakeQueue, fake_deps
from tests.unit.test_handlers import KEY, call

SETTINGS = Settings(chunk_tokens=20, chunk_overlap=4, documents_max_per_request=5, document_max_chars=400,
                    api_keys=f"unit={KEY}")


def nested(depth: int) -> dict:
    """{"a": {"a": ... {}}}, `depth` objects deep."""
    inner: dict = {}
    for _ in range(depth - 1):
        inner = {"a": inner}
    return inner


def docs(*texts, **fields):
    return {"documents": [{"text": t, **fields} if i == 0 else {"text": t} for i, t in enumerate(texts)]}


@pytest.fixture
def deps():
    d = fake_deps(settings=SETTINGS)
    with bootstrap.use(d):
        yield d


def run_queue(deps):
    """What the processing queue would do with the messages ingestion sent."""
    while deps.queue.messages:
        message = deps.queue.messages.pop(0)
        embed_documents(message["asset_ids"], deps, webhook_base=message["webhook_base"])


def test_documents_become_searchable_with_their_metadata_after_one_batch_embedding(deps):
    body = {"documents": [
        {"id": "faq-1", "title": "Refunds", "text": "Refunds reach your card within five working days.",
         "metadata": {"lang": "en", "tags": ["money"]}},
        {"id": 42, "text": "Parcels to the islands travel by ferry twice a week."},
        {"text": "The lighthouse keeper trimmed the wick every evening."}]}
    results = ingest_documents(body, deps, webhook_base="https://api.test")
    assert [r.result for r in results] == ["created"] * 3
    assert [r.document_id for r in results][:2] == ["faq-1", "42"]
    assert results[2].document_id.startswith("sha256:")
    assert all(r.asset.status is Status.PROCESSED for r in results)
    assert deps.queue.messages == [{"kind": "embed_documents", "asset_ids": [r.asset.id for r in results],
                                     "webhook_base": "https://api.test"}]
    run_queue(deps)
    assert len(deps.embedder.calls) == 1, "every chunk of the batch in one model call"
    assert all(deps.store.get(r.asset.id).status is Status.SEARCHABLE for r in results)
    hits = [shapes.search_result(r) for r in search(parse_request({"q": "card refunds"}), deps).results]
    top = hits[0]["asset"]
    assert top["url"] == "document:faq-1" and top["title"] == "Refunds"
    assert top["metadata"] == {"lang": "en", "tags": ["money"]}
    assert deps.metrics.counts == {"assets_submitted": 3, "assets_searchable": 3}


def test_sending_the_same_documents_again_changes_nothing_and_queues_nothing(deps):
    body = docs("One text about ferries.", "Another about lighthouses.", id="a")
    first = ingest_documents(body, deps)
    run_queue(deps)
    again = ingest_documents(body, deps)
    assert [r.result for r in again] == ["unchanged", "unchanged"]
    assert [r.asset.id for r in again] == [r.asset.id for r in first]
    assert [r.asset.status for r in again] == [Status.SEARCHABLE] * 2
    assert deps.queue.messages == [] and len(deps.embedder.calls) == 1


def test_a_changed_document_replaces_its_indexed_version(deps):
    (old,) = ingest_documents({"documents": [{"id": "a", "text": "The ferry leaves at noon."}]}, deps)
    run_queue(deps)
    (new,) = ingest_documents({"documents": [{"id": "a", "text": "The ferry leaves at dawn."}]}, deps)
    assert new.result == "updated" and new.asset.id != old.asset.id
    assert deps.store.get(old.asset.id) is None and deps.store.get_by_url("document:a").id == new.asset.id
    run_queue(deps)
    assert [c.text for c in deps.store.chunks(new.asset.id)] == ["The ferry leaves at dawn."]
    (meta,) = ingest_documents({"documents": [{"id": "a", "text": "The ferry leaves at dawn.",
                                               "metadata": {"v": 2}}]}, deps)
    assert meta.result == "updated", "metadata is part of what a document is"


def test_a_failed_document_sent_again_is_indexed_again(deps):
    deps.embedder.fail_times = 1
    (first,) = ingest_documents({"documents": [{"id": "a", "text": "Storms cut the island off."}]}, deps)
    with pytest.raises(UpstreamUnavailable):
        run_queue(deps)  # the queue would retry, then dead-letter; the sweeper fails it in the end
    deps.store.move(first.asset.id, Status.EMBEDDINGS_ERROR, error="gave up")
    (again,) = ingest_documents({"documents": [{"id": "a", "text": "Storms cut the island off."}]}, deps)
    assert again.result == "updated"
    run_queue(deps)
    assert deps.store.get(again.asset.id).status is Status.SEARCHABLE


def test_when_the_queue_refuses_no_record_of_the_request_is_left(deps):
    deps.queue = FakeQueue(fail=True)
    with pytest.raises(UpstreamUnavailable):
        ingest_documents(docs("First text.", "Second text."), deps)
    assert deps.store.assets == {} and deps.store.chunk_rows == {}


def test_a_webhook_backend_gets_one_prediction_per_document(deps):
    deps.embedder = FakeEmbedder(pending=True)
    deps.embedder.asynchronous = True
    ingest_documents(docs("First text.", "Second text."), deps, webhook_base="https://api.test")
    message = deps.queue.messages[0]
    statuses = embed_documents(message["asset_ids"], deps, webhook_base="https://api.test")
    assert list(statuses.values()) == [Status.GENERATING_EMBEDDINGS] * 2
    assert [url for _, url in deps.embedder.submitted] == [
        f"https://api.test/webhooks/embedding/{asset_id}" for asset_id in message["asset_ids"]]
    assert deps.metrics.counts["predictions_created"] == 2


def test_embedding_skips_documents_that_moved_on_or_are_gone(deps):
    results = ingest_documents(docs("First text.", "Second text."), deps)
    deps.queue.messages.clear()
    deps.store.delete(results[0].asset.id)
    assert embed_documents([r.asset.id for r in results] * 2, deps) == {results[1].asset.id: Status.SEARCHABLE}
    assert embed_documents([results[1].asset.id], deps) == {results[1].asset.id: Status.SEARCHABLE}
    assert len(deps.embedder.calls) == 1


@pytest.mark.parametrize(("body", "words"), [
    ([], "the body must be"),
    ({"docs": []}, "the body must be"),
    ({"documents": []}, "must not be empty"),
    ({"documents": [{"text": "x"}], "mode": "fast"}, "mode is not a field"),
    ({"documents": [{"text": f"t{i}"} for i in range(6)]}, "at most 5"),
    ({"documents": ["just text"]}, "documents[0] must be an object"),
    ({"documents": [{"title": "no text"}]}, "documents[0].text must be a non-empty string"),
    ({"documents": [{"text": "  "}]}, "documents[0].text must be a non-empty string"),
    ({"documents": [{"text": 5}]}, "documents[0].text must be a non-empty string"),
    ({"documents": [{"text": "x" * 401}]}, "documents[0].text is 401 characters; at most 400"),
    ({"documents": [{"text": "x", "body": "y"}]}, "documents[0].body is not a document field"),
    ({"documents": [{"text": "x", "title": 3}]}, "documents[0].title must be a string"),
    ({"documents": [{"text": "x", "title": "t" * 1001}]}, "documents[0].title must be a string"),
    ({"documents": [{"text": "x", "metadata": ["a"]}]}, "documents[0].metadata must be an object"),
    ({"documents": [{"text": "x", "metadata": {"k": "v" * 17000}}]}, "larger than 16 KiB"),
    ({"documents": [{"text": "x", "metadata": nested(260)}]}, "documents[0].metadata is nested deeper than 8"),
    ({"documents": [{"text": "x", "metadata": nested(9)}]}, "documents[0].metadata is nested deeper than 8"),
    ({"documents": [{"text": "x", "metadata": {"l": [[[[[[[[1]]]]]]]]}}]}, "nested deeper than 8"),
    ({"documents": [{"text": "x", "metadata": {f"k{i}": i for i in range(257)}}]}, "more than 256 keys"),
    ({"documents": [{"text": "x", "id": ""}]}, "documents[0].id must be a string"),
    ({"documents": [{"text": "x", "id": "a\nb"}]}, "documents[0].id must be a string"),
    ({"documents": [{"text": "x", "id": "i" * 257}]}, "documents[0].id must be a string"),
    ({"documents": [{"text": "x", "id": True}]}, "documents[0].id must be a string"),
    ({"documents": [{"text": "x", "id": 1.5}]}, "documents[0].id must be a string"),
    ({"documents": [{"text": "x", "id": "a"}, {"text": "y", "id": "a"}]}, "documents[1].id 'a' repeats documents[0]"),
    ({"documents": [{"text": "same"}, {"text": "same"}]}, "repeats documents[0]"),
])
def test_each_bad_request_is_a_400_naming_the_document_and_field_and_stores_nothing(deps, body, words):
    status, answer = call("POST", "/api/documents", json.dumps(body))
    assert status == 400, answer
    assert words in answer["error"]["message"]
    assert deps.store.assets == {} and deps.queue.messages == []


def test_every_bad_document_is_named_at_once():
    with pytest.raises(InvalidInput) as caught:
        parse_batch({"documents": [{"text": ""}, {"text": "fine"}, {"title": "x"}]}, 10, 100)
    assert "documents[0].text" in caught.value.message and "documents[2].text" in caught.value.message


def test_the_http_route_answers_202_with_a_status_per_document_in_order(deps):
    status, answer = call("POST", "/api/documents", json.dumps(docs("First text.", "Second text.", id="one")))
    assert status == 202
    assert [(d["id"], d["status"], d["result"]) for d in answer["documents"]] == [
        ("one", "PROCESSED", "created"), (answer["documents"][1]["id"], "PROCESSED", "created")]
    assert call("POST", "/api/documents", "not json")[0] == 400
    assert call("POST", "/api/documents", json.dumps(docs("x")), key=None)[0] == 403


def test_a_document_id_is_kept_apart_from_urls_and_other_ids():
    assert Document(id="a/b?c", text="t").url == "document:a%2Fb%3Fc"
    assert Document(id="a", text="t").digest != Document(id="a", text="t", title="T").digest


def test_a_document_left_half_stored_by_a_dead_request_fails_visibly_and_can_be_sent_again(deps):
    from datetime import timedelta

    from allthethings.domain.assets import Asset, Kind, now
    from allthethings.services.process_asset import process_asset

    stale = now() - timedelta(minutes=10)
    deps.store.add(Asset(id="d" * 32, url="document:a", status=Status.PROCESSING, created_at=stale,
                         updated_at=stale, kind=Kind.TEXT, sha256=Document(id="a", text="The tide.").digest))
    assert process_asset("d" * 32, deps) is Status.PROCESSING_ERROR  # what the sweeper's message leads to
    assert "send the document again" in deps.store.get("d" * 32).error
    (again,) = ingest_documents({"documents": [{"id": "a", "text": "The tide."}]}, deps)
    assert again.result == "updated" and again.asset.status is Status.PROCESSED


def test_metadata_at_the_limits_is_kept_and_shown_whole(deps):
    within = {"deep": nested(7), **{f"k{i}": i for i in range(200)}}
    body = {"documents": [{"id": "ok", "text": "x", "metadata": within}]}
    status, answer = call("POST", "/api/documents", json.dumps(body))
    assert status == 202, answer
    assert call("GET", f"/api/assets/{answer['documents'][0]['asset_id']}")[1]["metadata"] == within


def test_a_stored_record_with_unshowable_metadata_cannot_break_listing_or_search_for_others(deps):
    """A record written before the limits (or by hand): 260 levels deep broke every page and
    every search it was on with a 500 ("Maximum serialization depth exceeded")."""
    call("POST", "/api/documents", json.dumps(docs("card refunds take five days", id="fine")))
    call("POST", "/api/documents", json.dumps(docs("refunds for a card are quick", id="poison")))
    poison = deps.store.get_by_url("document:poison")
    deps.store.assets[poison.id].metadata = nested(260)
    run_queue(deps)
    status, page = call("GET", "/api/assets")
    assert status == 200 and len(page["assets"]) == 2
    shown = {a["url"]: a.get("metadata") for a in page["assets"]}
    assert "nested deeper than 8" in shown["document:poison"]["unshown"]
    assert call("GET", f"/api/assets/{poison.id}")[0] == 200
    status, found = call("GET", "/api/search?q=card+refunds")
    assert status == 200 and {r["asset"]["url"] for r in found["results"]} == {"document:fine", "document:poison"}
