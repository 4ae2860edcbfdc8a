"""HTTP calls to a model API with bounded retries: what Replicate and OpenAI-compatible upstreams share.

429, 5xx and transport errors are retried with exponential backoff that honours `Retry-After`;
with a deadline (a time.monotonic() value) no attempt or backoff runs past it, since an API
request must answer within API Gateway's 29 s. What is left becomes UpstreamUnavailable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from allthethings.domain.errors import UpstreamUnavailable

RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def send(client, method: str, path: str, *, service: str, attempts: int, backoff_s: float, timeout_s: float,
         sleep: Callable[[float], None] = time.sleep, deadline: float | None = None, **kwargs):
    """The first answer that is not worth retrying (a success or a 4xx the caller interprets)."""
    import httpx

    last = "no attempt made"
    for attempt in range(attempts):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            kwargs["timeout"] = min(kwargs.get("timeout") or timeout_s, remaining)
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}"
            delay = backoff_s * 2 ** attempt
        else:
            if response.status_code not in RETRYABLE:
                return response
            last = f"HTTP {response.status_code}"
            delay = _retry_after(response.headers.get("retry-after"), backoff_s * 2 ** attempt)
        if attempt + 1 < attempts:
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            sleep(min(delay, 10.0))
    raise UpstreamUnavailable(f"{service} did not answer {method} {path} after {attempts} tries ({last})")


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
