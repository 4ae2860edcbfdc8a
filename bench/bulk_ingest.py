"""Bulk ingestion through POST /api/documents (the `python -m devstack index` path) against the model alone.

Writes N short documents (two STS Benchmark dev sentences each, one chunk, a unique id) to a
JSONL file and sends it to a fresh local stack with `devstack.indexer.index_file` (what the
CLI runs: batches of 100, two in flight). The clock runs from the first request until the
stack's `allthethings_assets_searchable_total` counter (GET /metrics) reaches N. The direct
figure embeds the same N texts in this process with the same model and torch thread count
(batch 32). Afterwards every document is checked SEARCHABLE through the asset listing, and a
search for one document's exact text must return that document first. `--profile FILE` samples
the stack process with py-spy during the timed window (it slows the stack a little).

    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python -m bench.bulk_ingest --docs 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import load_average, machine, process_tree_cpu, scrape, start_stack, sts_sentences

SEARCHABLE = "allthethings_assets_searchable_total"


def documents(n: int) -> list[str]:
    """`n` distinct texts: STS sentence i joined with sentence i+k, for k = 1, 2, ... as needed."""
    sentences = list(dict.fromkeys(sts_sentences()))
    texts, seen, k = [], set(), 1
    while len(texts) < n:
        for i, first in enumerate(sentences):
            text = f"{first} {sentences[(i + k) % len(sentences)]}"
            if text not in seen:
                seen.add(text)
                texts.append(text)
                if len(texts) == n:
                    break
        k += 1
    return texts


def listing(stack) -> dict[str, dict]:
    assets, cursor = {}, None
    while True:
        page = stack.http.get("/api/assets", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        assets.update({a["url"]: a for a in page["assets"]})
        cursor = page["next_cursor"]
        if not cursor:
            return assets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in the stack (MODEL_THREADS) and here")
    parser.add_argument("--batch", type=int, default=100, help="documents per POST /api/documents (the CLI's default)")
    parser.add_argument("--in-flight", type=int, default=2, help="requests in flight (the CLI's default)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--profile", help="write py-spy's collapsed stacks of the stack process here")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from allthethings.adapters.models import model_dir
    from devstack.indexer import index_file

    torch.set_num_threads(args.threads)
    texts = documents(args.docs)
    work = Path(tempfile.mkdtemp(prefix="allthethings-bench-"))
    source = work / "documents.jsonl"
    with open(source, "w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"sts-{i:05d}", "title": f"STS document {i}", "text": text,
                                  "metadata": {"n": i}}) + "\n")

    load_at_start = load_average()
    stack = start_stack(work / "stack", EMBEDDING_MODEL=args.model, MODEL_THREADS=str(args.threads))
    metrics_url = f"{stack.url}/metrics"
    try:
        stack.http.get("/api/search", params={"q": "warm up the model"}).raise_for_status()
        before = scrape(metrics_url)
        assert before.get(SEARCHABLE, 0) == 0
        sent_at = {}

        def send() -> None:
            try:
                sent_at["totals"] = index_file(source, api_url=stack.url, api_key=stack.api_key, batch=args.batch,
                                               in_flight=args.in_flight, show_progress=False,
                                               report=lambda line: print(line, file=sys.stderr))
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting loop
                sent_at["error"] = exc
            sent_at["s"] = time.perf_counter() - started

        profiler = None
        if args.profile:  # sampled stacks of the stack process for the timed window (py-spy, collapsed format)
            spy = Path(sys.executable).with_name("py-spy")
            profiler = subprocess.Popen(
                [str(spy) if spy.exists() else "py-spy", "record", "--pid", str(stack.process.pid), "--rate", "50",
                 "--format", "raw", "--output", args.profile, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before, bench_cpu = process_tree_cpu(stack.process.pid), time.process_time()
        started = time.perf_counter()
        sender = threading.Thread(target=send)
        sender.start()
        searchable = 0
        while searchable < args.docs:
            if time.perf_counter() - started > args.timeout:
                raise RuntimeError(f"only {searchable} of {args.docs} searchable after {args.timeout} s")
            if "error" in sent_at:
                raise RuntimeError("the CLI stopped") from sent_at["error"]
            time.sleep(0.5)
            samples = scrape(metrics_url, stack.http)
            searchable = samples.get(SEARCHABLE, 0)
        ingest_s = time.perf_counter() - started
        cpu_after, bench_cpu = process_tree_cpu(stack.process.pid), time.process_time() - bench_cpu
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        sender.join()
        cpu = {name: round(cpu_after[name] - cpu_before.get(name, 0), 1) for name in cpu_after}
        cpu["bench_process (CLI client, polling)"] = round(bench_cpu, 1)
        totals = sent_at["totals"]

        assets = listing(stack)
        ours = {url: a for url, a in assets.items() if url.startswith("document:")}
        statuses: dict[str, int] = {}
        for asset in ours.values():
            statuses[asset["status"]] = statuses.get(asset["status"], 0) + 1

        probes = random.Random(6).sample(range(args.docs), 5)
        sanity = []
        for i in probes:
            results = stack.http.get("/api/search", params={"q": texts[i], "limit": 3}).json()["results"]
            top = results[0]["asset"] if results else {}
            sanity.append({"document": f"sts-{i:05d}", "top_result_metadata": top.get("metadata"),
                           "found_first": top.get("metadata") == {"n": i}})
            print(f"search for the text of sts-{i:05d}: first result {top.get('url')} {top.get('metadata')}",
                  file=sys.stderr)
        stack_log_errors = sum("Traceback" in line for line in stack.log.read_text(errors="replace").splitlines())
    finally:
        stack.stop()

    model = SentenceTransformer(str(model_dir(args.model)), device="cpu")
    model.encode(texts[:64], batch_size=32)
    t = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    direct_s = time.perf_counter() - t
    # The same texts in the requests' groups of `batch` (each group sorted and padded on its own,
    # as the stack's processing step embeds them): what the model alone does with the API's batches.
    t = time.perf_counter()
    for start in range(0, len(texts), args.batch):
        model.encode(texts[start:start + args.batch], batch_size=32, normalize_embeddings=True)
    direct_grouped_s = time.perf_counter() - t
    # And on every core, as issue 2's ingest benchmark measured its direct figure.
    torch.set_num_threads(os.cpu_count() or 1)
    model.encode(texts[:64], batch_size=32)
    t = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    direct_all_cores_s = time.perf_counter() - t

    report = {
        "machine": machine(),
        "model": args.model,
        "threads": args.threads,
        "documents": args.docs,
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "cli": {"batch": args.batch, "in_flight": args.in_flight, "created": totals.created,
                "unchanged": totals.unchanged, "rejected": totals.rejected},
        "all_sent_after_s": round(sent_at["s"], 1),
        "all_searchable_after_s": round(ingest_s, 1),
        "ingest_docs_per_s": round(args.docs / ingest_s, 1),
        "cpu_s_during_ingest": cpu,
        "direct_s": round(direct_s, 1),
        "direct_docs_per_s": round(args.docs / direct_s, 1),
        "ratio": round(direct_s / ingest_s, 3),
        "direct_in_request_groups_s": round(direct_grouped_s, 1),
        "ratio_to_direct_in_request_groups": round(direct_grouped_s / ingest_s, 3),
        "direct_all_cores_s": round(direct_all_cores_s, 1),
        "ratio_to_direct_all_cores": round(direct_all_cores_s / ingest_s, 3),
        "statuses_listed": statuses,
        "sanity_exact_text_search": sanity,
        "stack_log_tracebacks": stack_log_errors,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
