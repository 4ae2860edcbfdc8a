"""Calibrates each local model's similarity floor: the cosine similarity below which a vector hit
is not a match, so that a query about nothing the index holds finds nothing.

For each model it measures, with the vectors search uses (unit length, cosine = dot product):

- **nonsense and off-topic queries** (gibberish like "zzqxj flurble", seeded random letter
  strings, keyboard mashes, and a few real questions about things no corpus here holds) against
  three corpora: the 433 Semanlink tag labels of `bench.retrieval_quality`, the 2,998 STS
  Benchmark dev sentences, and the web-page fixtures split into 150-word chunks. The best match
  of each query is what a floor must stay above.
- **relevant documents**: every (arXiv title, relevant tag) pair of the Semanlink retrieval
  set, and those among each title's ten nearest tags (what vector search's top 10 shows, so
  what a floor could take from nDCG@10 and recall@10).
- **STS pairs**: cosine of pairs graded 0-1 of 5 (unrelated) and 4-5 (same meaning), for scale.

The floor is the highest value on a 0.05 grid that costs at most 1% of the relevant documents
vector search shows in its top 10 (the coarse grid keeps it from fitting this one dataset); the
table shows, for each candidate, how many gibberish and off-topic queries still find something
in each corpus. Short labels (the Semanlink tags) draw gibberish closest: random letters share
word pieces with acronyms, so no floor that keeps relevant labels empties that corpus. The strong
level is the median similarity of those relevant top-10 documents, on the same grid.

    python -m bench.similarity_floor [--model all-MiniLM-L6-v2 --model all-mpnet-base-v2]
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import string
import time
from pathlib import Path

import numpy as np

from bench.common import machine, sts_rows
from bench.retrieval_quality import semanlink

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

GIBBERISH = ["zzqxj flurble", "asdfgh qwerty", "xkcd blorptang vrrm", "qqq zzz", "jjjjjjj", "flibbertigibbet wug",
             "vorpal snicker-snack frumious", "bzzt krrk ptang", "mxyzptlk", "ghjkl; zxcvb"]
OFF_TOPIC = ["recipe for lemon meringue pie", "who won the 1974 world cup final", "how to change a bicycle tyre",
             "best beaches in portugal for surfing", "symptoms of tomato blight"]


def random_gibberish(n: int, seed: int = 13) -> list[str]:
    """Seeded two-"word" strings of random lower-case letters (4-8 each)."""
    rng = random.Random(seed)
    word = lambda: "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 8)))  # noqa: E731
    return [f"{word()} {word()}" for _ in range(n)]


def fixture_chunks(words_per_chunk: int = 150) -> list[str]:
    """The web-page fixtures' expected main text, tags stripped, in chunks of about 150 words."""
    chunks = []
    for page in sorted(FIXTURES.glob("html/*/expected.html")):
        text = html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))
        words = text.split()
        chunks += [" ".join(words[i:i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]
    return chunks


def embedder(model: str):
    from allthethings.adapters.models import LocalEmbedder

    local = LocalEmbedder(model)
    return lambda texts: np.asarray(local._encode(list(texts)), dtype=np.float32)  # what search and indexing call


def percentiles(values, ps=(1, 5, 10, 25, 50, 75, 90, 95, 99)) -> dict[str, float]:
    values = np.asarray(values)
    return {f"p{p}": round(float(np.percentile(values, p)), 3) for p in ps} | {
        "min": round(float(values.min()), 3), "max": round(float(values.max()), 3)}


def calibrate(model: str) -> dict:
    documents, queries, qrels = semanlink()
    doc_ids = list(documents)
    sts = sts_rows()
    sentences = list(dict.fromkeys([r["s1"] for r in sts] + [r["s2"] for r in sts]))
    corpora = {"semanlink tags": [documents[d] for d in doc_ids], "STS sentences": sentences,
               "web-page fixtures": fixture_chunks()}
    started = time.perf_counter()
    embed = embedder(model)
    vectors = {name: embed(texts) for name, texts in corpora.items()}
    gibberish = GIBBERISH + random_gibberish(40)
    probe_vectors = embed(gibberish + OFF_TOPIC)
    q_ids = list(queries)
    q_vectors = embed([queries[q].strip() for q in q_ids])
    row_of = {text: i for i, text in enumerate(sentences)}  # the pairs' sentences are the corpus's
    s1 = vectors["STS sentences"][[row_of[r["s1"]] for r in sts]]
    s2 = vectors["STS sentences"][[row_of[r["s2"]] for r in sts]]
    embed_s = time.perf_counter() - started

    # Best match of each probe in each corpus.
    best = {name: (probe_vectors @ v.T).max(axis=1) for name, v in vectors.items()}
    best_any = np.max(np.stack(list(best.values())), axis=0)
    gib_best, off_best = best_any[:len(gibberish)], best_any[len(gibberish):]
    n_gib = len(gibberish)

    # Relevant pairs of the retrieval set, all of them and those in vector search's top 10.
    sims = q_vectors @ vectors["semanlink tags"].T
    relevant_sims, top10_relevant_sims = [], []
    index_of = {d: i for i, d in enumerate(doc_ids)}
    for qi, q in enumerate(q_ids):
        top10 = set(np.argsort(-sims[qi])[:10].tolist())
        for d in qrels[q]:
            j = index_of[d]
            relevant_sims.append(float(sims[qi, j]))
            if j in top10:
                top10_relevant_sims.append(float(sims[qi, j]))
    top1 = sims.max(axis=1)
    pair_cos = (s1 * s2).sum(axis=1)
    gold = np.asarray([r["score"] for r in sts])

    grid = [round(x, 2) for x in np.arange(0.10, 0.61, 0.05)]
    lost = {f: 100 * float(np.mean(np.asarray(top10_relevant_sims) < f)) for f in grid}
    floor = max(f for f in grid if lost[f] <= 1.0)
    strong = min(grid + [0.65, 0.7, 0.75, 0.8], key=lambda f: abs(f - float(np.median(top10_relevant_sims))))
    table = []
    for f in grid:
        table.append({
            "floor": f,
            "gibberish queries with a result": f"{int((gib_best >= f).sum())}/{n_gib}",
            **{f"  … in {name}": f"{int((b[:n_gib] >= f).sum())}/{n_gib}" for name, b in best.items()},
            "off-topic queries with a result": f"{int((off_best >= f).sum())}/{len(OFF_TOPIC)}",
            "relevant pairs below (all)": round(100 * float(np.mean(np.asarray(relevant_sims) < f)), 2),
            "relevant in vector top 10 lost (%)": round(100 * float(np.mean(np.asarray(top10_relevant_sims) < f)), 2),
            "retrieval queries left with no vector result": int((top1 < f).sum()),
            "STS 0-1 pairs above (%)": round(100 * float(np.mean(pair_cos[gold <= 1] >= f)), 1),
        })
    return {
        "model": model,
        "floor": floor,
        "strong": strong,
        "embed_s": round(embed_s, 1),
        "corpora": {name: len(texts) for name, texts in corpora.items()},
        "gibberish best match": percentiles(gib_best),
        "gibberish best match per corpus": {name: percentiles(b[:n_gib]) for name, b in best.items()},
        "hand-written gibberish best match per corpus": {
            q: {name: round(float(b[i]), 3) for name, b in best.items()} for i, q in enumerate(GIBBERISH)},
        "gibberish worst offenders": sorted(((round(float(s), 3), q) for q, s in zip(gibberish, gib_best)),
                                            reverse=True)[:5],
        "off-topic best match": {q: round(float(s), 3) for q, s in zip(OFF_TOPIC, off_best)},
        "relevant pairs (all)": percentiles(relevant_sims),
        "relevant pairs in vector top 10": percentiles(top10_relevant_sims),
        "retrieval queries' top-1 similarity": percentiles(top1),
        "STS pairs graded 0-1": percentiles(pair_cos[gold <= 1]),
        "STS pairs graded 4-5": percentiles(pair_cos[gold >= 4]),
        "candidates": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", help="a local model (repeatable); default: both local models")
    args = parser.parse_args()
    models = args.model or ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
    print(json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                      "models": [calibrate(m) for m in models]}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
