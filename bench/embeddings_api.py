"""The OpenAI-compatible embeddings API against the model called directly, and STS Benchmark dev equality.

Throughput: the same STS Benchmark dev sentences, in batches of 1, 32 and 128, embedded (a)
directly, `SentenceTransformer(...).encode(batch, normalize_embeddings=True)` in this process,
and (b) through `POST /v1/embeddings` of a local stack with the official `openai` client
(`client.embeddings.create(input=batch, model=name)`, which asks for base64), one request at a
time. The model gets the same number of torch threads on both sides (MODEL_THREADS in the
stack, torch.set_num_threads here). Rounds alternate which side goes first; the medians are
reported. The stack's own `allthethings_embeddings_latency_seconds` histogram (time in the
model call inside the stack) splits the API's time into model and everything else.

Equality: every STS dev pair embedded through the API (float and base64 encodings) and
directly; the Spearman correlation of the cosine similarities with the gold scores for each,
and the largest absolute difference between the API's and the direct vectors.

    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python -m bench.embeddings_api
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    cpu_seconds,
    load_average,
    machine,
    scrape,
    start_stack,
    sts_rows,
    sts_sentences,
)

MODELS = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")
MODEL_SECONDS = "allthethings_embeddings_latency_seconds"


def batched(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def model_seconds(metrics_url: str, client) -> tuple[float, float]:
    samples = scrape(metrics_url, client)
    return samples.get(f"{MODEL_SECONDS}_sum", 0.0), samples.get(f"{MODEL_SECONDS}_count", 0.0)


def throughput(args, stack, client, direct) -> list[dict]:
    sentences = list(dict.fromkeys(sts_sentences()))[:args.sentences]  # no sentence twice in a pass
    metrics_url = f"{stack.url}/metrics"

    def run_direct(name: str, batches: list[list[str]]) -> dict:
        model = direct[name]
        started = time.perf_counter()
        for batch in batches:
            model.encode(batch, normalize_embeddings=True)
        return {"s": time.perf_counter() - started}

    def run_api(name: str, batches: list[list[str]]) -> dict:
        before = model_seconds(metrics_url, stack.http)
        stack_cpu, client_cpu = cpu_seconds(stack.process.pid), time.process_time()
        started = time.perf_counter()
        for batch in batches:
            response = client.embeddings.create(input=batch, model=name)
            assert len(response.data) == len(batch)
        elapsed = time.perf_counter() - started
        stack_cpu, client_cpu = cpu_seconds(stack.process.pid) - stack_cpu, time.process_time() - client_cpu
        after = model_seconds(metrics_url, stack.http)
        assert after[1] - before[1] == len(batches), "the stack's model histogram missed requests"
        return {"s": elapsed, "model_s": after[0] - before[0], "stack_cpu_s": stack_cpu, "client_cpu_s": client_cpu}

    for name in args.models:  # warm-up: both sides, every batch size (the stack loads its model here)
        for size in args.batches:
            warm = batched(sentences[-4 * size:], size)
            run_direct(name, warm)
            run_api(name, warm)

    runs: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for round_no in range(args.rounds):
        for name in args.models:
            for size in args.batches:
                batches = batched(sentences, size)
                sides = [("direct", run_direct), ("api", run_api)]
                if round_no % 2:
                    sides.reverse()
                for side, run in sides:
                    result = run(name, batches)
                    runs.setdefault((name, size), {}).setdefault(side, []).append(result)
                    print(f"round {round_no + 1} {name} batch {size} {side}: "
                          f"{len(sentences) / result['s']:.1f} sentences/s", file=sys.stderr, flush=True)

    rows = []
    for (name, size), sides in runs.items():
        direct_s = statistics.median(r["s"] for r in sides["direct"])
        api_s = statistics.median(r["s"] for r in sides["api"])
        model_s = statistics.median(r["model_s"] for r in sides["api"])
        stack_cpu = statistics.median(r["stack_cpu_s"] for r in sides["api"])
        client_cpu = statistics.median(r["client_cpu_s"] for r in sides["api"])
        requests = len(batched(sentences, size))
        rows.append({
            "model": name, "batch": size, "sentences": len(sentences), "requests": requests,
            "direct_sentences_per_s": round(len(sentences) / direct_s, 1),
            "api_sentences_per_s": round(len(sentences) / api_s, 1),
            "ratio": round(direct_s / api_s, 3),
            "ratio_per_round": [round(d["s"] / a["s"], 3) for d, a in zip(sides["direct"], sides["api"], strict=True)],
            "api_ms_per_request": round(api_s / requests * 1000, 2),
            "stack_model_ms_per_request": round(model_s / requests * 1000, 2),
            "outside_model_ms_per_request": round((api_s - model_s) / requests * 1000, 2),
            "direct_ms_per_batch": round(direct_s / requests * 1000, 2),
            "stack_cpu_ms_per_request": round(stack_cpu / requests * 1000, 2),
            "client_cpu_ms_per_request": round(client_cpu / requests * 1000, 2),
            **({"goal": f">= {args.goal}", "goal_met": direct_s / api_s >= args.goal} if size == 32 else {}),
        })
    return rows


def adapter_breakdown(args, direct) -> list[dict]:
    """The stack's model adapter alone (LocalEmbedder: the call batcher, `.tolist()`), in this
    process and without HTTP, against the same model called directly; alternating, median of 3."""
    from allthethings.adapters.models import LocalEmbedder

    sentences = list(dict.fromkeys(sts_sentences()))[:args.breakdown_sentences]
    rows = []
    for name in args.models:
        adapter = LocalEmbedder(name, threads=args.threads)
        adapter.embed(sentences[:8])
        for size in (1, 32):
            batches = batched(sentences, size)
            times: dict[str, list[float]] = {"direct": [], "adapter": []}
            for round_no in range(3):
                sides = [("direct", functools.partial(direct[name].encode, normalize_embeddings=True)),
                         ("adapter", adapter.embed)]
                for side, call in (sides if round_no % 2 == 0 else sides[::-1]):
                    started = time.perf_counter()
                    for batch in batches:
                        call(batch)
                    times[side].append(time.perf_counter() - started)
            direct_ms = statistics.median(times["direct"]) / len(batches) * 1000
            adapter_ms = statistics.median(times["adapter"]) / len(batches) * 1000
            rows.append({"model": name, "batch": size, "sentences": len(sentences),
                         "direct_ms_per_batch": round(direct_ms, 2), "adapter_ms_per_batch": round(adapter_ms, 2),
                         "adapter_overhead_ms": round(adapter_ms - direct_ms, 2)})
            print(f"adapter {name} batch {size}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def sts_equality(args, client, direct) -> list[dict]:
    from scipy.stats import spearmanr

    rows = sts_rows()
    gold = [r["score"] for r in rows]
    sentences = [s for r in rows for s in (r["s1"], r["s2"])]
    results = []
    for name in args.models:
        def api(encoding: str | None, name: str = name) -> np.ndarray:
            vectors = []
            for batch in batched(sentences, args.sts_batch):
                kwargs = {"encoding_format": encoding} if encoding else {}
                data = client.embeddings.create(input=batch, model=name, **kwargs).data
                for item in data:
                    if encoding == "base64":
                        vectors.append(np.frombuffer(base64.b64decode(item.embedding), dtype="<f4"))
                    else:
                        vectors.append(np.asarray(item.embedding, dtype=np.float64))
            return np.vstack(vectors)

        ways = {
            "api_float": api("float"),
            "api_base64": api("base64"),
            "api_client_default": api(None),  # the client asks for base64 and decodes it itself
            "direct": np.vstack([direct[name].encode(batch, normalize_embeddings=True)
                                 for batch in batched(sentences, args.sts_batch)]).astype(np.float64),
        }
        spearman = {}
        for way, vectors in ways.items():
            a, b = vectors[0::2], vectors[1::2]
            cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            spearman[way] = float(spearmanr(gold, cosine).statistic)
        diffs = {f"max_abs_diff_{way}_vs_direct": float(np.abs(ways[way] - ways["direct"]).max())
                 for way in ("api_float", "api_base64", "api_client_default")}
        spread = max(spearman.values()) - min(spearman.values())
        results.append({
            "model": name, "pairs": len(rows), "dimensions": ways["direct"].shape[1],
            "spearman": {way: round(value, 6) for way, value in spearman.items()},
            "spearman_max_difference": spread, **diffs,
            "equal": spread <= 1e-4 and max(diffs.values()) <= 1e-4,
        })
        print(f"STS {name}: {results[-1]['spearman']}", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in the stack (MODEL_THREADS) and here")
    parser.add_argument("--sentences", type=int, default=1536)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sts-batch", type=int, default=128)
    parser.add_argument("--goal", type=float, default=0.8)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-sts", action="store_true")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the stack's model adapter (LocalEmbedder) in this process, without HTTP")
    parser.add_argument("--breakdown-sentences", type=int, default=384)
    args = parser.parse_args()

    import openai
    import torch
    from sentence_transformers import SentenceTransformer

    from allthethings.adapters.models import model_dir

    torch.set_num_threads(args.threads)
    load_at_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="allthethings-bench-"))
    stack = start_stack(work / "stack", EMBEDDING_MODEL=args.models[0], SERVED_MODELS=",".join(args.models),
                        MODEL_THREADS=str(args.threads),
                        # The index's model answers single texts from the search query cache; every
                        # pass here repeats the same sentences, so the cache is off to time the model.
                        QUERY_CACHE_TTL_S="0")
    try:
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0, timeout=600)
        served = [m.id for m in client.models.list().data]
        assert set(args.models) <= set(served), served
        direct = {name: SentenceTransformer(str(model_dir(name)), device="cpu") for name in args.models}
        report = {"machine": machine(), "threads": args.threads, "load_average_at_start": load_at_start,
                  "served_models": served}
        if not args.skip_throughput:
            report["throughput"] = throughput(args, stack, client, direct)
        if args.breakdown:
            report["adapter_without_http"] = adapter_breakdown(args, direct)
        if not args.skip_sts:
            report["sts_dev_spearman"] = sts_equality(args, client, direct)
        report["load_average_at_end"] = load_average()
    finally:
        stack.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
