"""Metrics: what the services record, and how each adapter publishes it (EMF lines, Prometheus text)."""

import json
import time

from allthethings import bootstrap
from allthethings.adapters.metrics import EmfMetrics, PrometheusMetrics, exposition
from allthethings.bootstrap import metrics_flushed
from allthethings.domain.assets import Status
from allthethings.services.process_asset import process_asset
from allthethings.services.submit_asset import submit_asset
from allthethings.services.webhooks import apply_webhook
from tests.fakes import FakeEmbedder, FakeFetcher, FakeMetrics, fake_deps

TEXT = "Lighthouse keepers trimmed the wicks. Storms cut them off for weeks."


def test_an_emf_flush_writes_one_cloudwatch_line_with_counts_and_milliseconds(capsys):
    metrics = EmfMetrics(namespace="allthethings-test")
    metrics.flush()
    assert capsys.readouterr().out == "", "nothing recorded, nothing written"
    metrics.count("assets_submitted", 3)
    metrics.latency("search_latency", 0.0425)
    metrics.latency("search_latency", 0.010)
    metrics.flush()
    (line,) = capsys.readouterr().out.strip().splitlines()
    blob = json.loads(line)
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "allthethings-test"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {"assets_submitted": "Count", "search_latency": "Milliseconds"}
    assert blob["assets_submitted"] == [3.0] or blob["assets_submitted"] == 3.0
    assert blob["search_latency"] == [42.5, 10.0]
    metrics.flush()
    assert capsys.readouterr().out == "", "a flush publishes each value once"


def test_prometheus_exposes_counters_and_latency_histograms_across_instances():
    PrometheusMetrics().count("test_widgets", 2)
    PrometheusMetrics().count("test_widgets")  # a second instance shares the collector
    PrometheusMetrics().latency("test_wait", 0.2)
    body, content_type = exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert "allthethings_test_widgets_total 3.0" in text
    assert 'allthethings_test_wait_seconds_bucket{le="0.25"} 1.0' in text
    assert "allthethings_test_wait_seconds_count 1.0" in text


def test_a_handler_flushes_the_metrics_of_its_invocation_even_when_it_raises():
    deps = fake_deps()

    @metrics_flushed
    def failing(event, context):
        deps.metrics.count("x")
        raise RuntimeError("boom")

    with bootstrap.use(deps):
        try:
            failing({}, None)
        except RuntimeError:
            pass
    assert deps.metrics.flushes == 1


def test_submitting_processing_and_failing_are_counted():
    deps = fake_deps(fetcher=FakeFetcher({"http://x.test/a.txt": ("text/plain", TEXT.encode()),
                                          "http://x.test/b.txt": ("text/plain", b"FAIL")}))
    for url in ("http://x.test/a.txt", "http://x.test/b.txt"):
        asset, _ = submit_asset(url, deps)
        process_asset(asset.id, deps)
    submit_asset("http://x.test/a.txt", deps)  # known: not a new submission
    assert deps.metrics.counts == {"assets_submitted": 2, "assets_searchable": 1, "assets_failed": 1}


def test_a_webhook_that_makes_an_asset_searchable_records_how_long_it_took():
    deps = fake_deps(embedder=FakeEmbedder(pending=True),
                     fetcher=FakeFetcher({"http://x.test/a.txt": ("text/plain", TEXT.encode())}))
    asset, _ = submit_asset("http://x.test/a.txt", deps)
    process_asset(asset.id, deps)
    stored = deps.store.get(asset.id)
    assert stored.status is Status.GENERATING_EMBEDDINGS and deps.metrics.counts["predictions_created"] == 1
    output = [{"embedding": [0.25] * 16} for _ in deps.store.chunks(asset.id)]
    message = {"kind": "embedding", "asset_id": asset.id, "received_at": time.time() - 2.0,
               "body": json.dumps({"id": stored.prediction_id, "status": "succeeded", "output": output})}
    assert apply_webhook(message, deps).status is Status.SEARCHABLE
    (latency,) = deps.metrics.latencies["webhook_to_searchable"]
    assert 2.0 <= latency < 10.0
    apply_webhook(message, deps)  # a second delivery: no second measurement
    assert len(deps.metrics.latencies["webhook_to_searchable"]) == 1


def test_searching_records_its_latency():
    from allthethings.services.search import parse_request, search

    deps = fake_deps(metrics=FakeMetrics())
    search(parse_request({"q": "lighthouse"}), deps)
    assert len(deps.metrics.latencies["search_latency"]) == 1
