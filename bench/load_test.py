"""Load test of the local stack: concurrent submissions, then concurrent searches, then a full accounting.

Serves N distinct short text documents (STS Benchmark dev sentences) from 127.0.0.1 and submits
them to a fresh local stack from concurrent clients through `POST /api/assets`, waits until every
asset is final, then sends concurrent `GET /api/search` requests (hybrid, vector and keyword in
turn). A mixed phase follows: more submissions while searches run. Last, every asset is listed
through `GET /api/assets` and each submitted id must appear exactly once, `SEARCHABLE`, under its
URL. Exits 1 if any request failed (a non-2xx answer or a transport error), any answer was made
for another request (a submission answered with another URL's asset, a search whose next_cursor
belongs to another query or mode), or any asset is missing, duplicated or not `SEARCHABLE`.

    python -m bench.load_test --submissions 500 --searches 2000 --clients 16
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from allthethings.domain import cursor as cursors
from allthethings.domain.search import Mode, SearchFilter, fingerprint
from bench.common import corpus, machine, serve, summary
from tests.e2e.conftest import RunningStack

MODES = ("hybrid", "vector", "keyword")
FINAL = {"SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR"}


class Recorder:
    """Every request's outcome: latency, status (or the transport error's name), a label."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int | str]] = []  # label, latency, status
        self._lock = threading.Lock()

    def call(self, label: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = send()
        except httpx.HTTPError as exc:
            outcome, response = type(exc).__name__, None
        else:
            outcome = response.status_code
        with self._lock:
            self.rows.append((label, time.perf_counter() - started, outcome))
        return response

    @staticmethod
    def failed(outcome: int | str) -> bool:
        return not (isinstance(outcome, int) and 200 <= outcome < 300)

    def errors(self, label_prefix: str = "") -> dict[str, int]:
        counts = collections.Counter(str(o) for label, _, o in self.rows
                                     if label.startswith(label_prefix) and self.failed(o))
        return dict(counts)

    def latencies(self, label_prefix: str) -> list[float]:
        return [t for label, t, _ in self.rows if label.startswith(label_prefix)]


def submit_all(stack: RunningStack, urls: list[str], clients: int, rec: Recorder,
               label: str) -> tuple[dict[str, str], list[str]]:
    """url -> asset id for every submission answered with a 2xx, and the answers that describe an asset
    of another URL than the one sent (every URL here is new, so each answer must be a 202 for that URL)."""
    # One client shared by the submitting threads, as in ingest_search.py: building one per request
    # costs more CPU than the request, and the harness shares the two cores with the stack.
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=clients), headers=stack.auth)
    ids: dict[str, str] = {}
    misanswered: list[str] = []
    lock = threading.Lock()

    def submit(url: str) -> None:
        response = rec.call(label, lambda: http.post(f"{stack.url}/api/assets", json={"url": url}))
        if response is not None and response.is_success:
            asset = response.json()
            with lock:
                ids[url] = asset["id"]
                if asset["url"] != url or response.status_code != 202:
                    on_the_wire = json.loads(response.request.content)["url"]  # what httpx sent, to rule it out
                    misanswered.append(f"sent {on_the_wire}, answered {response.status_code} for {asset['url']}")

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(submit, urls))
    http.close()
    for line in misanswered:
        print(f"misanswered: {line}", file=sys.stderr)
    return ids, misanswered


def list_all(stack: RunningStack, rec: Recorder) -> list[dict]:
    """Every asset, paging through `GET /api/assets` 100 at a time."""
    assets, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = rec.call("list", lambda p=params: stack.http.get("/api/assets", params=p))
        if response is None or not response.is_success:
            raise RuntimeError(f"listing assets failed: {response.status_code if response else 'transport error'}")
        page = response.json()
        assets.extend(page["assets"])
        cursor = page["next_cursor"]
        if not cursor:
            return assets


def wait_final(stack: RunningStack, ids: set[str], rec: Recorder, timeout_s: float) -> dict[str, str]:
    """Polls the listing until every id is final (or the timeout passes); id -> last status seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {a["id"]: a["status"] for a in list_all(stack, rec)}
        if all(seen.get(i) in FINAL for i in ids) or time.monotonic() > deadline:
            return {i: seen.get(i, "MISSING") for i in ids}
        time.sleep(1.0)  # listing every asset costs the stack CPU; do not poll harder


def answered_for(query: str, mode: str, body: dict) -> bool | None:
    """Whether a search answer was computed for this query and mode: its next_cursor carries the
    fingerprint of the search it was made for (None when there is no next page to tell)."""
    if not body.get("next_cursor"):
        return None
    made_for = cursors.decode(body["next_cursor"], "q", "o")["q"]
    return made_for == fingerprint(query.strip(), Mode(mode), SearchFilter())


def search_all(stack: RunningStack, plan: list[tuple[str, str]], clients: int, rec: Recorder, label: str,
               checks: collections.Counter) -> list[str]:
    """Runs the plan; counts empty pages and checked answers in `checks`; returns the answers that
    were computed for another search than the one sent."""
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=clients), headers=stack.auth)
    lock = threading.Lock()
    misanswered: list[str] = []

    def one(item: tuple[str, str]) -> None:
        query, mode = item
        response = rec.call(f"{label}:{mode}", lambda: http.get(f"{stack.url}/api/search",
                                                                params={"q": query, "mode": mode, "limit": 10}))
        if response is None or not response.is_success:
            return
        body = response.json()
        verdict = answered_for(query, mode, body)
        with lock:
            checks[f"empty_{mode}"] += not body["results"]
            checks["checked"] += verdict is not None
            if verdict is False:
                misanswered.append(f"{mode} {query!r}")

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, plan))
    http.close()
    for line in misanswered:
        print(f"search answered for another query: {line}", file=sys.stderr)
    return misanswered


def search_plan(queries: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(rng.choice(queries), MODES[i % len(MODES)]) for i in range(n)]


def search_report(rec: Recorder, label: str, wall_s: float, n: int, checks: collections.Counter,
                  misanswered: list[str]) -> dict:
    report = {"requests": n, "searches_per_s": round(n / wall_s, 1), "wall_s": round(wall_s, 1),
              "overall": summary(rec.latencies(f"{label}:"))}
    for mode in MODES:
        report[mode] = {**summary(rec.latencies(f"{label}:{mode}")), "empty_results": checks[f"empty_{mode}"]}
    report["errors"] = rec.errors(f"{label}:")
    report["answers_checked_against_their_query"] = checks["checked"]
    report["answered_for_another_query"] = misanswered
    return report


def account(stack: RunningStack, submitted: dict[str, str], rec: Recorder) -> dict:
    """Each accepted URL listed exactly once, SEARCHABLE, under the id its answer gave; nothing else listed.

    `lost` counts URLs, not ids: a URL without exactly one SEARCHABLE asset of its own is lost,
    whatever the answer to its submission said."""
    listed = list_all(stack, rec)
    by_id = collections.Counter(a["id"] for a in listed)
    by_url: dict[str, list[dict]] = collections.defaultdict(list)
    for asset in listed:
        by_url[asset["url"]].append(asset)
    lost = [f"{url}: " + (", ".join(f"{a['id']} {a['status']}" for a in by_url[url]) or "not listed")
            for url in submitted if [a["status"] for a in by_url[url]] != ["SEARCHABLE"]]
    not_as_answered = [f"{url}: answered {asset_id}, listed {[a['id'] for a in by_url[url]]}"
                       for url, asset_id in submitted.items() if [a["id"] for a in by_url[url]] != [asset_id]]
    duplicated_ids = sorted(i for i, n in by_id.items() if n > 1)
    unexpected = sorted(set(by_id) - set(submitted.values()))
    return {"listed": len(listed), "urls_accepted": len(submitted),
            "distinct_ids_answered": len(set(submitted.values())),
            "lost": lost[:20], "lost_count": len(lost),
            "not_as_answered": not_as_answered[:20], "not_as_answered_count": len(not_as_answered),
            "duplicated_ids": duplicated_ids[:20], "duplicated_count": len(duplicated_ids),
            "unexpected_ids": unexpected[:20], "unexpected_count": len(unexpected)}


def log_problems(log: Path) -> dict:
    """Counts of error lines and tracebacks the stack wrote, as a pointer for whoever reads the report."""
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = text.splitlines()
    return {"traceback_lines": sum("Traceback" in line for line in lines),
            "error_lines": sum('"level":"ERROR"' in line.replace(" ", "") or " ERROR " in line for line in lines)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--mixed-submissions", type=int, default=250,
                        help="submissions of further documents while searches run (0: no mixed phase)")
    parser.add_argument("--mixed-searches", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every asset to be final")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    mixed = args.mixed_submissions > 0 and args.mixed_searches > 0

    total_docs = args.submissions + (args.mixed_submissions if mixed else 0)
    docs, queries = corpus(total_docs)
    query_texts = [text for text, index in queries if index < args.submissions]
    work = Path(tempfile.mkdtemp(prefix="allthethings-load-"))
    (work / "docs").mkdir()
    for i, text in enumerate(docs):
        (work / "docs" / f"doc-{i:05d}.txt").write_text(text)
    base, server = serve(work / "docs")
    urls = [f"{base}/doc-{i:05d}.txt" for i in range(total_docs)]
    print(f"data dir {work} (stack log: {work / 'stack' / 'stack.log'})", file=sys.stderr)

    rec = Recorder()
    # Other work on the machine moves every number here; the load average says whether there was any.
    report: dict = {"machine": machine(), "date": datetime.date.today().isoformat(), "clients": args.clients,
                    "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    stack = RunningStack(work / "stack")
    try:
        stack.http.get("/api/search", params={"q": "warm up the model"})

        # Phase 1: submissions from concurrent clients, then until every asset is final.
        started = time.perf_counter()
        submitted, misanswered = submit_all(stack, urls[:args.submissions], args.clients, rec, "submit")
        answered_s = time.perf_counter() - started
        print(f"{len(submitted)} of {args.submissions} submissions answered in {answered_s:.1f} s", file=sys.stderr)
        final = wait_final(stack, set(submitted.values()), rec, args.timeout)
        final_s = time.perf_counter() - started
        statuses = collections.Counter(final.values())
        print(f"final after {final_s:.1f} s: {dict(statuses)}", file=sys.stderr)
        report["submissions"] = {
            "requests": args.submissions, "answers_per_s": round(args.submissions / answered_s, 1),
            "latency": summary(rec.latencies("submit")), "errors": rec.errors("submit"),
            "answered_for_another_url": misanswered,
            "end_to_end_docs_per_s": round(args.submissions / final_s, 1), "end_to_end_s": round(final_s, 1),
            "final_statuses": dict(statuses)}

        # Phase 2: searches from concurrent clients on the ingested corpus.
        checks: collections.Counter = collections.Counter()
        plan = search_plan(query_texts, args.searches, args.seed)
        started = time.perf_counter()
        wrong_searches = search_all(stack, plan, args.clients, rec, "search", checks)
        report["searches"] = search_report(rec, "search", time.perf_counter() - started, args.searches, checks,
                                           wrong_searches)
        report["searches"]["distinct_queries"] = len({q for q, _ in plan})
        print(f"searches: {report['searches']['searches_per_s']}/s", file=sys.stderr)

        # Phase 3 (mixed): further submissions with half the clients while the other half search.
        if mixed:
            half = max(1, args.clients // 2)
            checks = collections.Counter()
            plan = search_plan(query_texts, args.mixed_searches, args.seed + 1)
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                submitting = pool.submit(submit_all, stack, urls[args.submissions:], half, rec, "mixed-submit")
                searching = pool.submit(search_all, stack, plan, half, rec, "mixed-search", checks)
                more, more_misanswered = submitting.result()
                answered_s = time.perf_counter() - started
                more_wrong_searches = searching.result()
                searched_s = time.perf_counter() - started
            final_more = wait_final(stack, set(more.values()), rec, args.timeout)
            final_s = time.perf_counter() - started
            submitted.update(more)
            misanswered += more_misanswered
            wrong_searches += more_wrong_searches
            report["mixed"] = {
                "clients_submitting": half, "clients_searching": half,
                "submissions": {"requests": args.mixed_submissions,
                                "answers_per_s": round(args.mixed_submissions / answered_s, 1),
                                "latency": summary(rec.latencies("mixed-submit")),
                                "errors": rec.errors("mixed-submit"),
                                "answered_for_another_url": more_misanswered,
                                "end_to_end_docs_per_s": round(args.mixed_submissions / final_s, 1),
                                "end_to_end_s": round(final_s, 1),
                                "final_statuses": dict(collections.Counter(final_more.values()))},
                "searches": search_report(rec, "mixed-search", searched_s, args.mixed_searches, checks,
                                         more_wrong_searches),
                "searches_ended_before_ingest_did": searched_s < final_s}

        accounting = account(stack, submitted, rec)
    finally:
        stack.stop()
        server.shutdown()

    # A refused submission is an error already; lost is a URL accepted that has no SEARCHABLE asset of its own.
    lost = accounting["lost_count"]
    inconsistent = accounting["not_as_answered_count"] + accounting["duplicated_count"] \
        + accounting["unexpected_count"]
    errors = sum(1 for _, _, outcome in rec.rows if Recorder.failed(outcome))
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["accounting"] = accounting
    report["requests_total"] = len(rec.rows)
    report["errors_total"] = errors
    report["errors_by_kind"] = rec.errors()
    report["lost_assets"] = lost
    report["answered_for_another_url"] = len(misanswered)
    report["searches_answered_for_another_query"] = len(wrong_searches)
    report["stack_log"] = {"path": str(stack.log), **log_problems(stack.log)}
    print(json.dumps(report, indent=2))
    return 1 if errors or lost or misanswered or wrong_searches or inconsistent else 0


if __name__ == "__main__":
    sys.exit(main())
