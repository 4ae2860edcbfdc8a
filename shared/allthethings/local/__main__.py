"""`python -m allthethings.local run [--port N] [--data-dir DIR]`: the whole system, in the foreground."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allthethings.local")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the local stack and serve until Ctrl-C")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"))
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A crash in native code (lxml once corrupted the heap under concurrent extraction) leaves
    # every thread's Python stack in the log instead of one line.
    faulthandler.enable()
    # Started in the background by a non-interactive shell, a process inherits SIGINT ignored,
    # and Ctrl-C (or a test harness's SIGINT) would not stop the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from allthethings.local.stack import LocalStack

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


if __name__ == "__main__":
    sys.exit(main())
