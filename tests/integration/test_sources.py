"""Sources over real HTTP: feeds and sitemaps served by a local origin on 127.0.0.1, read by the
real fetcher (its address checks, conditional GET) and the real feed reader, kept in the real
SQLite stores; the queues are the unit tests' fakes, drained by hand as the worker would."""

from __future__ import annotations

import dataclasses
import gzip
import ipaddress
import time

import pytest

from allthethings.adapters.feeds import FeedReader
from allthethings.adapters.fetch import HttpFetcher
from allthethings.adapters.source_store import SqliteSourceStore
from allthethings.adapters.sqlite_store import SqliteStore
from allthethings.config import Settings
from allthethings.domain.assets import Status
from allthethings.domain.errors import ContentTooLarge, ExtractionFailed, InvalidInput, UnsupportedContentType
from allthethings.domain.listing import AssetFilter
from allthethings.domain.sources import EntryState, SourceKind
from allthethings.domain.tasks import ReadSource, from_message
from allthethings.services.sources import (
    HostGate,
    add_source,
    delete_source,
    get_source,
    read_source,
    refresh_source,
    run_task,
    schedule_due,
    submit_entries,
)
from allthethings.services.submit_asset import submit_asset
from devstack.origin import Origin
from tests.fakes import FakeQueue, fake_deps


def loopback_only(address) -> bool:
    """The origin is on 127.0.0.1; every other private address stays refused, as in production."""
    ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    return ip.is_loopback


@pytest.fixture
def origin():
    with Origin() as server:
        yield server


@pytest.fixture
def deps(tmp_path):
    path = str(tmp_path / "index.db")
    fetcher = HttpFetcher(allow_private=False, timeout_s=3.0)
    fetcher.allowed = loopback_only
    settings = Settings(chunk_tokens=20, chunk_overlap=4, source_host_delay_s=0.0, sqlite_path=path)
    return fake_deps(settings=settings, fetcher=fetcher, store=SqliteStore(path, 384, "all-MiniLM-L6-v2"),
                     sources=SqliteSourceStore(path), source_reader=FeedReader(), source_queue=FakeQueue())


def rss(items: list[tuple[str, str]], title: str = "A show") -> bytes:
    entries = "".join(f"<item><title>{t}</title><link>{link}</link><pubDate>Mon, 0{i + 1} Jun 2026 08:00:00 GMT"
                      f"</pubDate><author>host@example.org (Ann Host)</author><description>About {t}</description>"
                      "</item>" for i, (t, link) in enumerate(items))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>http://example.org/</link>{entries}</channel></rss>").encode()


def sitemap(urls: list[str]) -> bytes:
    body = "".join(f"<url><loc>{u}</loc><lastmod>2026-05-01</lastmod></url>" for u in urls)
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'.encode()


def sitemap_index(urls: list[str]) -> bytes:
    body = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in urls)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</sitemapindex>'.encode()


def page(n: int) -> bytes:
    return f"<html><head><title>Page {n}</title></head><body><p>Paragraph {n} about lighthouses.</p></body></html>"\
        .encode()


def drain(deps, slice_s: float = 60.0, limit: int = 20) -> list:
    """Run the source queue's messages as the worker would."""
    ran = []
    while deps.source_queue.messages and len(ran) < limit:
        task = from_message(deps.source_queue.messages.pop(0))
        ran.append(task)
        run_task(task, deps, until=time.monotonic() + slice_s)
    return ran


def test_a_feed_becomes_a_source_whose_items_become_assets_with_what_the_feed_said(origin, deps):
    links = [origin.put(f"/posts/{n}", page(n), "text/html") for n in range(3)]
    url = origin.put("/feed.xml", rss([(f"Post {n}", link) for n, link in enumerate(links)]), "application/rss+xml")
    view, created = add_source(url, deps)
    assert created and view.source.kind is SourceKind.RSS and view.source.title == "A show"
    assert view.entries == {EntryState.PENDING: 3}
    drain(deps)
    after = get_source(view.source.id, deps)
    assert after.entries == {EntryState.SUBMITTED: 3}
    assets, _ = deps.store.list(10, None, AssetFilter(source=view.source.id))
    assert sorted(a.url for a in assets) == sorted(links)
    first = next(a for a in assets if a.url == links[0])
    assert (first.title, first.author, first.description) == ("Post 0", "host@example.org (Ann Host)",
                                                              "About Post 0")
    assert first.published_at.isoformat() == "2026-06-01T08:00:00+00:00"
    assert after.assets == {Status.SUBMITTED: 3}, "each item was staged and its processing queued"
    assert len(deps.queue.messages) == 3
    again, created_again = add_source(url, deps)
    assert not created_again and again.source.id == view.source.id


def test_refreshing_an_unchanged_feed_is_one_conditional_get_and_submits_nothing(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    url = origin.put("/feed.xml", rss([("Post 1", link)]), "application/rss+xml")
    view, _ = add_source(url, deps)
    drain(deps)
    before = len(origin.requests)
    refresh_source(view.source.id, deps)
    drain(deps)
    requests = origin.requests[before:]
    assert [r["path"] for r in requests] == ["/feed.xml"] and requests[0]["if_none_match"]
    assert deps.queue.messages and len(deps.queue.messages) == 1, "no new submission"
    assert get_source(view.source.id, deps).source.last_error is None


def test_a_feed_that_gains_an_item_adds_exactly_one_asset_on_refresh(origin, deps):
    links = [origin.put(f"/posts/{n}", page(n), "text/html") for n in range(3)]
    url = origin.put("/feed.xml", rss([("Post 0", links[0]), ("Post 1", links[1])]), "application/rss+xml")
    view, _ = add_source(url, deps)
    drain(deps)
    origin.replace("/feed.xml", rss([("Post 2", links[2]), ("Post 0", links[0]), ("Post 1", links[1])]))
    refresh_source(view.source.id, deps)
    drain(deps)
    assets, _ = deps.store.list(10, None, AssetFilter(source=view.source.id))
    assert len(assets) == 3 and assets[0].url == links[2]


def test_a_feed_that_changes_its_items_keeps_the_old_ones_and_adds_the_new(origin, deps):
    links = [origin.put(f"/posts/{n}", page(n), "text/html") for n in range(4)]
    url = origin.put("/feed.xml", rss([("Post 0", links[0]), ("Post 1", links[1])]), "application/rss+xml")
    view, _ = add_source(url, deps)
    drain(deps)
    origin.replace("/feed.xml", rss([("Post 2", links[2]), ("Post 3", links[3])]))
    refresh_source(view.source.id, deps)
    drain(deps)
    assert get_source(view.source.id, deps).entries == {EntryState.SUBMITTED: 4}


def test_a_feed_that_disappears_marks_the_source_and_keeps_its_assets(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    url = origin.put("/feed.xml", rss([("Post 1", link)]), "application/rss+xml")
    view, _ = add_source(url, deps)
    drain(deps)
    del origin.bodies["/feed.xml"]
    refresh_source(view.source.id, deps)
    drain(deps)
    after = get_source(view.source.id, deps)
    assert "404" in after.source.last_error
    assert sum(after.assets.values()) == 1
    origin.put("/feed.xml", b"<html><body>we moved</body></html>", "text/html")
    read_source(ReadSource(view.source.id, force=True), deps, until=time.monotonic() + 30)
    assert "feed" in get_source(view.source.id, deps).source.last_error.lower()


def test_items_at_private_addresses_are_refused_counted_and_shown_and_the_others_submitted(origin, deps):
    good = origin.put("/posts/1", page(1), "text/html")
    items = [("Metadata", "http://169.254.169.254/latest/meta-data/"), ("Router", "http://192.168.1.1/"),
             ("Good", good)]
    url = origin.put("/feed.xml", rss(items), "application/rss+xml")
    view, _ = add_source(url, deps)
    drain(deps)
    after = get_source(view.source.id, deps)
    assert after.entries == {EntryState.REFUSED: 2, EntryState.SUBMITTED: 1}
    assert {e.url for e in after.refused} == {items[0][1], items[1][1]}
    assert all("address" in e.reason for e in after.refused), [e.reason for e in after.refused]
    shown = after.to_public()
    assert shown["items"]["refused"] == 2 and shown["refused"][0]["reason"]


def test_a_source_at_a_private_address_is_refused_before_anything_is_kept(deps):
    with pytest.raises(InvalidInput):
        add_source("http://10.0.0.5/feed.xml", deps)
    assert deps.sources.list(10, None) == ([], None)


def test_duplicate_items_and_items_with_no_url_are_counted_not_submitted(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
            b"<item><title>A</title><link>" + link.encode() + b"</link></item>"
            b"<item><title>A again</title><link>" + link.encode() + b"#comments</link></item>"
            b"<item><title>No link</title><description>just words</description></item>"
            b"</channel></rss>")
    view, _ = add_source(origin.put("/feed.xml", body, "application/rss+xml"), deps)
    assert view.entries == {EntryState.PENDING: 1}
    assert view.source.skipped["duplicate"] == 1 and view.source.skipped["no_url"] == 1


def test_a_feed_of_100000_items_keeps_the_setting_s_maximum_and_counts_the_rest(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    body = rss([(f"Post {n}", f"{link}?n={n}") for n in range(100_000)])
    view, _ = add_source(origin.put("/big.xml", body, "application/rss+xml"), deps)
    assert sum(view.entries.values()) == deps.settings.source_max_items == 1_000
    assert view.source.skipped["over_limit"] == 99_000


def test_a_gzip_bomb_is_refused_as_too_large(origin, deps):
    bomb = gzip.compress(b"<urlset>" + b" " * (60 * 1024 * 1024), compresslevel=9)
    with pytest.raises(ContentTooLarge):
        add_source(origin.put("/sitemap.xml.gz", bomb, "application/gzip"), deps)


def test_invalid_xml_and_an_html_page_without_a_feed_are_refused_with_a_reason(origin, deps):
    with pytest.raises(ExtractionFailed):
        add_source(origin.put("/broken.xml", b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                             b"<url><loc>http://a/</loc></url", "application/xml"), deps)
    with pytest.raises(UnsupportedContentType):
        add_source(origin.put("/page", page(1), "text/html"), deps)


def test_an_html_page_that_links_its_feed_is_followed_to_the_feed(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    feed = origin.put("/feed.xml", rss([("Post 1", link)]), "application/rss+xml")
    home = origin.put("/", f'<html><head><link rel="alternate" type="application/rss+xml" href="{feed}">'
                           "</head><body>Blog</body></html>".encode(), "text/html")
    view, _ = add_source(home, deps)
    assert (view.source.url, view.source.feed_url, view.source.kind) == (home, feed, SourceKind.RSS)


def test_a_sitemap_index_that_points_at_itself_is_read_once_and_its_sitemap_s_pages_submitted(origin, deps):
    pages = [origin.put(f"/docs/{n}", page(n), "text/html") for n in range(3)]
    child = origin.put("/sitemap-docs.xml", sitemap(pages), "application/xml")
    index = origin.base + "/sitemap.xml"
    origin.put("/sitemap.xml", sitemap_index([index, child, child]), "application/xml")
    view, _ = add_source(index, deps)
    assert view.source.kind is SourceKind.SITEMAP_INDEX
    drain(deps)
    after = get_source(view.source.id, deps)
    assert after.entries == {EntryState.SUBMITTED: 3}
    assert after.source.skipped["loop"] >= 1
    assert [r["path"] for r in origin.requests].count("/sitemap.xml") == 2  # the request's read and the worker's


def test_robots_txt_is_honoured_for_a_sitemap_s_pages(origin, deps):
    open_page = origin.put("/docs/1", page(1), "text/html")
    private = origin.put("/private/2", page(2), "text/html")
    origin.put("/robots.txt", b"User-agent: *\nDisallow: /private/\n", "text/plain")
    view, _ = add_source(origin.put("/sitemap.xml", sitemap([open_page, private]), "application/xml"), deps)
    drain(deps)
    after = get_source(view.source.id, deps)
    assert after.entries == {EntryState.SUBMITTED: 1, EntryState.REFUSED: 1}
    assert "robots.txt" in after.refused[0].reason and after.refused[0].url == private
    assert "/private/2" not in [r["path"] for r in origin.requests]
    assert [r["path"] for r in origin.requests].count("/robots.txt") == 1, "read once, not by every thread"


def test_an_item_already_indexed_is_linked_to_the_source_not_fetched_again(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    known, _ = submit_asset(link, deps)
    fetched = [r["path"] for r in origin.requests].count("/posts/1")
    view, _ = add_source(origin.put("/feed.xml", rss([("Post 1", link)]), "application/rss+xml"), deps)
    drain(deps)
    assert [r["path"] for r in origin.requests].count("/posts/1") == fetched
    linked = deps.store.get(known.id)
    assert linked.source_id == view.source.id and linked.title == "Post 1"


def test_deleting_a_source_with_its_assets_removes_them_and_without_keeps_them(origin, deps):
    links = [origin.put(f"/posts/{n}", page(n), "text/html") for n in range(2)]
    kept, _ = add_source(origin.put("/a.xml", rss([("A", links[0])]), "application/rss+xml"), deps)
    gone, _ = add_source(origin.put("/b.xml", rss([("B", links[1])]), "application/rss+xml"), deps)
    drain(deps)
    assert delete_source(gone.source.id, deps, with_assets=True)
    assert delete_source(kept.source.id, deps, with_assets=False)
    assert deps.store.get_by_url(links[1]) is None
    assert deps.store.get_by_url(links[0]) is not None
    assert deps.sources.list(10, None) == ([], None)


def test_the_schedule_reads_each_due_source_once(origin, deps):
    link = origin.put("/posts/1", page(1), "text/html")
    view, _ = add_source(origin.put("/feed.xml", rss([("Post 1", link)]), "application/rss+xml"), deps)
    drain(deps)
    due_at = view.source.next_refresh_at
    assert schedule_due(deps, at=due_at) == [view.source.id]
    assert schedule_due(deps, at=due_at) == []
    assert [from_message(m).kind for m in deps.source_queue.messages] == ["read_source"]


def test_a_worker_out_of_time_leaves_the_rest_pending_for_the_next_invocation(origin, deps):
    links = [origin.put(f"/posts/{n}", page(n), "text/html") for n in range(5)]
    view, _ = add_source(origin.put("/feed.xml", rss([(f"P{n}", u) for n, u in enumerate(links)]),
                                    "application/rss+xml"), deps)
    deps.source_queue.messages.clear()
    assert not submit_entries(view.source.id, deps, until=time.monotonic() - 1, webhook_base=None)
    assert get_source(view.source.id, deps).entries == {EntryState.PENDING: 5}
    assert submit_entries(view.source.id, deps, until=time.monotonic() + 30, webhook_base=None)
    assert get_source(view.source.id, deps).entries == {EntryState.SUBMITTED: 5}


def test_the_host_gate_spaces_the_starts_of_requests_to_one_host():
    gate = HostGate(concurrency=1, delay_s=0.05)
    starts = []
    for _ in range(4):
        with gate.slot("example.org"):
            starts.append(time.monotonic())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(gap >= 0.045 for gap in gaps), gaps
    other = time.monotonic()
    with gate.slot("example.com"):
        assert time.monotonic() - other < 0.04, "another host does not wait"


def test_a_refresh_tries_again_the_items_refused_before(origin, deps):
    good = origin.put("/posts/1", page(1), "text/html")
    late = origin.base + "/posts/2"  # not there yet: 404, refused
    view, _ = add_source(origin.put("/feed.xml", rss([("One", good), ("Two", late)]), "application/rss+xml"), deps)
    drain(deps)
    assert get_source(view.source.id, deps).entries == {EntryState.SUBMITTED: 1, EntryState.REFUSED: 1}
    origin.put("/posts/2", page(2), "text/html")
    refresh_source(view.source.id, deps)
    drain(deps)
    after = get_source(view.source.id, deps)
    assert after.entries == {EntryState.SUBMITTED: 2} and after.refused == []
    assert deps.store.get_by_url(late).source_id == view.source.id


def test_a_feed_rewritten_within_the_second_it_was_read_is_not_taken_as_unchanged(deps):
    """A host without ETags (Python's http.server) answers If-Modified-Since by the file's time,
    to the second: a Last-Modified that young is not sent back, so the change is seen."""
    import email.utils as dates
    import http.server
    import threading

    from allthethings.domain.assets import now

    class Feed(http.server.BaseHTTPRequestHandler):
        body, stamp, conditional = b"", "", []

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            Feed.conditional.append(self.headers.get("If-Modified-Since"))
            if self.path.startswith("/posts/"):
                payload, kind = page(int(self.path.rsplit("/", 1)[1])), "text/html"
            elif self.headers.get("If-Modified-Since") == Feed.stamp:
                self.send_response(304)
                self.end_headers()
                return
            else:
                payload, kind = Feed.body, "application/rss+xml"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Last-Modified", Feed.stamp)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        Feed.stamp = dates.format_datetime(now(), usegmt=True)
        Feed.body = rss([("Post 1", f"{base}/posts/1")])
        view, _ = add_source(f"{base}/feed.xml", deps)
        assert view.source.last_modified is None, "too young to be trusted"
        drain(deps)
        Feed.body = rss([("Post 2", f"{base}/posts/2"), ("Post 1", f"{base}/posts/1")])  # the same second
        refresh_source(view.source.id, deps)
        drain(deps)
        assert get_source(view.source.id, deps).entries == {EntryState.SUBMITTED: 2}
        Feed.stamp = dates.format_datetime(now().replace(year=2020), usegmt=True)
        refresh_source(view.source.id, deps)
        drain(deps)
        assert get_source(view.source.id, deps).source.last_modified == Feed.stamp, "an old date is kept"
    finally:
        server.shutdown()
        server.server_close()


def test_a_feed_at_the_item_limit_still_adds_what_it_publishes_next(origin, deps):
    deps.settings = dataclasses.replace(deps.settings, source_max_items=3)
    links = [origin.put(f"/posts/{n}", page(n), "text/html") for n in range(6)]
    url = origin.put("/feed.xml", rss([(f"P{n}", links[n]) for n in (3, 2, 1, 0)]), "application/rss+xml")
    view, _ = add_source(url, deps)
    assert sum(view.entries.values()) == 3 and view.source.skipped["over_limit"] == 1, "a read takes 3"
    drain(deps)
    origin.replace("/feed.xml", rss([(f"P{n}", links[n]) for n in (5, 4, 3, 2, 1, 0)]))
    refresh_source(view.source.id, deps)
    drain(deps)
    after = get_source(view.source.id, deps)
    assert after.entries == {EntryState.SUBMITTED: 5}, "the newest 3 of the second read: 2 new, 1 known"
    assert deps.store.get_by_url(links[5]) is not None and deps.store.get_by_url(links[0]) is None


def test_the_host_gate_lets_at_most_its_concurrency_into_one_host_at_once():
    import threading

    gate, lock = HostGate(concurrency=2, delay_s=0.0), threading.Lock()
    inside, most = 0, 0

    def visit():
        nonlocal inside, most
        with gate.slot("example.org"):
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=visit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2
