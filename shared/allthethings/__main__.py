"""`python -m allthethings COMMAND`: operator commands.

    indexes [--wait SECONDS]            create or update the store's indexes (Atlas: the unique
                                        B-tree indexes, the vector and the full-text search
                                        indexes) and wait until they answer; idempotent

    redrive [--data-dir DIR]            move every dead-lettered message of the running local
                                        stack (DIR/local-stack.json) back to its queue
    redrive --stack NAME                the same for a deployed stack (its CloudFormation outputs)
    redrive --from DLQ_URL --to URL     one explicit pair
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _pairs(args) -> list[tuple[str, str, str]]:
    if args.from_url or args.to_url:
        if not (args.from_url and args.to_url):
            raise SystemExit("--from and --to go together")
        return [("queue", args.from_url, args.to_url)]
    if args.stack:
        from allthethings.adapters.aws import client

        outputs = {o["OutputKey"]: o["OutputValue"] for o in
                   client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])}
        return [(name, outputs[f"{name}DeadLetterQueueUrl"], outputs[f"{name}QueueUrl"])
                for name in ("Process", "Webhook") if f"{name}DeadLetterQueueUrl" in outputs]
    manifest_path = Path(args.data_dir) / "local-stack.json"
    if not manifest_path.exists():
        raise SystemExit(f"{manifest_path} not found: is `make run` running with DATA_DIR={args.data_dir}?")
    manifest = json.loads(manifest_path.read_text())
    os.environ["AWS_ENDPOINT_URL"] = manifest["aws_endpoint"]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return [(name, q["dead_letter_url"], q["url"]) for name, q in manifest["queues"].items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allthethings")
    sub = parser.add_subparsers(dest="command", required=True)
    redrive = sub.add_parser("redrive", help="move dead-lettered messages back to their queues")
    redrive.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"))
    redrive.add_argument("--stack", help="a deployed CloudFormation stack's name")
    redrive.add_argument("--from", dest="from_url", help="a dead-letter queue URL")
    redrive.add_argument("--to", dest="to_url", help="the queue URL to move its messages to")
    indexes = sub.add_parser("indexes", help="create or update the store's indexes and wait until queryable")
    indexes.add_argument("--wait", type=float, default=600, help="seconds to wait for the search indexes")
    args = parser.parse_args(argv)

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

    for name, dead_letter_url, queue_url in _pairs(args):
        print(f"{name}: moved {move(dead_letter_url, queue_url)} messages back from its dead-letter queue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
