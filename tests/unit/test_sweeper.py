"""The stuck-asset sweeper, with fakes: a lost webhook's prediction is fetched and applied, a
lost message is sent again, and what cannot finish ends in an error status that can be retried."""

from datetime import timedelta

import pytest

from allthethings.config import Settings
from allthethings.domain.assets import Status
from allthethings.services.lifecycle import retry_asset
from allthethings.services.process_asset import process_asset
from allthethings.services.sweeper import sweep
from tests.fakes import FakeEmbedder, fake_deps
from tests.unit.test_handlers import TEMPLATE
from tests.unit.test_services import audio_asset, pending_asset, prediction, submitted, transcription

SETTINGS = Settings(chunk_tokens=20, chunk_overlap=4, stuck_after_s=900, give_up_after_s=6 * 3600,
                    api_url="https://api.test")


def later(deps, asset_id, seconds):
    """The moment `seconds` after the asset's last update."""
    return deps.store.get(asset_id).updated_at + timedelta(seconds=seconds)


@pytest.fixture
def remote():
    """Embeddings by prediction and webhook, as on Replicate."""
    return fake_deps(embedder=FakeEmbedder(pending=True), settings=SETTINGS)


def test_an_asset_updated_recently_is_left_alone(remote):
    asset_id = pending_asset(remote)
    report = sweep(remote, at=later(remote, asset_id, 899))
    assert report.counts() == {"finished": 0, "requeued": 0, "failed": 0, "waiting": 0, "unreachable": 0,
                               "sources": 0}
    assert remote.predictions.asked == []


def test_a_source_whose_refresh_is_due_is_queued_once_for_the_source_worker(remote):
    from allthethings.domain.sources import Source, SourceKind
    from allthethings.domain.tasks import ReadSource, from_message

    source = remote.sources.add(Source.new("https://feeds.test/a.xml", "https://feeds.test/a.xml", SourceKind.RSS,
                                           title="A", interval_s=3600))
    assert sweep(remote, at=source.next_refresh_at - timedelta(seconds=1)).counts()["sources"] == 0
    assert sweep(remote, at=source.next_refresh_at).counts()["sources"] == 1
    assert sweep(remote, at=source.next_refresh_at).counts()["sources"] == 0, "claimed: not queued twice"
    assert [from_message(m) for m in remote.source_queue.messages] == [ReadSource(source.id, "https://api.test")]
    assert remote.sources.get(source.id).next_refresh_at == source.next_refresh_at + timedelta(seconds=3600)


def test_embeddings_whose_webhook_was_lost_are_fetched_and_applied(remote):
    asset_id = pending_asset(remote)
    remote.predictions.predictions["p1"] = prediction(asset_id, remote)
    report = sweep(remote, at=later(remote, asset_id, 901))
    assert report.finished == [asset_id] and remote.predictions.asked == ["p1"]
    assert remote.store.get(asset_id).status is Status.SEARCHABLE
    assert sweep(remote, at=later(remote, asset_id, 5000)).counts()["finished"] == 0, "nothing left to sweep"


def test_a_transcription_whose_webhook_was_lost_is_applied_and_its_embeddings_requested(remote):
    asset_id = audio_asset(remote)
    remote.predictions.predictions["t1"] = transcription(asset_id, remote)
    assert sweep(remote, at=later(remote, asset_id, 901)).finished == [asset_id]
    asset = remote.store.get(asset_id)
    assert asset.status is Status.GENERATING_EMBEDDINGS and asset.chunk_count >= 1
    ((_, webhook),) = remote.embedder.submitted
    assert webhook == f"https://api.test/webhooks/embedding/{asset_id}", "the API's URL: the sweeper has no request"


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_a_failed_prediction_fails_the_asset_with_the_model_apis_reason(remote, status):
    asset_id = pending_asset(remote)
    remote.predictions.predictions["p1"] = prediction(asset_id, remote, status=status, error="CUDA out of memory")
    assert sweep(remote, at=later(remote, asset_id, 901)).failed == [asset_id]
    asset = remote.store.get(asset_id)
    assert asset.status is Status.EMBEDDINGS_ERROR and "CUDA out of memory" in asset.error


def test_a_running_prediction_is_waited_for_until_the_give_up_time_then_failed(remote):
    asset_id = pending_asset(remote)
    remote.predictions.predictions["p1"] = {"id": "p1", "status": "processing"}
    assert sweep(remote, at=later(remote, asset_id, 3600)).waiting == [asset_id]
    assert remote.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS
    assert sweep(remote, at=later(remote, asset_id, 6 * 3600)).failed == [asset_id]
    asset = remote.store.get(asset_id)
    assert asset.status is Status.EMBEDDINGS_ERROR and "did not finish within 6 h" in asset.error


def test_a_prediction_the_model_api_does_not_know_fails_the_asset(remote):
    asset_id = audio_asset(remote)
    assert sweep(remote, at=later(remote, asset_id, 901)).failed == [asset_id]
    asset = remote.store.get(asset_id)
    assert asset.status is Status.PROCESSING_ERROR and "no record of prediction t1" in asset.error


def test_when_the_model_api_is_down_the_asset_waits_for_the_next_sweep(remote):
    asset_id = pending_asset(remote)
    remote.predictions.down = True
    assert sweep(remote, at=later(remote, asset_id, 7 * 3600)).unreachable == [asset_id]
    assert remote.store.get(asset_id).status is Status.GENERATING_EMBEDDINGS


def test_an_asset_whose_message_was_lost_is_queued_again_and_then_finishes():
    deps = fake_deps(settings=SETTINGS, embedder=FakeEmbedder(fail_times=1))
    asset_id = submitted(deps)
    deps.queue.messages.clear()  # the message went to the dead-letter queue
    report = sweep(deps, at=later(deps, asset_id, 901))
    assert report.requeued == [asset_id]
    assert deps.queue.messages == [{"kind": "process_asset", "asset_id": asset_id, "webhook_base": "https://api.test"}]
    with pytest.raises(Exception):  # noqa: B017 - the fake model's one outage: the message is retried
        process_asset(asset_id, deps)
    assert deps.store.get(asset_id).status is Status.PROCESSED
    assert sweep(deps, at=later(deps, asset_id, 901)).requeued == [asset_id], "PROCESSED waits on a message too"
    assert process_asset(asset_id, deps) is Status.SEARCHABLE


def test_an_asset_that_never_gets_through_ends_in_an_error_that_a_retry_clears():
    deps = fake_deps(settings=SETTINGS)
    asset_id = submitted(deps)
    deps.queue.messages.clear()
    assert sweep(deps, at=later(deps, asset_id, 6 * 3600)).failed == [asset_id]
    asset = deps.store.get(asset_id)
    assert asset.status is Status.PROCESSING_ERROR and "submitted did not finish within 6 h" in asset.error
    retry_asset(asset_id, deps)
    assert process_asset(asset_id, deps) is Status.SEARCHABLE


def test_the_sweeper_function_runs_on_a_schedule_and_returns_its_counts(remote):
    from allthethings import bootstrap
    from devstack.gateway import LambdaContext, load_handler

    fn = TEMPLATE.functions["SweeperFunction"]
    assert fn.schedules == [600]
    with bootstrap.use(remote):
        counts = load_handler(fn)({"detail-type": "Scheduled Event", "source": "aws.events"}, LambdaContext(fn))
    assert counts == {"finished": 0, "requeued": 0, "failed": 0, "waiting": 0, "unreachable": 0, "sources": 0}
