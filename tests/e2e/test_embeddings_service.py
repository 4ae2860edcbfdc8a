"""The embeddings service and bulk documents on the running stack: OpenAI's own client, the JSONL
CLI with an interruption, Prometheus metrics, and a second stack whose backend is the first one's
/v1 (one setting moves indexing, search and /v1/embeddings to an OpenAI-compatible upstream)."""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import openai
import pytest

from allthethings.adapters.models import model_dir
from allthethings.adapters.openai_upstream import OpenAICompatibleEmbedder
from tests.e2e.conftest import REPO, RunningStack

MINILM = "all-MiniLM-L6-v2"
SENTENCES = ["A man with a hard hat is dancing.", "A young child is riding a horse.",
             "The lighthouse keeper trimmed the wick every evening.", "Parcels to the islands travel by ferry."]


@pytest.fixture(scope="module")
def direct():
    """The model itself, in this process: what the API's vectors must equal."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir(MINILM)), device="cpu")
    return lambda texts: model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)


def test_the_openai_client_gets_the_direct_models_vectors_single_and_batched(client, direct):
    single = client.embeddings.create(input=SENTENCES[0], model=MINILM)  # the client asks for base64
    assert single.model == MINILM and len(single.data) == 1
    np.testing.assert_allclose(single.data[0].embedding, direct(SENTENCES[:1])[0], atol=1e-5)
    batch = client.embeddings.create(input=SENTENCES, model=MINILM, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2, 3]
    np.testing.assert_allclose([d.embedding for d in batch.data], direct(SENTENCES), atol=1e-5)
    assert batch.usage.prompt_tokens == batch.usage.total_tokens > len(" ".join(SENTENCES).split()) + 2 * 4 - 1


def test_dimensions_and_both_encodings_through_the_client(client, direct):
    same = client.embeddings.create(input=SENTENCES[1], model=f"sentence-transformers/{MINILM}", dimensions=384,
                                    encoding_format="base64")  # asked for explicitly, the client leaves it encoded
    decoded = np.frombuffer(base64.b64decode(same.data[0].embedding), dtype="<f4")
    np.testing.assert_allclose(decoded, direct(SENTENCES[1:2])[0], atol=1e-5)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(input=SENTENCES[1], model=MINILM, dimensions=128)
    assert caught.value.body["param"] == "dimensions" and "shortened vectors" in caught.value.body["message"]


def test_base64_over_raw_http_is_little_endian_float32(stack, direct):
    answer = stack.http.post("/v1/embeddings", json={"input": SENTENCES[2], "model": MINILM,
                                                     "encoding_format": "base64"}).json()
    raw = base64.b64decode(answer["data"][0]["embedding"])
    np.testing.assert_allclose(struct.unpack("<384f", raw), direct(SENTENCES[2:3])[0], atol=1e-5)


def test_errors_reach_the_client_as_openais_exceptions(stack, client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(input="x", model="text-embedding-ada-002")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="at most 256 tokens"):
        client.embeddings.create(input="word " * 400, model=MINILM)
    with pytest.raises(openai.BadRequestError, match="at most 256 are accepted"):
        client.embeddings.create(input=["x"] * 257, model=MINILM)
    stranger = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="not-a-key-of-this-stack", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.embeddings.create(input="x", model=MINILM)
    assert refused.value.code == "invalid_api_key"


def test_the_models_listing_names_the_index_model_with_its_limits(client):
    (model,) = client.models.list().data
    assert model.id == MINILM
    assert (model.dimensions, model.max_input_tokens) == (384, 256)
    assert client.models.retrieve(MINILM).id == MINILM


def write_jsonl(path, count, prefix):
    with open(path, "w") as f:
        for i in range(count):
            f.write(json.dumps({"id": f"{prefix}-{i}", "title": f"Note {i}",
                                "text": f"Note {i} of {prefix}: the ferry to island {i} leaves at {i % 24}:00.",
                                "metadata": {"n": i}}) + "\n")
        f.write("{broken\n")


def cli(stack, path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared"), "ALLTHETHINGS_API_URL": stack.url,
           "ALLTHETHINGS_API_KEY": stack.api_key}
    return subprocess.Popen([sys.executable, "-m", "devstack", "index", str(path), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_cli_streams_a_jsonl_file_and_carries_on_after_an_interruption(stack, tmp_path):
    path = tmp_path / "notes.jsonl"
    write_jsonl(path, 600, "cli")
    progress = tmp_path / "notes.jsonl.progress"
    first = cli(stack, path, "--batch", "5", "--in-flight", "1")
    deadline = time.monotonic() + 60
    while not progress.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    stopped_at = json.loads(progress.read_text())
    assert 0 < stopped_at["offset"] < path.stat().st_size

    second = cli(stack, path, "--quiet")
    _, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    assert f"resuming {path} at byte {stopped_at['offset']:,}" in err
    assert "line 601: not JSON" in err and not progress.exists()
    done = err.strip().splitlines()[-1]
    assert "rejected" in done

    third = cli(stack, path, "--quiet")
    _, err = third.communicate(timeout=180)
    assert "0 created, 0 updated, 600 unchanged, 1 rejected" in err, "every note exactly once"

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        hits = stack.http.get("/api/search", params={"q": "Note 599 of cli: the ferry to island 599"}).json()
        if hits["results"] and hits["results"][0]["asset"]["url"] == "document:cli-599":
            break
        time.sleep(0.5)
    top = hits["results"][0]["asset"]
    assert top["url"] == "document:cli-599" and top["metadata"] == {"n": 599} and top["title"] == "Note 599"


def test_prometheus_metrics_count_what_the_stack_did(stack, client):
    client.embeddings.create(input="count me", model=MINILM)
    stack.http.get("/api/search", params={"q": "ferry"})
    deadline = time.monotonic() + 120
    while True:  # the CLI's 600 notes are embedded by the queue, some maybe still now
        text = stack.http.get("/metrics").text
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line.startswith("allthethings_") and " " in line}
        if values.get("allthethings_assets_searchable_total", 0) >= 600 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert values["allthethings_embedding_inputs_total"] >= 1
    assert values["allthethings_search_latency_seconds_count"] >= 1
    assert values["allthethings_assets_submitted_total"] >= 600
    assert values["allthethings_assets_searchable_total"] >= 600


def test_a_stack_whose_backend_is_an_openai_compatible_upstream_indexes_and_searches_through_it(
        stack, direct, tmp_path):
    upstream = OpenAICompatibleEmbedder(f"{stack.url}/v1", MINILM, api_key=lambda: stack.api_key)
    vectors, tokens = upstream.embed_counted(SENTENCES)
    np.testing.assert_allclose(vectors, direct(SENTENCES), atol=1e-5)
    assert tokens > 0

    second = RunningStack(tmp_path / "second", EMBEDDER_BACKEND="openai", EMBEDDINGS_UPSTREAM_URL=f"{stack.url}/v1",
                          EMBEDDINGS_UPSTREAM_API_KEY=stack.api_key)
    try:
        before = stack.http.get("/metrics").text
        answer = second.http.post("/api/documents", json={"documents": [
            {"id": "tide", "text": "High tide reaches the harbour wall twice a day."},
            {"id": "bread", "text": "The bakery opens at six and sells out of rye by nine."}]})
        assert answer.status_code == 202
        for doc in answer.json()["documents"]:
            assert second.wait_for(doc["asset_id"], timeout_s=60)["status"] == "SEARCHABLE"
        hits = second.http.get("/api/search", params={"q": "when does the sea come in"}).json()["results"]
        assert hits[0]["asset"]["url"] == "document:tide"
        proxied = openai.OpenAI(base_url=f"{second.url}/v1", api_key=second.api_key).embeddings.create(
            input=SENTENCES[3], model=MINILM)
        np.testing.assert_allclose(proxied.data[0].embedding, direct(SENTENCES[3:])[0], atol=1e-5)
        after = stack.http.get("/metrics").text
        assert _inputs(after) > _inputs(before), "the second stack's embeddings came from the first"
    finally:
        second.stop()


def _inputs(metrics_text: str) -> float:
    return next(float(line.split(" ")[1]) for line in metrics_text.splitlines()
                if line.startswith("allthethings_embedding_inputs_total "))
