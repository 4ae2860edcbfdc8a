"""How fast a webhook is answered: signed deliveries to `POST /webhooks/embedding/{id}` on the local
stack, each verified, checked against the store, queued on SQS and answered 202 (goal: within a
second). The deliveries repeat a finished asset's result, so the consumer applies them as no-ops.

    python -m bench.webhook_latency --deliveries 300
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from bench.common import machine, serve, summary
from tests.e2e.conftest import RunningStack

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=300)
    args = parser.parse_args()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    work = Path(tempfile.mkdtemp(prefix="allthethings-webhooks-"))
    base, server = serve(FIXTURES / "text")
    # The stack's own Replicate is not needed: embeddings are local, and the secret is ours.
    stack = RunningStack(work, REPLICATE_API_BASE="http://127.0.0.1:9/v1", REPLICATE_API_TOKEN="unused",
                         REPLICATE_WEBHOOK_SECRET=secret)
    try:
        asset = stack.wait_for(stack.http.post("/api/assets", json={"url": f"{base}/sourdough.md"}).json()["id"])
        payload = json.dumps({"id": "p-bench", "status": "succeeded", "output": []})
        signer = Webhook(secret)
        latencies = []
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            for n in range(args.deliveries):
                msg_id = f"msg_bench_{n}"
                stamp = datetime.now(timezone.utc)
                headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                           "webhook-signature": signer.sign(msg_id, stamp, payload),
                           "content-type": "application/json"}
                started = time.perf_counter()
                response = http.post(f"/webhooks/embedding/{asset['id']}", content=payload, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 202, response.text
        time.sleep(3)
        after = stack.http.get(f"/api/assets/{asset['id']}").json()
    finally:
        stack.stop()
        server.shutdown()
    print(json.dumps({"machine": machine(), "deliveries": args.deliveries, "latency": summary(latencies),
                      "max_ms": round(max(latencies) * 1000, 1),
                      "asset_status_after": after["status"]}, indent=2))


if __name__ == "__main__":
    main()
