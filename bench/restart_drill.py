"""Restart drill: `kill -9` the local stack with URLs in flight, start it again on the same DATA_DIR,
and count what the restart carried to SEARCHABLE with no user action.

Serves N short text documents (STS Benchmark dev sentences) from 127.0.0.1, starts the stack on its
embedded queues and bucket (LOCAL_AWS=embedded), submits every URL from concurrent clients and
kills the stack's process with SIGKILL while work is in flight: by default once every submission
is answered and a fraction of the assets is SEARCHABLE (`--kill-at-fraction`), or a fixed time
after the first submission (`--kill-after-s`, which may cut submissions off). The statuses at the
kill are read from the store's file once the process is dead (the truth, not a listing racing the
pollers). The stack is then started again with the same API key, and the drill measures how long
it takes to answer `/api/health` (the resume of unfinished assets runs before it serves) and to
carry every asset to a final status. After a clean stop it reads the store's file again: statuses
and errors, chunk rows against each asset's chunk_count, duplicate (asset_id, idx) rows, search
rows (vectors, full text) against searchable chunks, and messages left in the queues.

At the kill it also lists unfinished assets that no queue message names and no prediction waits
for (a kill between an asset's record and its queued work): the resume queues their work.

With `--backend replicate` the stack embeds through its local Replicate, as production does through
Replicate (EMBEDDER_BACKEND=replicate; devstack starts the local Replicate in the stack's process
and points REPLICATE_API_BASE at it). That server counts the predictions it creates per model
(`GET /v1/_local/stats`, found through DATA_DIR/local-stack.json) and dies with the process: the
drill reads the count a moment before SIGKILL (so it can miss a prediction created in between) and
once more before the clean stop (exact for the restarted run). The restarted run's count is
compared with the embedding groups the assets not SEARCHABLE at the kill need (one waiting for a
prediction lost in the kill legitimately asks again). Per asset, the count comes from the stack's
request log: the local Replicate delivers one webhook per finished prediction to
`/webhooks/embedding/{asset id}`, and the log records each request with its status.

    python -m bench.restart_drill --docs 2000
    python -m bench.restart_drill --docs 2000 --backend replicate --kill-at-fraction 0.4
    python -m bench.restart_drill --docs 2000 --kill-after-s 20
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import math
import re
import secrets
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import corpus, machine, serve
from tests.e2e.conftest import RunningStack

FINAL = ("SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR")
EMBEDDING_MODEL = "replicate/all-mpnet-base-v2"  # the local Replicate's name for its embedding model


def store(data: Path):
    """A connection to the store's file, closed after the block (reads only: WAL lets the stack write on)."""
    return contextlib.closing(sqlite3.connect(data / "allthethings.db", timeout=30))


def statuses(data: Path) -> dict[str, int]:
    """How many assets the store's file holds in each status (a read of the file: no stack needed)."""
    with store(data) as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM assets GROUP BY status ORDER BY status").fetchall())


def submit_all(url: str, auth: dict, base: str, n: int, clients: int) -> tuple[list[str], int, float]:
    """POST every document's URL from `clients` threads sharing one client: the ids answered, how many
    submissions got no answer (the stack was killed under them), and the seconds it took."""
    # One client shared by the threads: building one per request costs more CPU than the request.
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=clients), headers=auth)

    def submit(i: int) -> str | None:
        try:
            response = http.post(f"{url}/api/assets", json={"url": f"{base}/doc-{i:05d}.txt"})
            response.raise_for_status()
            return response.json()["id"]
        except httpx.HTTPError:  # a kill during submissions (--kill-after-s) cuts some off
            return None

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answered = list(pool.map(submit, range(n)))
    http.close()
    ids = [i for i in answered if i]
    return ids, len(answered) - len(ids), time.perf_counter() - started


def replicate_stats(data: Path) -> dict[str, int] | None:
    """Predictions the stack's local Replicate has created so far, by model (None: it did not answer)."""
    manifest = json.loads((data / "local-stack.json").read_text())
    replicate = manifest.get("replicate")
    if not replicate:
        return None
    try:
        response = httpx.get(f"{replicate['url']}/_local/stats", timeout=10,
                             headers={"Authorization": f"Bearer {replicate['token']}"})
        return response.json()["created"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def listing(stack: RunningStack) -> dict[str, dict]:
    """Every asset as the API lists it (what a user sees), by id."""
    assets, cursor = {}, None
    while True:
        page = stack.http.get("/api/assets", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        assets.update({a["id"]: a for a in page["assets"]})
        cursor = page["next_cursor"]
        if not cursor:
            return assets


def wait_until_final(data: Path, total: int, timeout_s: float, started: float) -> tuple[dict, dict]:
    """Seconds from `started` until half, 90 %, 99 % and all of the assets in the store's file had a
    final status (a share not reached within `timeout_s` is missing), and the last counts read.
    Reading the file costs the stack nothing, unlike a listing."""
    counts: dict[str, int] = {}
    reached: dict[str, float] = {}
    shares = {"50%": 0.5, "90%": 0.9, "99%": 0.99, "all": 1.0}
    said = started
    while time.perf_counter() - started < timeout_s:
        counts = statuses(data)
        done = sum(counts.get(s, 0) for s in FINAL)
        elapsed = time.perf_counter() - started
        reached.update({k: round(elapsed, 1) for k, share in shares.items()
                        if k not in reached and done >= math.ceil(share * total)})
        if "all" in reached:
            break
        if time.perf_counter() - said >= 30:
            said = time.perf_counter()
            print(f"{elapsed:.0f} s after the restart: {counts}", file=sys.stderr)
        time.sleep(0.25)
    return reached, counts


def vector_rows(data: Path, searchable: str) -> dict:
    """Rows of the vector table, and those not of a searchable chunk (read with sqlite-vec loaded, through
    sqlean when this Python's sqlite3 cannot load extensions, as the store itself does)."""
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        connect = sqlite3.connect
    else:
        import sqlean

        connect = sqlean.connect
    import sqlite_vec

    with contextlib.closing(connect(str(data / "allthethings.db"), timeout=30)) as db:
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        return {"vector_rows": db.execute("SELECT COUNT(*) FROM chunk_vectors").fetchone()[0],
                "vector_rows_not_of_a_searchable_chunk": db.execute(
                    f"SELECT COUNT(*) FROM chunk_vectors WHERE rowid NOT IN ({searchable})").fetchone()[0]}


def store_check(data: Path) -> dict:
    """What the store's file holds after a clean stop: duplicate chunk rows, assets whose chunk rows do
    not match their chunk_count, and search rows that are not exactly one per searchable chunk."""
    with store(data) as db:
        duplicated = db.execute("SELECT asset_id, idx, COUNT(*) FROM chunks GROUP BY asset_id, idx "
                                "HAVING COUNT(*) > 1").fetchall()
        mismatched = db.execute(
            "SELECT a.id, a.status, a.chunk_count, COUNT(c.rowid) FROM assets a "
            "LEFT JOIN chunks c ON c.asset_id = a.id WHERE a.chunk_count IS NOT NULL "
            "GROUP BY a.id HAVING COUNT(c.rowid) != a.chunk_count").fetchall()
        searchable = "SELECT c.rowid FROM chunks c JOIN assets a ON a.id = c.asset_id WHERE a.status = 'SEARCHABLE'"
        report = {
            "chunk_rows": db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
            "duplicate_chunk_rows": [{"asset": a, "idx": i, "rows": n} for a, i, n in duplicated],
            "assets_whose_chunk_rows_differ_from_chunk_count": len(mismatched),
            "examples": [{"asset": a, "status": s, "chunk_count": c, "rows": n} for a, s, c, n in mismatched[:10]],
            "searchable_chunks": db.execute(f"SELECT COUNT(*) FROM ({searchable})").fetchone()[0],
            "full_text_rows": db.execute("SELECT COUNT(*) FROM chunk_fts").fetchone()[0],
            "full_text_rows_not_of_a_searchable_chunk": db.execute(
                f"SELECT COUNT(*) FROM chunk_fts WHERE rowid NOT IN ({searchable})").fetchone()[0],
        }
    return report | vector_rows(data, searchable)


def group_counts(data: Path, group: int) -> dict[str, int]:
    """Embedding predictions each asset needs from its first group: ceil(chunk_count / group), by id."""
    with store(data) as db:
        return {a: math.ceil((c or 0) / group) for a, c in db.execute("SELECT id, chunk_count FROM assets")}


def searchable_ids(data: Path) -> set[str]:
    with store(data) as db:
        return {a for (a,) in db.execute("SELECT id FROM assets WHERE status = 'SEARCHABLE'")}


def queue_messages(data: Path) -> dict[str, dict[str, int]]:
    """Messages in each embedded queue: visible, and received but not deleted (in flight) or delayed.
    Any left in a dead-letter queue after the recovery is a failure."""
    with contextlib.closing(sqlite3.connect(data / "aws" / "queues.db", timeout=30)) as db:
        rows = db.execute("SELECT queue, SUM(visible_at <= ?), SUM(visible_at > ?) FROM messages GROUP BY queue",
                          (time.time(), time.time())).fetchall()
    return {q: {"visible": v, "in_flight_or_delayed": h} for q, v, h in rows}


def queue_bodies(data: Path) -> dict[str, str]:
    """The bodies of every message in each embedded queue, one string a queue (to look ids up in)."""
    with contextlib.closing(sqlite3.connect(data / "aws" / "queues.db", timeout=30)) as db:
        rows = db.execute("SELECT queue, body FROM messages").fetchall()
    bodies = collections.defaultdict(list)
    for queue, body in rows:
        bodies[queue].append(body)
    return {queue: "\n".join(b) for queue, b in bodies.items()}


def without_a_message(data: Path) -> list[dict]:
    """Unfinished assets that no queue message names and no prediction waits for: the restart must
    queue their work (before it did, only the sweeper moved them on, after STUCK_AFTER_S)."""
    bodies = "\n".join(queue_bodies(data).values())
    with store(data) as db:
        waiting = db.execute("SELECT id, status, url, updated_at FROM assets WHERE prediction_id IS NULL AND status "
                             "IN ('FETCHING', 'SUBMITTED', 'PROCESSED', 'PROCESSING')").fetchall()
    return [{"id": a, "status": s, "url": u, "updated_at": t} for a, s, u, t in waiting if a not in bodies]


def embedding_webhooks(path: Path) -> collections.Counter:
    """Embedding webhooks the stack answered, by asset, from its request log: the local Replicate runs in
    the stack's process and delivers one webhook per finished prediction, sent again only after a 5xx, a
    429 or no answer (not counted here), so this counts each asset's finished embedding predictions in
    that run, including one the stack refuses (409: not the prediction its asset waits for)."""
    answered = re.compile(r'werkzeug .*POST /webhooks/embedding/(\w+) HTTP[^"]*" (\d{3}) ')
    found = collections.Counter()
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            match = answered.search(line)
            if match and not (match.group(2).startswith("5") or match.group(2) == "429"):
                found[match.group(1)] += 1
    return found


def log_problems(path: Path) -> dict:
    """What a stack's log says went wrong: each traceback's exception line (the first line after it
    that is not indented), and lines that say something failed or raised; the first few of each."""
    if not path.exists():
        return {}
    lines = path.read_text(errors="replace").splitlines()
    exceptions, failures = [], []
    for n, line in enumerate(lines):
        if line.startswith("Traceback"):
            exceptions.append(next((x for x in lines[n + 1:] if x and not x[0].isspace()), "?")[:300])
        elif " ERROR " in line or " failed" in line or " raised" in line:
            failures.append(line[:300])
    return {"tracebacks": len(exceptions), "exceptions": dict(collections.Counter(exceptions).most_common(5)),
            "failure_lines": len(failures), "first_failure_lines": failures[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--kill-at-fraction", type=float, default=0.25,
                      help="kill once every submission is answered and this fraction is SEARCHABLE (default)")
    when.add_argument("--kill-after-s", type=float, help="kill this many seconds after the first submission")
    parser.add_argument("--backend", choices=("local", "replicate"), default="local",
                        help="EMBEDDER_BACKEND: the model in the stack's process, or the local Replicate")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pollers", type=int, help="LOCAL_POLLERS: concurrent queue pollers (the stack's default)")
    parser.add_argument("--model-threads", type=int, help="MODEL_THREADS (the stack's default)")
    parser.add_argument("--timeout-s", type=float, default=1800, help="give the restarted stack this long")
    parser.add_argument("--keep", action="store_true", help="keep the data folder even when the drill passes")
    args = parser.parse_args()

    docs, _ = corpus(args.docs)
    work = Path(tempfile.mkdtemp(prefix="allthethings-drill-"))
    (work / "docs").mkdir()
    for i, text in enumerate(docs):
        (work / "docs" / f"doc-{i:05d}.txt").write_text(text)
    base, server = serve(work / "docs")
    data = work / "stack"
    env = {"LOCAL_AWS": "embedded", "EMBEDDER_BACKEND": args.backend,
           "API_KEYS": f"drill=drill_{secrets.token_urlsafe(24)}"}  # the same key for both runs
    if args.pollers:
        env["LOCAL_POLLERS"] = str(args.pollers)
    if args.model_threads:
        env["MODEL_THREADS"] = str(args.model_threads)
    from allthethings.config import load_settings

    group = load_settings().embedding_group_chunks
    report: dict = {"machine": machine(), "docs": args.docs, "backend": args.backend, "clients": args.clients,
                    "data_dir": str(data)}

    # -- first run, killed --------------------------------------------------------------------------
    stack = RunningStack(data, **env)
    print(f"stack up; submitting {args.docs} URLs", file=sys.stderr)
    killed: dict = {}
    once = threading.Lock()

    def kill_now() -> None:
        """Read the counts, then SIGKILL the stack (once, from the timer or the main thread)."""
        with once:
            if killed:
                return
            killed["before"] = statuses(data)
            killed["predictions"] = replicate_stats(data) if args.backend == "replicate" else None
            killed["at"] = time.perf_counter()
            killed["exited_by_itself"] = stack.process.poll()
            stack.process.kill()  # SIGKILL: no handler runs, nothing is flushed or released
            stack.process.wait(timeout=30)

    timer = threading.Timer(args.kill_after_s, kill_now) if args.kill_after_s is not None else None
    if timer:
        timer.start()
    ids, unanswered, submit_s = submit_all(stack.url, stack.auth, base, args.docs, args.clients)
    print(f"{len(ids)} submissions answered ({unanswered} not) after {submit_s:.1f} s", file=sys.stderr)
    if timer:
        timer.join()
    while stack.process.poll() is None and not killed:
        if statuses(data).get("SEARCHABLE", 0) >= args.kill_at_fraction * args.docs:
            kill_now()
        else:
            time.sleep(0.1)
    kill_now()  # the stack died by itself: nothing to kill, but the same reads
    if killed["exited_by_itself"] is not None:
        raise SystemExit(f"the stack exited by itself (code {killed['exited_by_itself']}): see {data / 'stack.log'}")
    stack.http.close()
    at_kill = statuses(data)
    queues_at_kill = queue_messages(data)
    orphans = without_a_message(data)
    bodies_at_kill = queue_bodies(data)
    webhooks_at_kill = bodies_at_kill.get("WebhookQueue", "")
    with store(data) as db:
        waiting_at_kill = [a for (a,) in db.execute("SELECT id FROM assets WHERE status = 'GENERATING_EMBEDDINGS'")]
    # The resume retries each of these, which queues a processing message: one still in the queue from
    # the killed run is then a second message for the same asset.
    twice = [a for a in waiting_at_kill if a in bodies_at_kill.get("ProcessQueue", "")]
    searchable_at_kill = searchable_ids(data)
    (data / "stack.log").rename(data / "stack-killed.log")  # the restart writes a new stack.log
    report.update({"submissions_answered": len(ids), "submissions_unanswered": unanswered,
                   "submit_s": round(submit_s, 1), "statuses_read_just_before_kill": killed["before"],
                   "statuses_at_kill": at_kill, "queue_messages_at_kill": queues_at_kill,
                   "unfinished_without_a_message_at_kill": len(orphans), "examples_without_a_message": orphans[:10]})
    print(f"killed: {at_kill}; {len(orphans)} unfinished assets with no queue message", file=sys.stderr)
    predictions_before, killed_at = killed["predictions"], killed["at"]
    if at_kill.get("SEARCHABLE", 0) == sum(at_kill.values()):
        print("warning: every asset was SEARCHABLE at the kill; the drill tests nothing", file=sys.stderr)

    # -- restart on the same folder -----------------------------------------------------------------
    restarted = time.perf_counter()
    again = RunningStack(data, **env)
    healthy_s = time.perf_counter() - restarted
    total = sum(statuses(data).values())
    print(f"restarted: healthy after {healthy_s:.1f} s; waiting for {total} assets", file=sys.stderr)
    try:
        reached, counts = wait_until_final(data, total, args.timeout_s, restarted)
        final_s = reached.get("all")
        seen = listing(again)  # what the API shows, with each asset's error
        predictions_after = replicate_stats(data) if args.backend == "replicate" else None
    finally:
        again.stop()
        server.shutdown()

    searchable = sum(a["status"] == "SEARCHABLE" for a in seen.values())
    failed = [{"id": i, "status": a["status"], "error": a.get("error")} for i, a in seen.items()
              if a["status"].endswith("_ERROR")]
    unfinished = collections.Counter(a["status"] for a in seen.values() if a["status"] not in FINAL)
    with_error = [{"id": i, "status": a["status"], "error": a["error"]} for i, a in seen.items()
                  if a["status"] == "SEARCHABLE" and a.get("error")]
    report.update({
        "assets": total,
        "assets_listed": len(seen),
        "submitted_ids_missing_from_listing": len(set(ids) - set(seen)),
        "searchable_after_restart": searchable,
        "restart_to_healthy_s": round(healthy_s, 1),
        "restart_to_all_final_s": final_s,
        "restart_to_share_final_s": reached,
        "seconds_from_kill_to_all_final": round(restarted - killed_at + final_s, 1) if final_s is not None else None,
        "statuses_after": counts,
        "unfinished_after_timeout": dict(unfinished),
        "errors": failed[:20],
        "errors_by_text": dict(collections.Counter(f["error"] for f in failed)),
        "searchable_with_an_error_text": with_error[:20],
        "store": store_check(data),
        "queue_messages_left": queue_messages(data),
        "log_problems": {"killed_run": log_problems(data / "stack-killed.log"),
                         "restarted_run": log_problems(data / "stack.log")},
    })
    if args.backend == "replicate":
        needed = group_counts(data, group)
        expected_after = sum(n for a, n in needed.items() if a not in searchable_at_kill)
        # A finished prediction's webhook queued before the kill can still carry its asset (whose prediction
        # id the resume cleared) to SEARCHABLE, if the consumer applies it before the asset asks again.
        answered = sum(n for a, n in needed.items() if a not in searchable_at_kill and a in webhooks_at_kill)
        created_after = (predictions_after or {}).get(EMBEDDING_MODEL)
        deliveries = {"killed_run": embedding_webhooks(data / "stack-killed.log"),
                      "restarted_run": embedding_webhooks(data / "stack.log")}
        per_asset = {run: {"assets_by_predictions": dict(sorted(collections.Counter(found.values()).items())),
                           "assets_with_more_than_one": [
                               {"id": a, "predictions": n, "status_at_kill": "GENERATING_EMBEDDINGS"
                                if a in waiting_at_kill else "other", "processing_message_at_kill": a in twice}
                               for a, n in found.items() if n > 1][:20]}
                     for run, found in deliveries.items()}
        report["embedding_predictions"] = {
            "group_chunks": group,
            "killed_run_read_just_before_kill": (predictions_before or {}).get(EMBEDDING_MODEL),
            "killed_run_at_least_needed": sum(needed[a] for a in searchable_at_kill) + len(waiting_at_kill),
            "restarted_run": created_after,
            "restarted_run_needed": [expected_after - answered, expected_after],
            "webhooks_queued_at_kill_for_unfinished_assets": answered,
            "waiting_assets_with_a_processing_message_at_kill": len(twice),
            "examples_waiting_with_a_processing_message": twice[:10],
            "restarted_run_beyond_needed": created_after - expected_after if created_after is not None else None,
            "restarted_run_per_needed_prediction": round(created_after / expected_after, 3)
            if created_after is not None and expected_after else None,
            "per_asset_from_webhooks_in_the_logs": per_asset,
        }
    print(json.dumps(report, indent=2))
    clean = (searchable == total and not orphans and not failed and not with_error
             and not report["store"]["duplicate_chunk_rows"]
             and not report["store"]["assets_whose_chunk_rows_differ_from_chunk_count"]
             and not (report.get("embedding_predictions") or {}).get("restarted_run_beyond_needed"))
    if clean and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"data kept in {data} (stack-killed.log, stack.log, allthethings.db)", file=sys.stderr)


if __name__ == "__main__":
    main()
