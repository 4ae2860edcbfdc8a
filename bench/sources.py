"""Sources (issue 17): a sitemap through `POST /api/sources` against the same URLs submitted one by
one, and the cost of refreshing a sitemap that has not changed.

    python -m bench.sources [--pages 1000] [--refreshes 20] [--polite-pages 100] [--skip-direct]

A local origin (devstack/origin.py: real HTTP on 127.0.0.1, ETags, 304 to a conditional GET)
serves N distinct small HTML pages of real prose (three STS Benchmark dev sentences each, no two
pages alike, no page of one arm repeated in another) and a sitemap that lists them. Each arm runs
on a fresh stack with pages under its own path, so nothing is deduplicated across arms:

- direct: the N URLs sent with `POST /api/assets` by 4 client threads, as a script would; the
  clock runs from the first request until the stack's `allthethings_assets_searchable_total`
  (GET /metrics) reaches N;
- source: one `POST /api/sources` of the sitemap; the clock runs from that request until the
  source's `searchable` (GET /api/sources/{id}) reaches N. The stack runs with
  SOURCE_HOST_DELAY_S=0 and SOURCE_HOST_CONCURRENCY=4: the default politeness (0.5 s between two
  requests to one host) would make N pages of one host take at least N/2 s by design.
  Goal: direct time / source time at least 0.9;
- refresh: after the source arm, `POST /api/sources/{id}/refresh` K times, each waited for until
  the source's `last_refresh_at` changes. Reported: the origin's requests per refresh (goal:
  exactly one, a conditional GET answered 304), the assets submitted (goal: none) and the
  client's wall time from the POST to `last_refresh_at` changing (median, p95);
- polite: a smaller sitemap (`--polite-pages`) on a stack with the default politeness, without a
  goal, so that its cost is visible.

After each arm a few pages' own text is searched for and must find that page first. Prints a
JSON summary, then the same as a markdown table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import (
    load_average,
    machine,
    percentile,
    process_tree_cpu,
    scrape,
    start_stack,
    sts_sentences,
)
from devstack.origin import Origin

SEARCHABLE = "allthethings_assets_searchable_total"
FAILED = "allthethings_assets_failed_total"
SUBMITTED = "allthethings_assets_submitted_total"
UNCHANGED_READS = "allthethings_source_reads_unchanged_total"
FINISHED_ERRORS = ("PROCESSING_ERROR", "EMBEDDINGS_ERROR")
POLL_S = 0.25  # both arms are polled alike
REFRESH_POLL_S = 0.02
CLIENTS = 4
STALL_S = 120  # no asset becoming SEARCHABLE for this long ends an arm as failed
FAST = {"SOURCE_HOST_DELAY_S": "0", "SOURCE_HOST_CONCURRENCY": "4"}


# Where a page's three sentences sit, one lap of the sentences at a time: no difference of two
# offsets repeats within or across laps, so two pages share at most one sentence.
LAPS = [(0, 1, 3), (0, 7, 18), (0, 26, 57), (0, 47, 130), (0, 150, 301)]


def page_texts(n: int) -> list[str]:
    """`n` distinct short texts of three STS Benchmark dev first sentences (a pair's second
    sentence paraphrases its first, so only first sentences are used: no page paraphrases another)."""
    sentences = list(dict.fromkeys(sts_sentences()[::2]))
    if n > len(sentences) * len(LAPS):
        raise ValueError(f"at most {len(sentences) * len(LAPS)} pages")
    return [" ".join(sentences[(i % len(sentences) + k) % len(sentences)] for k in LAPS[i // len(sentences)])
            for i in range(n)]


def page(number: int, text: str) -> bytes:
    title = f"Notes, page {number}"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><article><h1>{title}</h1><p>{html.escape(text)}</p></article></body></html>").encode()


def publish(origin: Origin, arm: str, texts: list[str]) -> tuple[list[str], str]:
    """Serve one page per text under /<arm>/ and a sitemap of them; the pages' URLs and the sitemap's."""
    urls = [origin.put(f"/{arm}/page-{i:05d}.html", page(i, text), "text/html; charset=utf-8")
            for i, text in enumerate(texts)]
    locs = "".join(f"<url><loc>{url}</loc><lastmod>2024-06-01</lastmod></url>" for url in urls)
    body = f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'
    return urls, origin.put(f"/{arm}/sitemap.xml", body.encode(), "application/xml")


def requests_since(origin: Origin, mark: int) -> dict[str, int]:
    """The origin's requests after `mark`, counted as sitemap, robots.txt and page GETs."""
    counts = {"sitemap": 0, "robots": 0, "pages": 0, "other": 0}
    for request in origin.requests[mark:]:
        path = request["path"]
        key = ("sitemap" if path.endswith("sitemap.xml") else "robots" if path == "/robots.txt"
               else "pages" if path.endswith(".html") else "other")
        counts[key] += 1
    return counts


def sanity(stack, urls: list[str], texts: list[str], probes: int = 5) -> dict:
    """Search for a few pages' whole text: each must find its own page first."""
    found, misses = 0, []
    for i in random.Random(17).sample(range(len(texts)), min(probes, len(texts))):
        results = stack.http.get("/api/search", params={"q": texts[i], "limit": 3}).json()["results"]
        top = results[0]["asset"]["url"] if results else None
        found += top == urls[i]
        if top != urls[i]:
            misses.append({"page": urls[i], "first_result": top})
    return {"found_first": f"{found}/{min(probes, len(texts))}", "misses": misses}


def statuses(stack) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        listed = stack.http.get("/api/assets", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        for asset in listed["assets"]:
            counts[asset["status"]] = counts.get(asset["status"], 0) + 1
        cursor = listed["next_cursor"]
        if not cursor:
            return counts


def warm(stack) -> None:
    stack.http.get("/api/search", params={"q": "warm up the model"}).raise_for_status()


def direct_arm(origin: Origin, texts: list[str], work: Path, timeout_s: float) -> dict:
    urls, _ = publish(origin, "direct", texts)
    stack = start_stack(work / "direct")
    metrics_url = f"{stack.url}/metrics"
    try:
        warm(stack)
        before = scrape(metrics_url)
        mark, cpu_before = len(origin.requests), process_tree_cpu(stack.process.pid)
        sent: dict[str, object] = {"refused": []}
        lock = threading.Lock()

        def submit(share: list[str]) -> None:
            with httpx.Client(base_url=stack.url, headers=stack.auth, timeout=60) as client:
                for url in share:
                    response = client.post("/api/assets", json={"url": url})
                    if response.status_code not in (200, 201, 202):
                        with lock:
                            sent["refused"].append((url, response.status_code, response.text[:200]))

        def send_all() -> None:
            try:
                with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                    list(pool.map(submit, [urls[k::CLIENTS] for k in range(CLIENTS)]))
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting loop
                sent["error"] = exc
            sent["s"] = time.perf_counter() - started

        started = time.perf_counter()
        sender = threading.Thread(target=send_all)
        sender.start()
        searchable = failed = 0
        progress_at = 0.0
        while searchable < len(urls):
            now = time.perf_counter() - started
            if "error" in sent:
                raise RuntimeError("the direct submissions stopped") from sent["error"]
            if failed or sent["refused"] or now > timeout_s or now - progress_at > STALL_S:
                raise RuntimeError(f"direct arm: {searchable:.0f} searchable, {failed:.0f} failed, refused "
                                   f"{sent['refused'][:3]}, statuses {statuses(stack)} after {now:.0f} s")
            time.sleep(POLL_S)
            samples = scrape(metrics_url, stack.http)
            if samples.get(SEARCHABLE, 0) - before.get(SEARCHABLE, 0) > searchable:
                progress_at = time.perf_counter() - started
            searchable = samples.get(SEARCHABLE, 0) - before.get(SEARCHABLE, 0)
            failed = samples.get(FAILED, 0) - before.get(FAILED, 0)
        elapsed = time.perf_counter() - started
        cpu_after = process_tree_cpu(stack.process.pid)
        sender.join()
        return {"pages": len(urls), "clients": CLIENTS, "all_sent_after_s": round(sent["s"], 2),
                "all_searchable_after_s": round(elapsed, 2), "pages_per_s": round(len(urls) / elapsed, 2),
                "origin_requests": requests_since(origin, mark),
                "cpu_s": {k: round(v - cpu_before.get(k, 0), 1) for k, v in cpu_after.items()},
                "statuses": statuses(stack), "sanity_exact_text_search": sanity(stack, urls, texts),
                "stack_log_tracebacks": stack.log.read_text(errors="replace").count("Traceback")}
    finally:
        stack.stop()


def wait_searchable(stack, source_id: str, n: int, started: float, timeout_s: float) -> tuple[dict, float | None]:
    """Poll the source until `n` of its assets are SEARCHABLE; the view, and when (on the
    benchmark's clock) nothing was pending any more."""
    drained_at, progress_at, searchable = None, 0.0, 0
    while True:
        view = stack.http.get(f"/api/sources/{source_id}").json()
        now = time.perf_counter() - started
        if view["searchable"] > searchable:
            progress_at, searchable = now, view["searchable"]
        if drained_at is None and view["items"]["total"] >= n and view["items"]["pending"] == 0:
            drained_at = now
        if view["searchable"] >= n:
            return view, drained_at
        errors = sum(view["assets"].get(s, 0) for s in FINISHED_ERRORS)
        # Every SUBMITTED entry names an asset recorded before it: fewer assets than that, for
        # longer than a poll's race, is an asset lost, which no wait brings back.
        lost = view["items"]["submitted"] - sum(view["assets"].values())
        if errors or view["items"]["refused"] or view.get("last_error") or now > timeout_s \
                or now - progress_at > STALL_S or (lost > 0 and drained_at is not None and now - drained_at > 15):
            raise RuntimeError(f"source arm: {view} after {now:.0f} s" + (
                f"; {lost} submitted entries name an asset that no longer exists" if lost > 0 else ""))
        time.sleep(POLL_S)


def source_arm(origin: Origin, arm: str, texts: list[str], work: Path, env: dict, timeout_s: float,
               refreshes: int = 0) -> dict:
    urls, sitemap = publish(origin, arm, texts)
    stack = start_stack(work / arm, SOURCE_MAX_ITEMS=str(max(1000, len(texts))), **env)
    metrics_url = f"{stack.url}/metrics"
    try:
        warm(stack)
        mark, cpu_before = len(origin.requests), process_tree_cpu(stack.process.pid)
        started = time.perf_counter()
        response = stack.http.post("/api/sources", json={"url": sitemap})
        answered = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"POST /api/sources answered {response.status_code}: {response.text[:300]}")
        source_id = response.json()["id"]
        view, drained_at = wait_searchable(stack, source_id, len(urls), started, timeout_s)
        elapsed = time.perf_counter() - started
        cpu_after = process_tree_cpu(stack.process.pid)
        result = {"pages": len(urls), "environment": env, "post_answered_after_s": round(answered, 2),
                  "all_submitted_after_s": round(drained_at, 2) if drained_at is not None else None,
                  "all_searchable_after_s": round(elapsed, 2), "pages_per_s": round(len(urls) / elapsed, 2),
                  "origin_requests": requests_since(origin, mark),
                  "cpu_s": {k: round(v - cpu_before.get(k, 0), 1) for k, v in cpu_after.items()},
                  "items": view["items"], "statuses": statuses(stack),
                  "sanity_exact_text_search": sanity(stack, urls, texts)}
        if refreshes:
            result["refresh"] = refresh_arm(stack, origin, source_id, metrics_url, refreshes, timeout_s)
        result["stack_log_tracebacks"] = stack.log.read_text(errors="replace").count("Traceback")
        return result
    finally:
        stack.stop()


def refresh_arm(stack, origin: Origin, source_id: str, metrics_url: str, k: int, timeout_s: float) -> dict:
    time.sleep(1)  # let anything still under way after the last searchable asset finish
    before = scrape(metrics_url)
    items_before = stack.http.get(f"/api/sources/{source_id}").json()["items"]
    walls, per_refresh = [], []
    for _ in range(k):
        last = stack.http.get(f"/api/sources/{source_id}").json()["last_refresh_at"]
        mark = len(origin.requests)
        started = time.perf_counter()
        response = stack.http.post(f"/api/sources/{source_id}/refresh")
        if response.status_code != 202:
            raise RuntimeError(f"refresh answered {response.status_code}: {response.text[:300]}")
        while stack.http.get(f"/api/sources/{source_id}").json()["last_refresh_at"] == last:
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"the refresh of {source_id} did not happen in {timeout_s} s")
            time.sleep(REFRESH_POLL_S)
        walls.append(time.perf_counter() - started)
        time.sleep(0.5)  # any request of this refresh after last_refresh_at changed is still counted
        asked = origin.requests[mark:]
        per_refresh.append({"requests": len(asked),
                            "conditional": sum(bool(r["if_none_match"]) for r in asked),
                            "paths": sorted({r["path"] for r in asked})})
    after = scrape(metrics_url)
    view = stack.http.get(f"/api/sources/{source_id}").json()
    answered_304 = int(after.get(UNCHANGED_READS, 0) - before.get(UNCHANGED_READS, 0))
    submitted = int(after.get(SUBMITTED, 0) - before.get(SUBMITTED, 0))
    return {
        "refreshes": k,
        "origin_requests_per_refresh": [r["requests"] for r in per_refresh],
        "conditional_gets_per_refresh": [r["conditional"] for r in per_refresh],
        "paths_asked": sorted({p for r in per_refresh for p in r["paths"]}),
        "answered_304": answered_304,
        "assets_submitted": submitted,
        "goal_met": all(r["requests"] == r["conditional"] == 1 for r in per_refresh) and answered_304 == k
        and submitted == 0 and view["items"] == items_before,
        "items_before": items_before,
        "items_after": view["items"],
        "searchable_after": view["searchable"],
        "wall_ms": {"p50": round(percentile(walls, 50) * 1000, 1), "p95": round(percentile(walls, 95) * 1000, 1),
                    "mean": round(statistics.fmean(walls) * 1000, 1), "max": round(max(walls) * 1000, 1)},
    }


def markdown(report: dict) -> str:
    rows = ["| measure | value | goal |", "|---|---|---|"]
    n = report["pages"]
    direct, source = report.get("direct"), report["source"]
    if direct:
        rows.append(f"| {n} pages, `POST /api/assets` ({direct['clients']} clients): all SEARCHABLE after | "
                    f"{direct['all_searchable_after_s']} s (all sent after {direct['all_sent_after_s']} s) | |")
    rows.append(f"| {n} pages, one sitemap via `POST /api/sources` (SOURCE_HOST_DELAY_S=0, "
                f"SOURCE_HOST_CONCURRENCY=4): all SEARCHABLE after | {source['all_searchable_after_s']} s "
                f"(all submitted after {source['all_submitted_after_s']} s) | |")
    if report.get("ratio") is not None:
        rows.append(f"| direct time / source time | **{report['ratio']}** | ≥ 0.9 |")
    refresh = source.get("refresh")
    if refresh:
        asked = refresh["origin_requests_per_refresh"]
        spread = str(asked[0]) if min(asked) == max(asked) else f"{min(asked)} to {max(asked)}"
        rows.append(f"| refresh of the unchanged sitemap ({refresh['refreshes']}×): origin requests per refresh | "
                    f"{spread}, {sum(refresh['conditional_gets_per_refresh'])} conditional, "
                    f"{refresh['answered_304']} answered 304 | exactly 1, a conditional GET answered 304 |")
        rows.append(f"| assets submitted by those refreshes | {refresh['assets_submitted']} | 0 |")
        rows.append(f"| refresh wall time, POST to `last_refresh_at` changing: median / p95 | "
                    f"{refresh['wall_ms']['p50']} / {refresh['wall_ms']['p95']} ms | |")
    polite = report.get("polite")
    if polite:
        env = polite["environment"]
        rows.append(f"| {polite['pages']} pages by sitemap at the default politeness (SOURCE_HOST_DELAY_S="
                    f"{env['SOURCE_HOST_DELAY_S']}, SOURCE_HOST_CONCURRENCY={env['SOURCE_HOST_CONCURRENCY']}): "
                    f"all SEARCHABLE after | {polite['all_searchable_after_s']} s | none |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--polite-pages", type=int, default=100, help="pages at the default politeness; 0 skips")
    parser.add_argument("--skip-direct", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds an arm may take")
    args = parser.parse_args()

    from allthethings.config import Settings

    defaults = Settings()
    polite_env = {"SOURCE_HOST_DELAY_S": str(defaults.source_host_delay_s),
                  "SOURCE_HOST_CONCURRENCY": str(defaults.source_host_concurrency)}
    texts = page_texts(2 * args.pages + args.polite_pages)
    work = Path(tempfile.mkdtemp(prefix="allthethings-sources-"))
    report: dict = {"machine": machine(), "pages": args.pages, "load_average_at_start": load_average()}
    with Origin() as origin:
        if not args.skip_direct:
            report["direct"] = direct_arm(origin, texts[:args.pages], work, args.timeout)
        report["source"] = source_arm(origin, "sitemap", texts[args.pages:2 * args.pages], work, FAST,
                                      args.timeout, refreshes=args.refreshes)
        if args.polite_pages:
            report["polite"] = source_arm(origin, "polite", texts[2 * args.pages:], work, polite_env, args.timeout)
    if "direct" in report:
        report["ratio"] = round(report["direct"]["all_searchable_after_s"] / report["source"]["all_searchable_after_s"],
                                3)
        report["ratio_goal_met"] = report["ratio"] >= 0.9
    report["load_average_at_end"] = load_average()
    print(json.dumps(report, indent=2))
    print()
    print(markdown(report))


if __name__ == "__main__":
    main()
