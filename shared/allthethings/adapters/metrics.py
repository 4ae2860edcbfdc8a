"""Metrics: CloudWatch embedded metric format (Powertools Metrics) in Lambda, Prometheus locally.

Names are the services' own (`assets_submitted`, `search_latency`, ...): counts, and latencies
in seconds. EMF gets them as Count and Milliseconds in the `allthethings` namespace, one log
line per invocation; Prometheus as `allthethings_<name>_total` counters and
`allthethings_<name>_seconds` histograms on the local stack's /metrics.
"""

from __future__ import annotations

import threading

from allthethings.ports import Metrics

NAMESPACE = "allthethings"


class EmfMetrics(Metrics):
    """Powertools Metrics; `flush` (after every invocation) writes what was recorded as one EMF line."""

    def __init__(self, namespace: str = NAMESPACE):
        from aws_lambda_powertools import Metrics as Powertools

        self._metrics = Powertools(namespace=namespace)
        self._lock = threading.Lock()  # the process function records from worker threads
        self._pending = False

    def count(self, name: str, value: int = 1) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        with self._lock:
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            self._pending = True

    def latency(self, name: str, seconds: float) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        with self._lock:
            self._metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(seconds * 1000, 3))
            self._pending = True

    def flush(self) -> None:
        with self._lock:
            if self._pending:  # Powertools warns about an empty flush; an invocation may record nothing
                self._metrics.flush_metrics()
                self._pending = False


# Latency buckets from a cached query (milliseconds) to a long transcription (minutes).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


# One collector per name for the process: a registry refuses a name registered twice.
_collectors: dict[str, object] = {}
_collectors_lock = threading.Lock()


def _collector(name: str, make):
    with _collectors_lock:
        if name not in _collectors:
            _collectors[name] = make()
        return _collectors[name]


class PrometheusMetrics(Metrics):
    """prometheus_client's default registry (with its process and GC collectors), shared by every
    function of the local stack; the stack serves it at /metrics."""

    def count(self, name: str, value: int = 1) -> None:
        from prometheus_client import Counter

        _collector(f"{name}:count", lambda: Counter(f"{NAMESPACE}_{name}", name.replace("_", " "))).inc(value)

    def latency(self, name: str, seconds: float) -> None:
        from prometheus_client import Histogram

        _collector(f"{name}:latency", lambda: Histogram(
            f"{NAMESPACE}_{name}_seconds", name.replace("_", " ") + " in seconds", buckets=_BUCKETS)).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The default registry in Prometheus' text format, and its content type (for /metrics)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
