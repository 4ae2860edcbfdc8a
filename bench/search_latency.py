"""Search latency on the embedded store at 10k and 100k chunks, per mode, with and without a
selective filter, through the HTTP API of the local stack.

The store is filled directly (SQLite + sqlite-vec + FTS5), ten chunks an asset: texts are STS
Benchmark sentences, vectors random unit vectors (latency does not depend on what they mean), 1%
of assets on a rare host for the selective filter. Queries are real and each is new to the stack
(its query cache is off), so a vector or hybrid search pays one query embedding, as a user's new
query does; keyword searches match their words. The ratio is each mode's p50 to the p50 of one
query embedding alone, the same model on the same number of threads in this process.

    python -m bench.search_latency --chunks 10000 100000 [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import machine, profiled, sts_rows, summary
from tests.e2e.conftest import RunningStack

CHUNKS_PER_ASSET = 10


def fill(data_dir: Path, chunks: int, seed: int = 7) -> None:
    import numpy as np

    from allthethings.adapters.sqlite_store import SqliteStore
    from allthethings.domain.assets import Asset, Chunk, Kind, Status

    rng = np.random.default_rng(seed)
    random.seed(seed)
    sentences = [r["s1"] for r in sts_rows()] + [r["s2"] for r in sts_rows()]
    store = SqliteStore(str(data_dir / "allthethings.db"), 384, "all-MiniLM-L6-v2")
    kinds = list(Kind)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(chunks // CHUNKS_PER_ASSET):
        host = "rare.example" if n % 100 == 0 else "common.example"
        stamp = start + timedelta(minutes=n)
        asset = Asset(id=f"{n:032x}", url=f"https://{host}/doc/{n}", status=Status.GENERATING_EMBEDDINGS,
                      created_at=stamp, updated_at=stamp, content_type="text/plain", kind=kinds[n % len(kinds)],
                      staged_key=f"staged/{n}", size_bytes=1, chunk_count=CHUNKS_PER_ASSET)
        store.add(asset)
        texts = [" ".join(random.sample(sentences, 3)) for _ in range(CHUNKS_PER_ASSET)]
        store.put_chunks(asset.id, [Chunk(asset.id, i, t) for i, t in enumerate(texts)])
        vectors = rng.normal(size=(CHUNKS_PER_ASSET, 384)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.make_searchable(asset.id, vectors.tolist())
    store.close()


def query_embedding(queries: list[str], threads: int) -> dict:
    """One query embedded at a time by the stack's model, here, on `threads` torch threads."""
    import torch
    from sentence_transformers import SentenceTransformer

    from allthethings.adapters.models import model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir("all-MiniLM-L6-v2")), device="cpu")
    model.encode(["warm up"] * 4)
    latencies = []
    for q in queries:
        t = time.perf_counter()
        model.encode([q], normalize_embeddings=True)
        latencies.append(time.perf_counter() - t)
    return summary(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--model-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the stack here, one per mode")
    args = parser.parse_args()
    rows = sts_rows()
    warmups = [r["s1"] for r in rows[-20:]]
    queries = [r["s2"] for r in rows[: args.queries]]
    report = {"machine": machine(), "model_threads": args.model_threads,
              "query_embedding_alone": query_embedding(queries, args.model_threads), "runs": {}}
    for chunks in args.chunks:
        data = Path(tempfile.mkdtemp(prefix=f"allthethings-latency-{chunks}-"))
        started = time.perf_counter()
        fill(data, chunks)
        filled_s = time.perf_counter() - started
        stack = RunningStack(data, QUERY_CACHE_TTL_S="0", MODEL_THREADS=str(args.model_threads))
        try:
            for q in warmups:  # load the model and warm the store's pages, with queries not measured
                stack.http.get("/api/search", params={"q": q, "mode": "hybrid"})
            run = {"fill_seconds": round(filled_s, 1)}
            alone = report["query_embedding_alone"]["p50_ms"]
            for mode in ("vector", "keyword", "hybrid"):
                for label, extra in (("no filter", {}), ("host filter (1%)", {"host": "rare.example"})):
                    latencies, empty = [], 0
                    with profiled(stack, args.profile and args.profile / f"{chunks}", f"{mode}-{label[:4]}"):
                        for q in queries:
                            t = time.perf_counter()
                            body = stack.http.get("/api/search", params={"q": q, "mode": mode, **extra}).json()
                            latencies.append(time.perf_counter() - t)
                            empty += not body["results"]
                    timing = summary(latencies)
                    run[f"{mode}, {label}"] = {**timing, "empty_pages": empty,
                                               "p50_ratio_to_query_embedding": round(timing["p50_ms"] / alone, 2)}
            report["runs"][f"{chunks} chunks"] = run
        finally:
            stack.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
