"""Long outputs through the production path (EMBEDDER_BACKEND=replicate, mpnet's 768-d vectors
and tokenizer) on the running stack. A document of 500+ chunks is embedded in groups of
EMBEDDING_GROUP_CHUNKS, one webhooked prediction after another, each delivery verified, queued
(by claim check when over CLAIM_CHECK_BYTES) and applied, and it becomes SEARCHABLE. A recording
whose Whisper delivery is over 1 MiB goes through the gateway and the webhook queue by claim
check, becomes 500+ timed chunks embedded in groups, and a phrase late in it is found at its time.

The Replicate-speaking server answers like test_replicate_path's (deterministic bag-of-words
vectors, here with as many digits as a real model's) and, for Whisper, with a long transcript,
so the tests cost seconds on two cores;
everything on the stack's side is the deployed code."""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from tests.e2e.conftest import RunningStack
from tests.e2e.test_replicate_path import SECRET, FakeReplicate
from tests.fakes import word_vector

pytestmark = pytest.mark.e2e

GROUP = 48  # EMBEDDING_GROUP_CHUNKS' default
PHRASE = "the quartermaster buried saffron beneath the juniper gatehouse"


SPOKEN = "the lighthouse cat ate marmalade beside the brass foghorn"
SPOKEN_AT = 10_000.0  # where the recording's SPOKEN is said, in seconds (of 4 hours)


def whisper_output(segments: int = 3600) -> dict:
    """A long transcript as openai/whisper delivers it: every 4 s segment with its tokens and scores,
    SPOKEN said once, at SPOKEN_AT."""
    rng = random.Random(4)
    vocabulary = "keeper storm lamp rock tide wick lens night ship harbour gale rope".split()
    items = []
    for i in range(segments):
        start = i * 4.0
        text = SPOKEN if start == SPOKEN_AT else " ".join(rng.choice(vocabulary) for _ in range(9))
        items.append({"id": i, "seek": i * 400, "start": start, "end": start + 4.0, "text": f" {text}.",
                      "tokens": list(range(50364, 50394)), "temperature": 0.0, "avg_logprob": -0.21,
                      "compression_ratio": 1.4, "no_speech_prob": 0.01})
    return {"segments": items, "transcription": "...", "detected_language": "english"}


def dense_vector(text: str) -> list[float]:
    """word_vector's direction with a little deterministic noise in every dimension: as many
    digits as a real model's vector (about 16.6 KB of JSON at 768-d), so deliveries have real sizes."""
    noise = random.Random(text)
    vector = [x + noise.uniform(-1e-3, 1e-3) for x in word_vector(text, 768)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


class LongReplicate(FakeReplicate):
    """The Replicate-speaking server of test_replicate_path, with outputs of real sizes:
    text_batch predictions get dense_vector()s, Whisper ones whisper_output()."""

    def output(self, inputs: dict) -> object:
        if "text_batch" in inputs:
            return [{"embedding": dense_vector(t)} for t in json.loads(inputs["text_batch"])]
        return whisper_output()

    def embedding_groups(self, asset_id: str, since: int = 0) -> list[list[str]]:
        return [json.loads(r["body"]["input"]["text_batch"]) for r in self.requests[since:]
                if r["body"].get("webhook", "").endswith(f"/embedding/{asset_id}")]


@pytest.fixture(scope="module")
def replicate():
    fake = LongReplicate()
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


def finish(stack: RunningStack, asset_id: str, timeout_s: float = 240) -> tuple[dict, set]:
    """The asset once it is done, and every embedded_chunks the API showed on the way."""
    progress = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        asset = stack.http.get(f"/api/assets/{asset_id}").json()
        if asset["status"] in ("SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR"):
            return asset, progress - {None}
        progress.add(asset.get("embedded_chunks"))
        time.sleep(0.2)
    raise AssertionError(f"asset {asset_id} did not finish: {asset}")


def assert_grouped(replicate: LongReplicate, asset_id: str, chunks: int, since: int) -> None:
    groups = replicate.embedding_groups(asset_id, since)
    assert len(groups) == math.ceil(chunks / GROUP), "one prediction per group of at most 48 chunks"
    assert max(len(g) for g in groups) == GROUP and sum(len(g) for g in groups) == chunks
    assert len({tuple(g) for g in groups}) == len(groups), "no group was asked for twice"


def test_a_document_of_500_chunks_is_embedded_in_groups_and_found(remote_stack, replicate):
    before = len(replicate.requests)
    answer = remote_stack.http.post("/api/documents", json={"documents": [
        {"id": "long-ledger", "title": "The long ledger", "text": long_text(33_000)}]})
    assert answer.status_code == 202, answer.text
    asset_id = answer.json()["documents"][0]["asset_id"]
    asset, progress = finish(remote_stack, asset_id)
    assert asset["status"] == "SEARCHABLE", asset
    assert asset["chunk_count"] >= 500
    assert_grouped(replicate, asset_id, asset["chunk_count"], before)
    assert len(progress) > 1, f"the API showed how many chunks have vectors: {sorted(progress)}"
    sizes = [len(d.payload) for d in replicate.deliveries if d.url.endswith(asset_id) and d.status == 202]
    assert len(sizes) == math.ceil(asset["chunk_count"] / GROUP)
    assert min(sizes) > 256 * 1024, "every delivery is over the webhook queue's 256 KiB: it went by claim check"

    results = remote_stack.http.get("/api/search", params={"q": PHRASE}).json()["results"]
    assert results and results[0]["asset"]["id"] == asset_id and PHRASE in results[0]["snippet"].lower()


def test_a_recording_whose_transcript_is_over_a_mebibyte_is_indexed_and_found_at_the_right_time(
        remote_stack, replicate, fixture_server):
    before = len(replicate.requests)
    answer = remote_stack.http.post("/api/assets", json={"url": f"{fixture_server}/jfk.flac"})
    assert answer.status_code == 202, answer.text
    asset_id = answer.json()["id"]
    asset, _ = finish(remote_stack, asset_id)
    assert asset["status"] == "SEARCHABLE", asset
    (transcript,) = [len(d.payload) for d in replicate.deliveries if d.url.endswith(f"/audio/{asset_id}")
                     and d.status == 202]
    assert transcript > 1024 * 1024, "the Whisper delivery is over SQS's 1 MiB"
    assert_grouped(replicate, asset_id, asset["chunk_count"], before)
    whisper = [r for r in replicate.requests[before:] if r["body"].get("webhook", "").endswith(f"/audio/{asset_id}")]
    assert len(whisper) == 1, "and 1 transcription: 1 + ceil(chunks / 48) predictions"

    (hit, *_) = remote_stack.http.get("/api/search", params={"q": SPOKEN}).json()["results"]
    assert hit["asset"]["id"] == asset_id and SPOKEN in hit["snippet"].lower()
    assert hit["start_s"] <= SPOKEN_AT < hit["end_s"] <= hit["start_s"] + 30
