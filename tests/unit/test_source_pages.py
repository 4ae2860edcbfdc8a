"""The sources page and its forms, and search results naming their source: the pages function
called as API Gateway would (template routes, the authorizer), on fake dependencies with the
real feed reader."""

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from allthethings import bootstrap
from allthethings.adapters.feeds import FeedReader
from allthethings.config import Settings
from allthethings.domain.assets import now
from allthethings.domain.sources import Entry, EntryState, Source, SourceItem, SourceKind
from devstack.gateway import build_event, dispatch, load_handler
from tests.fake_sources import FakeSourceStore
from tests.fakes import FakeFetcher, FakeQueue, fake_deps
from tests.unit.test_handlers import KEY, ROUTER, SECRET, TEMPLATE, call, drain, process_all

FEED = "http://x.test/feed.xml"
PAGES = {f"http://x.test/keeping-{n}.html": f"Lighthouse keepers trimmed the wicks, entry {n}. " * 4 for n in (1, 2)}
OTHER_FEED = "http://x.test/other.xml"
OTHER_PAGES = {"http://x.test/tides.html": "Tide tables for the harbour mouth. " * 4}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def rss(title: str = "The Keeper's Log", pages: dict = PAGES) -> bytes:
    items = "".join(f"<item><title>Entry {n}</title><link>{url}</link></item>"
                    for n, url in enumerate(pages, start=1))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>http://x.test/</link>{items}</channel></rss>").encode()


class FeedFetcher(FakeFetcher):
    """The fake fetcher, with the conditional GET a source's read asks for (always the body)."""

    def open(self, url, limits, *, start=0, validator=None, limit=None, unless=None):
        return super().open(url, limits, start=start, validator=validator, limit=limit)


class CountingSources(FakeSourceStore):
    def __init__(self):
        super().__init__()
        self.gets: list[str] = []

    def get(self, source_id):
        self.gets.append(source_id)
        return super().get(source_id)


@pytest.fixture
def deps():
    pages = {FEED: ("application/rss+xml", rss()), "http://x.test/plain.txt": ("text/plain", b"not a feed"),
             OTHER_FEED: ("application/rss+xml", rss("Tides", OTHER_PAGES)),
             **{url: ("text/plain", text.encode()) for url, text in (PAGES | OTHER_PAGES).items()}}
    d = fake_deps(fetcher=FeedFetcher(pages), sources=CountingSources(), source_reader=FeedReader(),
                  source_queue=FakeQueue(),
                  settings=Settings(chunk_tokens=20, chunk_overlap=4, replicate_webhook_secret=SECRET,
                                    api_keys=f"unit={KEY}", source_host_delay_s=0.0))
    with bootstrap.use(d):
        yield d


def post_form(path: str, fields: dict | None = None, key: str | None = KEY):
    return call("POST", path, urlencode(fields or {}), FORM, key=key)


def redirected_to(path: str, fields: dict | None = None) -> str:
    """Post a form as API Gateway would; where the 303 sends the browser."""
    from flask import Flask, request

    with Flask(__name__).test_request_context(path, method="POST", data=urlencode(fields or {}),
                                              headers={"x-api-key": KEY, **FORM}):
        route, fn, params = ROUTER.match("POST", request.path)
        event = build_event(request, route, params)
    response = dispatch(route, fn, event, TEMPLATE.functions, lambda f, e, c: load_handler(f)(e, c))
    assert response["statusCode"] == 303, response.get("body")
    return response["headers"]["Location"]


def add_feed(deps, url: str = FEED) -> str:
    """Add a feed through the form; its source id."""
    location = redirected_to("/sources", {"url": url})
    return location.partition("&id=")[2].partition("#")[0]


def text_of(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def index_everything(deps) -> None:
    """What the source worker and then the process function would do with what is queued."""
    while deps.source_queue.messages:
        drain(deps.source_queue, "SourceWorkerFunction")
    if deps.queue.messages:
        process_all(deps)


def row_of(page: str, source_id: str) -> str:
    return re.search(rf'<tr id="{source_id}".*?</tr>', page, flags=re.S).group(0)


def test_the_sources_page_is_in_every_pages_navigation_and_asks_a_browser_without_a_key_to_sign_in(deps):
    for path in ("/", "/search", "/sources"):
        status, page = call("GET", path)
        assert status == 200 and '<nav><a href="/"' in page and '<a href="/sources"' in page, path
    assert '<a href="/sources" aria-current=page>Sources</a>' in call("GET", "/sources")[1]
    status, page = call("GET", "/sources", key=None)
    assert status == 401 and "Sign in</h2>" in page and 'name=next value="/sources"' in page
    assert "<nav>" not in page, "the sign-in page offers nothing a visitor could open"
    status, page = post_form("/sources", {"url": FEED}, key=None)
    assert status == 401 and "Sign in</h2>" in page and deps.sources.sources == {}


def test_a_feed_added_with_the_form_shows_its_progress_in_words_until_every_item_is_searchable(deps):
    location = redirected_to("/sources", {"url": FEED})
    source_id = next(iter(deps.sources.sources))
    assert location == f"/sources?notice=added&id={source_id}#{source_id}"
    status, page = call("GET", location.partition("#")[0])
    assert status == 200 and "Added “The Keeper&#x27;s Log”: its items are being indexed." in page
    row = row_of(page, source_id)
    assert "0 of 2 searchable" in row and "2 pending · 0 submitted · 0 refused" in row and "RSS feed" in row
    assert f'action="/sources/{source_id}/refresh"' in row and f'action="/sources/{source_id}/delete"' in row
    assert "data-pending=true" in page and "<script>" in page and 'http-equiv="refresh"' in page

    index_everything(deps)
    status, page = call("GET", "/sources")
    row = row_of(page, source_id)
    assert "2 of 2 searchable" in row and "0 pending · 2 submitted · 0 refused" in row
    assert "assets: SEARCHABLE 2" in text_of(row) and "read just now" in text_of(row) and "every 1 h" in row
    assert "data-pending=false" in page and "<script>" not in page and 'http-equiv="refresh"' not in page
    assert "<p class=notice" not in page, "the notice is said once, after the form"

    location = redirected_to("/sources", {"url": FEED})
    assert location == f"/sources?notice=known&id={source_id}#{source_id}" and len(deps.sources.sources) == 1
    assert "“The Keeper&#x27;s Log” was already added." in call("GET", location.partition("#")[0])[1]


@pytest.mark.parametrize(("url", "status", "words"), [
    ("nonsense", 400, "url must start with http:// or https://"),
    ("http://x.test/missing.xml", 422, "HTTP 404"),
    ("http://x.test/plain.txt", 415, ""),
])
def test_a_url_the_form_cannot_add_is_refused_in_words_with_the_url_kept_in_the_form(deps, url, status, words):
    answer, page = post_form("/sources", {"url": url})
    assert answer == status and "<p class=error role=alert>" in page and words in page
    assert f'value="{url}"' in page and "<table id=sources" in page and deps.sources.sources == {}


def test_a_row_reads_its_source_again_and_deletes_it_keeping_or_deleting_its_assets(deps):
    source_id = add_feed(deps)
    index_everything(deps)
    location = redirected_to(f"/sources/{source_id}/refresh")
    assert location.startswith("/sources?notice=refreshing") and deps.source_queue.messages[-1]["kind"] == "read_source"
    assert "“The Keeper&#x27;s Log” is being read again" in call("GET", location.partition("#")[0])[1]

    kept = {a.id for a in deps.store.assets.values() if a.source_id == source_id}
    assert len(kept) == 2
    assert redirected_to(f"/sources/{source_id}/delete") == "/sources?notice=deleted"
    assert deps.sources.sources == {} and set(deps.store.assets) >= kept
    assert "The source is deleted." in call("GET", "/sources?notice=deleted")[1]

    source_id = add_feed(deps, OTHER_FEED)
    index_everything(deps)
    assert sum(a.source_id == source_id for a in deps.store.assets.values()) == 1
    assert redirected_to(f"/sources/{source_id}/delete", {"assets": "true"}) == "/sources?notice=deleted"
    assert deps.sources.sources == {}
    assert not [a for a in deps.store.assets.values() if a.source_id == source_id]


def test_a_form_for_a_source_that_is_gone_or_malformed_answers_the_page_with_the_error(deps):
    gone = "src_" + "0" * 32
    for path in (f"/sources/{gone}/refresh", f"/sources/{gone}/delete"):
        status, page = post_form(path)
        assert status == 404 and f"no source with id {gone}" in page and "<form action=\"/sources\"" in page
    status, page = post_form("/sources/src_nope/delete", {"assets": "true"})
    assert status == 400 and "source id must be" in page
    status, page = call("GET", "/sources?cursor=garbage")
    assert status == 400 and "cursor" in page
    assert "<p class=notice" not in call("GET", f"/sources?notice=added&id={gone}")[1], "no source, no notice"
    assert "<p class=notice" not in call("GET", "/sources?notice=%3Cb%3Eowned")[1], "only the page's own words"


def test_what_a_source_says_is_escaped_and_its_problems_are_listed(deps):
    stamp = now() - timedelta(hours=3)
    source = Source(id="src_" + "a" * 32, url="http://x.test/<feed>", feed_url="http://x.test/<feed>.xml",
                    kind=SourceKind.ATOM, created_at=stamp, updated_at=stamp, title="<script>alert(1)</script>",
                    last_refresh_at=stamp, next_refresh_at=stamp + timedelta(hours=1),
                    last_error="the URL answered <b>HTTP 500</b>", skipped={"duplicate": 3, "over_limit": 0})
    deps.sources.add(source)
    deps.sources.add_entries([Entry.of(source.id, SourceItem(url="http://10.0.0.1/<x>"))])
    deps.sources.finish_entry(source.id, "http://10.0.0.1/<x>", EntryState.REFUSED, reason="a <private> address")
    status, page = call("GET", "/sources")
    row = row_of(page, source.id)
    assert status == 200 and "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in row
    assert "&lt;b&gt;HTTP 500&lt;/b&gt;" in row and "a &lt;private&gt; address" in row
    assert "<summary>1 refused</summary>" in row and "0 of 1 searchable" in row and "3 listed twice" in row
    assert "read 3 h ago" in text_of(row) and "next: due 2 h ago" in text_of(row) and "Atom feed" in row
    assert "data-pending=false" in page, "a source that is done is not polled"


def test_without_a_source_store_the_page_says_so_instead_of_failing(deps):
    deps.sources = None
    status, page = call("GET", "/sources")
    assert status == 503 and "not set up to keep sources" in page
    assert post_form("/sources", {"url": FEED})[0] == 503


def test_search_results_name_the_source_their_asset_came_from_with_one_read_per_source(deps):
    source_id = add_feed(deps)
    index_everything(deps)
    deps.fetcher.pages["http://x.test/a.txt"] = ("text/plain", b"Lighthouse keepers trimmed the wicks alone. " * 3)
    call("POST", "/api/assets", '{"url": "http://x.test/a.txt"}')
    process_all(deps)
    deps.sources.gets.clear()
    status, page = call("GET", "/search?query=lighthouse+keepers+wicks")
    assert status == 200
    results = re.findall(r"<div class=result>.*?</div></div>|<div class=result>.*?</p>", page, flags=re.S)
    from_source = [r for r in results if "keeping-" in r]
    assert len(from_source) == 2 and all(
        f'from <a class=source href="/sources#{source_id}">The Keeper&#x27;s Log</a>' in r for r in from_source)
    assert deps.sources.gets == [source_id], "one read for the page's one source"
    other = [r for r in results if "x.test/a.txt" in r]
    assert other and "class=source" not in other[0]
    deps.sources.delete(source_id)
    status, page = call("GET", "/search?query=lighthouse+keepers+wicks")
    assert status == 200 and "class=source" not in page, "a deleted source is not named"
