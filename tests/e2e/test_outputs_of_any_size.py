"""A long document through the production embedding path (EMBEDDER_BACKEND=replicate, mpnet's
768-d vectors and tokenizer) on the running stack: its 500+ chunks are embedded in groups of
EMBEDDING_GROUP_CHUNKS, one webhooked prediction after another, each delivery verified, queued
(by claim check when over CLAIM_CHECK_BYTES) and applied, and the asset becomes SEARCHABLE with
every chunk findable.

The Replicate-speaking server is test_replicate_path's: deterministic bag-of-words vectors, so
the test costs seconds on two cores; everything on the stack's side is the deployed code."""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from tests.e2e.conftest import RunningStack
from tests.e2e.test_replicate_path import SECRET, FakeReplicate

pytestmark = pytest.mark.e2e

GROUP = 48  # EMBEDDING_GROUP_CHUNKS' default
PHRASE = "the quartermaster buried saffron beneath the juniper gatehouse"


@pytest.fixture(scope="module")
def replicate():
    fake = FakeReplicate()
    yield fake
    fake.server.shutdown()


@pytest.fixture(scope="module")
def remote_stack(tmp_path_factory, replicate):
    running = RunningStack(tmp_path_factory.mktemp("outputs"), EMBEDDER_BACKEND="replicate",
                           EMBEDDING_MODEL="all-mpnet-base-v2",
                           REPLICATE_API_BASE=replicate.url, REPLICATE_API_TOKEN="r8_test_token",
                           REPLICATE_WEBHOOK_SECRET=SECRET)
    yield running
    running.stop()


def long_text(words: int) -> str:
    """Prose-like text of `words` words, with PHRASE once, near the end."""
    rng = random.Random(14)
    vocabulary = [f"{a}{b}" for a in ("tor", "mel", "quin", "bra", "sol", "vex", "dun", "lor")
                  for b in ("ath", "ine", "ost", "ule", "arn", "ix", "oma", "eld")]
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        sentences.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(8, 16))).capitalize() + ".")
    sentences.insert(len(sentences) - 40, PHRASE.capitalize() + ".")
    return " ".join(sentences)


def test_a_document_of_500_chunks_is_embedded_in_groups_and_found(remote_stack, replicate):
    before = len(replicate.requests)
    answer = remote_stack.http.post("/api/documents", json={"documents": [
        {"id": "long-ledger", "title": "The long ledger", "text": long_text(33_000)}]})
    assert answer.status_code == 202, answer.text
    asset_id = answer.json()["documents"][0]["asset_id"]
    progress = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        asset = remote_stack.http.get(f"/api/assets/{asset_id}").json()
        if asset["status"] != "GENERATING_EMBEDDINGS" and asset["status"] != "PROCESSED":
            break
        progress.add(asset.get("embedded_chunks"))
        time.sleep(0.2)
    assert asset["status"] == "SEARCHABLE", asset
    chunks = asset["chunk_count"]
    assert chunks >= 500

    predictions = [r["body"] for r in replicate.requests[before:] if r["body"].get("webhook", "").endswith(asset_id)]
    groups = [json.loads(p["input"]["text_batch"]) for p in predictions]
    assert len(predictions) == math.ceil(chunks / GROUP), "one prediction per group of at most 48 chunks"
    assert max(len(g) for g in groups) == GROUP and sum(len(g) for g in groups) == chunks
    assert len({tuple(g) for g in groups}) == len(groups), "no group was asked for twice"
    assert len(progress - {None}) > 1, f"the API showed how many chunks have vectors: {sorted(progress - {None})}"
    biggest = max(len(payload) for url, payload, _ in replicate.deliveries if url.endswith(asset_id))
    assert biggest > 192 * 1024, "a group's delivery is over CLAIM_CHECK_BYTES: it travelled by claim check"

    results = remote_stack.http.get("/api/search", params={"q": PHRASE}).json()["results"]
    assert results and results[0]["asset"]["id"] == asset_id and PHRASE in results[0]["snippet"].lower()
