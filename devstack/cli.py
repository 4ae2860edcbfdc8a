"""`python -m devstack COMMAND`: the local stack and the operator commands (not part of the layer).

    run [--port N] [--data-dir DIR]     the whole system on embedded parts, in the foreground
                                        (what `make run` calls); Ctrl-C stops it

    indexes [--wait SECONDS]            create or update the store's indexes (Atlas: the unique
                                        B-tree indexes, the vector and the full-text search
                                        indexes) and wait until they answer; idempotent

    redrive [--data-dir DIR]            move every dead-lettered message of the running local
                                        stack (DIR/local-stack.json) back to its queue
    redrive --stack NAME                the same for a deployed stack (its CloudFormation outputs)
    redrive --from DLQ_URL --to URL     one explicit pair

    index FILE.jsonl [--api URL] [--key KEY] [--batch N] [--restart]
                                        send a JSONL file of documents ({"id"?, "title"?, "text",
                                        "metadata"?} a line) to POST /api/documents with a progress
                                        bar; interrupted, the same command carries on where it stopped.
                                        Defaults: the running local stack and its key
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path


def _pairs(args) -> list[tuple[str, ...]]:
    if args.from_url or args.to_url:
        if not (args.from_url and args.to_url):
            raise SystemExit("--from and --to go together")
        return [("queue", args.from_url, args.to_url)]
    if args.stack:
        from allthethings.adapters.aws import client

        outputs = {o["OutputKey"]: o["OutputValue"] for o in
                   client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])}
        return [(name, outputs[f"{name}DeadLetterQueueUrl"], outputs[f"{name}QueueUrl"])
                for name in ("Process", "Fetch", "Source", "Webhook") if f"{name}DeadLetterQueueUrl" in outputs]
    manifest_path = Path(args.data_dir) / "local-stack.json"
    if not manifest_path.exists():
        raise SystemExit(f"{manifest_path} not found: is `make run` running with DATA_DIR={args.data_dir}?")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("aws") == "embedded":
        return [(name, q["dead_letter_url"], q["url"], manifest["embedded_aws_dir"])
                for name, q in manifest["queues"].items()]
    os.environ["AWS_ENDPOINT_URL"] = manifest["aws_endpoint"]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return [(name, q["dead_letter_url"], q["url"]) for name, q in manifest["queues"].items()]


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _local_stack(data_dir: str) -> Path:
    """The data folder of the running local stack: DATA_DIR's if its stack answers, else any
    folder beside it (a `PORT=8001 DATA_DIR=.data2 make run`) whose stack answers; DATA_DIR's
    when none does (the error then names the address it tried)."""
    given = Path(data_dir)
    candidates = [given, *sorted(p.parent for p in Path.cwd().glob("*/local-stack.json") if p.parent != given)]
    for folder in candidates:
        manifest = folder / "local-stack.json"
        if manifest.exists() and _answers(json.loads(manifest.read_text())["url"]):
            return folder
    return given


def _local_url(folder: Path) -> str:
    manifest = folder / "local-stack.json"
    if manifest.exists():
        return json.loads(manifest.read_text())["url"]
    return "http://127.0.0.1:8000"


def _local_key(folder: Path) -> str | None:
    key_file = folder / "api-key"
    return key_file.read_text().strip() if key_file.exists() else None


def _run(args) -> int:
    import faulthandler
    import logging

    from devstack.stack import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A crash in native code (lxml once corrupted the heap under concurrent extraction) leaves
    # every thread's Python stack in the log instead of one line.
    faulthandler.enable()
    stack = LocalStack(port=args.port, data_dir=args.data_dir, host=args.host,
                       pollers=int(os.environ.get("LOCAL_POLLERS", "4")))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.start()
        print(f"allthethings is serving on {stack.url} (data in {stack.data_dir}); Ctrl-C stops it", flush=True)
        if stack.api_key:
            print(f"API key: {stack.api_key} (kept in {stack.data_dir / 'api-key'}; set API_KEYS to use your own)",
                  flush=True)
        stack.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    # Started in the background by a non-interactive shell, a process inherits SIGINT ignored,
    # and Ctrl-C (or a test harness's SIGINT) would not stop the stack or the CLI.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(prog="python -m devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the local stack and serve until Ctrl-C")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"))
    redrive = sub.add_parser("redrive", help="move dead-lettered messages back to their queues")
    redrive.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"))
    redrive.add_argument("--stack", help="a deployed CloudFormation stack's name")
    redrive.add_argument("--from", dest="from_url", help="a dead-letter queue URL")
    redrive.add_argument("--to", dest="to_url", help="the queue URL to move its messages to")
    indexes = sub.add_parser("indexes", help="create or update the store's indexes and wait until queryable")
    indexes.add_argument("--wait", type=float, default=600, help="seconds to wait for the search indexes")
    index = sub.add_parser("index", help="send a JSONL file of documents to POST /api/documents")
    index.add_argument("file", help="one JSON document a line: {\"id\"?, \"title\"?, \"text\", \"metadata\"?}")
    index.add_argument("--api", default=None, help="the API's base URL (default: ALLTHETHINGS_API_URL, else the "
                                                   "local stack of --data-dir)")
    index.add_argument("--key", default=None, help="an API key (default: ALLTHETHINGS_API_KEY, else the local "
                                                   "stack's generated key)")
    index.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"))
    index.add_argument("--batch", type=int, default=100, help="documents per request (at most the API's "
                                                              "MAX_DOCUMENTS_PER_REQUEST)")
    index.add_argument("--in-flight", type=int, default=2, help="requests under way at once")
    index.add_argument("--tries", type=int, default=6, help="how often a batch is sent before the run stops "
                                                            "(with backoff, on no answer, 429 or 5xx)")
    index.add_argument("--restart", action="store_true", help="ignore the saved progress and start from the top")
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.command == "run":
        return _run(args)

    if args.command == "index":
        from devstack import indexer

        local = None if args.api or os.environ.get("ALLTHETHINGS_API_URL") else _local_stack(args.data_dir)
        args.api = args.api or os.environ.get("ALLTHETHINGS_API_URL") or _local_url(local)
        args.key = args.key or os.environ.get("ALLTHETHINGS_API_KEY") or _local_key(local or Path(args.data_dir))
        if args.batch < 1 or args.in_flight < 1 or args.tries < 1:
            raise SystemExit("--batch, --in-flight and --tries must be at least 1")
        return indexer.main(args)

    if args.command == "indexes":
        from allthethings import bootstrap

        deps = bootstrap.deps()
        ensure = getattr(deps.store, "ensure_indexes", None)
        if ensure is None:
            print("the embedded store keeps its indexes itself: nothing to do")
            return 0
        for line in ensure(deps.settings.dimensions, wait_s=args.wait):
            print(line)
        return 0

    from allthethings.adapters.aws import redrive as move

    for name, dead_letter_url, queue_url, *embedded in _pairs(args):
        if embedded:  # the local stack's embedded queues: a queue's URL is its name
            from allthethings.adapters.embedded_queue import shared_queues

            moved = shared_queues(os.path.join(embedded[0], "queues.db")).redrive(dead_letter_url, queue_url)
        else:
            moved = move(dead_letter_url, queue_url)
        print(f"{name}: moved {moved} messages back from its dead-letter queue")
    return 0
