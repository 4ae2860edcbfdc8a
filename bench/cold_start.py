"""Cold start: a fresh interpreter imports a handler and answers its first request.

Each function is timed as a whole process (interpreter start, imports, first event), against a
bare Powertools HTTP handler doing the same. First requests are chosen to need no model and no
network: health, a search request refused for a missing query, an unsigned webhook, and SQS
records for an unknown asset (which open the store).

    python -m bench.cold_start
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, sys, time
path, event_path = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("fn", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
class Context:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"; aws_request_id = "r"
    def get_remaining_time_in_millis(self): return 29000
result = module.handler(json.load(open(event_path)), Context())
print(json.dumps(result)[:200])
"""

BARE = '''
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)


@app.get("/api/health")
def health() -> dict:
    return {"status": "ok"}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event, context):
    return app.resolve(event, context)
'''


def events(tmp: Path) -> dict[str, tuple[Path, Path]]:
    health = json.loads((REPO / "events" / "submit-health.json").read_text())
    search = json.loads((REPO / "events" / "search.json").read_text())
    search.pop("queryStringParameters", None)
    search["rawQueryString"] = ""
    webhook = json.loads((REPO / "events" / "webhook-embedding.json").read_text())
    for name in ("webhook-signature", "webhook-id", "webhook-timestamp"):
        webhook["headers"].pop(name, None)
    audio = json.loads((REPO / "events" / "webhook-audio.json").read_text())
    for name in ("webhook-signature", "webhook-id", "webhook-timestamp"):
        audio["headers"].pop(name, None)
    sqs = json.loads((REPO / "events" / "process-sqs.json").read_text())
    consumer = json.loads((REPO / "events" / "webhook-consumer-sqs.json").read_text())
    written = {}
    for name, event in {"health": health, "search": search, "webhook": webhook, "audio": audio, "sqs": sqs,
                        "consumer": consumer}.items():
        written[name] = tmp / f"{name}.json"
        written[name].write_text(json.dumps(event))
    bare = tmp / "bare_app.py"
    bare.write_text(BARE)
    return {
        "bare Powertools handler": (bare, written["health"]),
        "SubmitFunction": (REPO / "functions/submit/app.py", written["health"]),
        "SearchFunction": (REPO / "functions/search/app.py", written["search"]),
        "WebhookEmbeddingFunction": (REPO / "functions/webhook_embedding/app.py", written["webhook"]),
        "WebhookAudioFunction": (REPO / "functions/webhook_audio/app.py", written["audio"]),
        "ProcessFunction": (REPO / "functions/process/app.py", written["sqs"]),
        "WebhookConsumerFunction": (REPO / "functions/webhook_consumer/app.py", written["consumer"]),
    }


def time_once(module: Path, event: Path, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, str(module), str(event)], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - started


def main(runs: int = 7) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="allthethings-cold-"))
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared"), "STORE_BACKEND": "sqlite",
           "SQLITE_PATH": str(tmp / "cold.db"), "EMBEDDER_BACKEND": "local", "POWERTOOLS_LOG_LEVEL": "WARNING",
           "AWS_DEFAULT_REGION": "us-east-1"}
    cases = events(tmp)
    medians = {}
    for name, (module, event) in cases.items():
        time_once(module, event, env)  # warm the file cache
        medians[name] = statistics.median(time_once(module, event, env) for _ in range(runs))
    base = medians["bare Powertools handler"]
    print(json.dumps({"machine": machine(), "runs": runs,
                      "median_ms": {k: round(v * 1000) for k, v in medians.items()},
                      "ratio_to_bare": {k: round(v / base, 2) for k, v in medians.items()}}, indent=2))


if __name__ == "__main__":
    main()
