"""Ingest throughput and search latency through the local HTTP API, against the model alone.

Serves N short text documents (built from STS Benchmark dev sentences) from 127.0.0.1,
submits them to a fresh local stack from concurrent clients, waits until every one is
SEARCHABLE, then runs search queries one at a time. The same texts and queries are then
embedded directly with sentence-transformers in this process, for the ratios.

    python -m bench.ingest_search --docs 1000
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import corpus, machine, peak_rss_mb, profiled, serve, summary
from tests.e2e.conftest import RunningStack

UNFINISHED = "FETCHING,SUBMITTED,PROCESSING,PROCESSED,GENERATING_EMBEDDINGS"
FAILED = "PROCESSING_ERROR,EMBEDDINGS_ERROR"


def all_statuses(stack: RunningStack) -> dict[str, str]:
    cursor, seen = None, {}
    while True:
        page = stack.http.get("/api/assets", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        seen.update({a["id"]: a["status"] for a in page["assets"]})
        cursor = page["next_cursor"]
        if not cursor:
            return seen


def ingest(stack: RunningStack, base: str, n: int, clients: int) -> tuple[float, list[str]]:
    # One client shared by the submitting threads: building an httpx client per request costs
    # more CPU than the request itself, and the harness shares the two cores with the stack.
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=clients), headers=stack.auth)

    def submit(i: int) -> str:
        response = http.post(f"{stack.url}/api/assets", json={"url": f"{base}/doc-{i:05d}.txt"})
        response.raise_for_status()
        return response.json()["id"]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(submit, range(n)))
    http.close()
    print(f"all {n} submissions answered after {time.perf_counter() - started:.1f} s", file=sys.stderr)
    # Two one-row listings a second (is anything unfinished? has anything failed?) instead of
    # listing every asset: a poll that grows with the corpus would load the stack it measures.
    while True:
        failed = stack.http.get("/api/assets", params={"limit": 1, "status": FAILED}).json()["assets"]
        if failed:
            raise RuntimeError(f"an asset failed: {failed[0]}")
        if not stack.http.get("/api/assets", params={"limit": 1, "status": UNFINISHED}).json()["assets"]:
            break
        time.sleep(1.0)
    elapsed = time.perf_counter() - started
    statuses = all_statuses(stack)
    assert all(statuses.get(i) == "SEARCHABLE" for i in ids), "an asset submitted is not SEARCHABLE"
    return elapsed, ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--pollers", type=int, default=4, help="concurrent queue pollers in the stack")
    parser.add_argument("--model-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="torch threads for the stack's model and for the direct figure alike")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the stack (collapsed stacks) here")
    parser.add_argument("--profile-idle", action="store_true", help="sample waiting threads too")
    args = parser.parse_args()

    docs, queries = corpus(args.docs)
    queries = queries[:args.queries]
    work = Path(tempfile.mkdtemp(prefix="allthethings-bench-"))
    (work / "docs").mkdir()
    for i, text in enumerate(docs):
        (work / "docs" / f"doc-{i:05d}.txt").write_text(text)
    base, server = serve(work / "docs")

    stack = RunningStack(work / "stack", EMBEDDING_MODEL=args.model, LOCAL_POLLERS=str(args.pollers),
                         MODEL_THREADS=str(args.model_threads))
    try:
        stack.http.get("/api/search", params={"q": "warm up the model"})
        with profiled(stack, args.profile, "ingest", args.profile_idle):
            ingest_s, ids = ingest(stack, base, len(docs), args.clients)
        rss_after_ingest = peak_rss_mb(stack.process.pid)
        latencies, hits = [], 0
        with profiled(stack, args.profile, "search", args.profile_idle):
            for text, doc_index in queries:
                t = time.perf_counter()
                response = stack.http.get("/api/search", params={"q": text, "limit": 10})
                latencies.append(time.perf_counter() - t)
                results = response.json()["results"]
                hits += bool(results) and results[0]["asset"]["id"] == ids[doc_index]
    finally:
        stack.stop()
        server.shutdown()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.model_threads)

    from allthethings.adapters.models import model_dir

    model = SentenceTransformer(str(model_dir(args.model)), device="cpu")
    model.encode(["warm up"])
    t = time.perf_counter()
    model.encode(docs, batch_size=32, normalize_embeddings=True)
    direct_s = time.perf_counter() - t
    direct_query = []
    for text, _ in queries:
        t = time.perf_counter()
        model.encode([text], normalize_embeddings=True)
        direct_query.append(time.perf_counter() - t)

    search = summary(latencies)
    query_alone = summary(direct_query)
    report = {
        "machine": machine(),
        "model": args.model,
        "documents": len(docs),
        "clients": args.clients,
        "model_threads": args.model_threads,
        "local_aws": os.environ.get("LOCAL_AWS", "embedded"),
        "ingest_docs_per_s": round(len(docs) / ingest_s, 1),
        "direct_docs_per_s": round(len(docs) / direct_s, 1),
        "ingest_ratio": round(direct_s / ingest_s, 3),
        "peak_rss_mb_after_ingest": rss_after_ingest,
        "search": search,
        "query_embedding_alone": query_alone,
        "search_p50_ratio_to_query_embedding": round(search["p50_ms"] / query_alone["p50_ms"], 2),
        "top1_accuracy_on_paraphrase_queries": round(hits / len(queries), 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
