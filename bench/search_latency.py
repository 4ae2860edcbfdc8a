"""Search latency on the embedded store at 10k and 100k chunks, per mode, with and without a
selective filter, through the HTTP API of the local stack.

The store is filled directly (SQLite + sqlite-vec + FTS5), ten chunks an asset: texts are STS
Benchmark sentences, vectors random unit vectors (latency does not depend on what they mean), 1%
of assets on a rare host for the selective filter. Queries are real: each is embedded by the
stack's model (vector and hybrid) or matched by its words (keyword).

    python -m bench.search_latency --chunks 10000 100000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import machine, sts_rows, summary
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    queries = [r["s2"] for r in sts_rows()[: args.queries]]
    report = {"machine": machine(), "runs": {}}
    for chunks in args.chunks:
        data = Path(tempfile.mkdtemp(prefix=f"allthethings-latency-{chunks}-"))
        started = time.perf_counter()
        fill(data, chunks)
        filled_s = time.perf_counter() - started
        stack = RunningStack(data)
        try:
            for q in queries:  # warm the model and the query-embedding cache alike for every mode
                stack.http.get("/api/search", params={"q": q, "mode": "vector"})
            run = {"fill_seconds": round(filled_s, 1)}
            for mode in ("vector", "keyword", "hybrid"):
                for label, extra in (("no filter", {}), ("host filter (1%)", {"host": "rare.example"})):
                    latencies, empty = [], 0
                    for q in queries:
                        t = time.perf_counter()
                        body = stack.http.get("/api/search", params={"q": q, "mode": mode, **extra}).json()
                        latencies.append(time.perf_counter() - t)
                        empty += not body["results"]
                    run[f"{mode}, {label}"] = {**summary(latencies), "empty_pages": empty}
            report["runs"][f"{chunks} chunks"] = run
        finally:
            stack.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
