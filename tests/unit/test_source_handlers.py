"""The sources API (SourcesFunction) and the source worker (SourceWorkerFunction), called with API
Gateway HTTP API and SQS events through the template, on fake dependencies: a FakeFetcher serves
the feeds and their pages from a dict, the real feed reader reads them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from allthethings import bootstrap
from allthethings.config import Settings
from allthethings.domain.errors import UpstreamUnavailable
from allthethings.services.sources import delete_source
from devstack.gateway import LambdaContext, load_handler
from devstack.sqs_pump import sqs_record
from tests.fake_sources import FakeSourceStore
from tests.fakes import FakeFetcher, fake_deps
from tests.unit.test_handlers import KEY, TEMPLATE, call

WORKER = TEMPLATE.functions["SourceWorkerFunction"]
WORKER_TIMEOUT_S = TEMPLATE.raw["Resources"]["SourceWorkerFunction"]["Properties"]["Timeout"]
NO_FAILURES = {"batchItemFailures": []}


def invoke_worker(deps, messages: list, *, timeout_s: int = WORKER_TIMEOUT_S) -> dict:
    """One invocation of the source worker with `messages` (dicts, or raw bodies) as its batch."""
    arn = f"arn:aws:sqs:us-east-1:000000000000:{WORKER.queue_triggers[0].queue}"
    records = [sqs_record({"MessageId": str(n), "ReceiptHandle": "r",
                           "Body": m if isinstance(m, str) else json.dumps(m)}, arn, "us-east-1")
               for n, m in enumerate(messages)]
    return load_handler(WORKER)({"Records": records}, LambdaContext(WORKER, timeout_s))


def work_sources(deps, *, timeout_s: int = WORKER_TIMEOUT_S, rounds: int = 50) -> list[dict]:
    """Hand the source queue's messages to the source worker one per invocation (the template's
    BatchSize), as Lambda's mapping does, until the queue is empty; each invocation's reply."""
    replies = []
    for _ in range(rounds):
        if not deps.source_queue.messages:
            return replies
        replies.append(invoke_worker(deps, [deps.source_queue.messages.pop(0)], timeout_s=timeout_s))
    raise AssertionError(f"the source queue still holds {len(deps.source_queue.messages)} messages")


def rss(links: list[str], title: str = "A show") -> bytes:
    items = "".join(f"<item><title>Post {n}</title><link>{link}</link></item>" for n, link in enumerate(links))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{items}'
            "</channel></rss>").encode()


def serve_feed(deps, name: str, count: int, *, missing: int = 0) -> str:
    """A feed at http://feeds.test/{name}.xml listing `count` pages served and `missing` not."""
    links = [f"http://pages.test/{name}/{n}" for n in range(count + missing)]
    for link in links[:count]:
        deps.fetcher.pages[link] = ("text/plain", f"words of {link}".encode())
    url = f"http://feeds.test/{name}.xml"
    deps.fetcher.pages[url] = ("application/rss+xml", rss(links))
    return url


def post_source(url: str, **fields) -> tuple[int, dict]:
    return call("POST", "/api/sources", json.dumps({"url": url, **fields}), {"Content-Type": "application/json"})


@pytest.fixture
def deps():
    d = fake_deps(fetcher=FakeFetcher(), settings=Settings(chunk_tokens=20, chunk_overlap=4, api_keys=f"unit={KEY}",
                                                           source_host_delay_s=0.0))
    with bootstrap.use(d):
        yield d


# -- the API -----------------------------------------------------------------------------------

def test_adding_a_feed_answers_202_with_its_items_queued_then_200_for_the_same_url(deps):
    url = serve_feed(deps, "show", 2)
    status, source = post_source(url, refresh_interval_s=600)
    assert status == 202, source
    assert (source["kind"], source["title"], source["refresh_interval_s"]) == ("rss", "A show", 600)
    assert source["items"] == {"total": 2, "pending": 2, "submitted": 0, "refused": 0}
    ((message,),) = [deps.source_queue.messages]
    assert (message["kind"], message["source_id"], message["webhook_base"]) == ("submit_entries", source["id"],
                                                                                 "https://localhost")
    status, again = post_source(url)
    assert status == 200 and again["id"] == source["id"]
    assert len(deps.source_queue.messages) == 1, "nothing new is queued"


def test_sources_are_listed_newest_first_with_a_cursor(deps):
    ids = [post_source(serve_feed(deps, f"feed{n}", 1))[1]["id"] for n in range(3)]
    status, first = call("GET", "/api/sources?limit=2")
    assert status == 200 and [s["id"] for s in first["sources"]] == [ids[2], ids[1]]
    status, rest = call("GET", f"/api/sources?limit=2&cursor={first['next_cursor']}")
    assert [s["id"] for s in rest["sources"]] == [ids[0]] and rest["next_cursor"] is None
    assert call("GET", "/api/sources")[1]["sources"][0]["items"]["total"] == 1


def test_a_source_is_shown_with_its_items_by_state_and_the_refused_ones_with_their_reasons(deps):
    _, source = post_source(serve_feed(deps, "show", 2, missing=1))
    assert work_sources(deps) == [NO_FAILURES]
    status, shown = call("GET", f"/api/sources/{source['id']}")
    assert status == 200
    assert shown["items"] == {"total": 3, "pending": 0, "submitted": 2, "refused": 1}
    assert shown["assets"] == {"SUBMITTED": 2}
    ((refused,),) = [shown["refused"]]
    assert refused["url"] == "http://pages.test/show/2" and "404" in refused["reason"]
    status, body = call("GET", "/api/sources/src_" + "0" * 32)
    assert status == 404 and body["error"]["code"] == "not_found"


def test_refreshing_a_source_queues_a_read_of_it(deps):
    _, source = post_source(serve_feed(deps, "show", 1))
    deps.source_queue.messages.clear()
    status, body = call("POST", f"/api/sources/{source['id']}/refresh")
    assert status == 202 and body["id"] == source["id"]
    ((message,),) = [deps.source_queue.messages]
    assert (message["kind"], message["source_id"], message["webhook_base"]) == ("read_source", source["id"],
                                                                                 "https://localhost")
    assert not message.get("force"), "a refresh is a conditional read"
    assert call("POST", "/api/sources/src_" + "0" * 32 + "/refresh")[0] == 404


def test_deleting_a_source_answers_204_and_deletes_its_assets_only_when_asked(deps):
    _, kept = post_source(serve_feed(deps, "kept", 2))
    _, gone = post_source(serve_feed(deps, "gone", 2))
    work_sources(deps)
    assert len(deps.store.assets) == 4
    assert call("DELETE", f"/api/sources/{kept['id']}") == (204, "")
    assert call("DELETE", f"/api/sources/{gone['id']}?assets=true") == (204, "")
    assert sorted(a.url for a in deps.store.assets.values()) == ["http://pages.test/kept/0",
                                                                  "http://pages.test/kept/1"]
    assert all(a.source_id == kept["id"] for a in deps.store.assets.values()), "kept assets still name it"
    assert call("GET", f"/api/sources/{kept['id']}")[0] == 404
    assert call("DELETE", f"/api/sources/{kept['id']}")[0] == 404
    assert deps.source_queue.messages == []


def test_deleting_with_assets_answers_202_when_the_request_s_budget_runs_out_and_the_worker_finishes(
        deps, monkeypatch):
    _, source = post_source(serve_feed(deps, "show", 3))
    work_sources(deps)
    monkeypatch.setitem(delete_source.__kwdefaults__, "budget_s", 0.0)  # a source too big to delete in a request
    status, body = call("DELETE", f"/api/sources/{source['id']}?assets=true")
    assert (status, body) == (202, {"id": source["id"], "deleting_assets": True})
    assert call("GET", f"/api/sources/{source['id']}")[0] == 404, "the source is gone at once"
    assert len(deps.store.assets) == 3
    assert [m["kind"] for m in deps.source_queue.messages] == ["delete_source_assets"]
    assert work_sources(deps) == [NO_FAILURES]
    assert deps.store.assets == {}


# -- the worker ----------------------------------------------------------------------------------

def test_the_worker_submits_a_source_s_entries_and_reads_it_again_for_new_items(deps):
    url = serve_feed(deps, "show", 2)
    _, source = post_source(url)
    assert work_sources(deps) == [NO_FAILURES]
    assert len(deps.store.assets) == 2
    deps.fetcher.pages["http://pages.test/show/new"] = ("text/plain", b"a new post")
    deps.fetcher.pages[url] = ("application/rss+xml", rss(["http://pages.test/show/new", "http://pages.test/show/0"]))
    call("POST", f"/api/sources/{source['id']}/refresh")
    assert work_sources(deps) == [NO_FAILURES]
    assert call("GET", f"/api/sources/{source['id']}")[1]["items"]["submitted"] == 3
    assert deps.store.get_by_url("http://pages.test/show/1") is not None, "an item the feed dropped is kept"


def test_a_read_of_a_deleted_source_does_nothing_and_succeeds(deps):
    _, source = post_source(serve_feed(deps, "show", 1))
    deps.source_queue.messages.clear()
    call("DELETE", f"/api/sources/{source['id']}")
    before = list(deps.fetcher.calls)
    assert invoke_worker(deps, [{"kind": "read_source", "source_id": source["id"]},
                                {"kind": "submit_entries", "source_id": source["id"]},
                                {"kind": "delete_source_assets", "source_id": source["id"]}]) == NO_FAILURES
    assert deps.fetcher.calls == before and deps.source_queue.messages == []


def test_a_worker_out_of_time_queues_a_continuation_and_the_next_invocation_goes_on(deps):
    _, source = post_source(serve_feed(deps, "show", 20))
    # An invocation works for at least a second; one item every 0.25 s cannot all fit in it.
    deps.settings = dataclasses.replace(deps.settings, source_slice_s=1.0, source_host_concurrency=1,
                                        source_host_delay_s=0.25)
    assert invoke_worker(deps, deps.source_queue.messages[:]) == NO_FAILURES
    shown = call("GET", f"/api/sources/{source['id']}")[1]["items"]
    assert 0 < shown["submitted"] < 20 and shown["pending"] == 20 - shown["submitted"]
    continuation = deps.source_queue.messages[-1]
    assert (continuation["kind"], continuation["source_id"]) == ("submit_entries", source["id"])
    deps.source_queue.messages[:-1] = []
    deps.settings = dataclasses.replace(deps.settings, source_host_delay_s=0.0)
    assert work_sources(deps) == [NO_FAILURES]
    assert call("GET", f"/api/sources/{source['id']}")[1]["items"]["submitted"] == 20


@pytest.mark.parametrize("body", [
    {"kind": "shred_source", "source_id": "src_" + "0" * 32},
    {"kind": "process_asset", "asset_id": "0" * 32},  # a message of another queue
    {"kind": "read_source"},
    "not json",
])
def test_a_message_the_worker_cannot_read_is_reported_for_retry_and_the_rest_of_the_batch_runs(deps, body):
    _, source = post_source(serve_feed(deps, "show", 1))
    good = deps.source_queue.messages.pop()
    assert invoke_worker(deps, [body, good]) == {"batchItemFailures": [{"itemIdentifier": "0"}]}
    assert call("GET", f"/api/sources/{source['id']}")[1]["items"]["submitted"] == 1


class DownSourceStore(FakeSourceStore):
    """A source store whose database stops answering reads of the sources in `down`."""

    def __init__(self):
        super().__init__()
        self.down: set[str] = set()

    def get(self, source_id):
        if source_id in self.down:
            raise UpstreamUnavailable("the database is down")
        return super().get(source_id)


def test_a_store_failure_is_a_batch_item_failure_and_leaves_that_source_s_entries_pending(deps):
    deps.sources = DownSourceStore()
    _, failing = post_source(serve_feed(deps, "failing", 2))
    _, working = post_source(serve_feed(deps, "working", 1))
    deps.sources.down.add(failing["id"])
    assert invoke_worker(deps, deps.source_queue.messages[:]) == {"batchItemFailures": [{"itemIdentifier": "0"}]}
    deps.sources.down.clear()
    assert call("GET", f"/api/sources/{failing['id']}")[1]["items"]["pending"] == 2
    assert call("GET", f"/api/sources/{working['id']}")[1]["items"]["submitted"] == 1


def test_a_batch_of_one_failed_message_fails_the_invocation_so_sqs_retries_it(deps):
    # Powertools raises when every record of a batch failed (it counts as the function's error);
    # with the template's BatchSize of 1 that is each failed message. SQS retries it either way.
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError):
        invoke_worker(deps, [{"kind": "shred_source", "source_id": "src_" + "0" * 32}])
