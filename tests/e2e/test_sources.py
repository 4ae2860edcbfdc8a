"""End to end: whole sources through `POST /api/sources` on the local stack, served by a local
origin on 127.0.0.1 (with ETags, so a refresh is a conditional GET):

- a podcast RSS feed whose enclosures are real speech clips written by others (tests/fixtures/
  SOURCES.md), one of them with a publisher transcript (the clip's own SRT, Podcasting 2.0);
- an Atom feed of real news and encyclopedia pages;
- a sitemap of real documents.

Every item becomes SEARCHABLE, a recording is found at the second its words are said, a refresh
of a feed that gained one episode adds exactly one asset, the `source` filter keeps to one
source, and deleting a source with its assets takes them out of search."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devstack.origin import Origin

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PODCAST = '''<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"
     xmlns:podcast="https://podcastindex.org/namespace/1.0">
<channel><title>Voices from the archive</title><link>{base}/</link>
<itunes:author>The Archivists</itunes:author>
{items}
</channel></rss>'''
EPISODE = '''<item><title>{title}</title><guid>{guid}</guid><pubDate>{date}</pubDate>
<itunes:author>The Archivists</itunes:author><description>{description}</description>
<enclosure url="{base}/media/{file}" type="{type}" length="{length}"/>{extra}</item>'''


def episode(base: str, file: str, title: str, date: str, kind: str, extra: str = "") -> str:
    return EPISODE.format(base=base, file=file, title=title, guid=file, date=date, type=kind, extra=extra,
                          description=f"The episode {title}.", length=(FIXTURES / "speech" / file).stat().st_size
                          if (FIXTURES / "speech" / file).exists() else (FIXTURES / file).stat().st_size)


def podcast(base: str, *, with_third: bool) -> bytes:
    items = [
        episode(base, "jfk.flac", "An inaugural address", "Fri, 20 Jan 1961 17:00:00 GMT", "audio/flac"),
        episode(base, "autocut_test001.mp4", "A test video with subtitles", "Sat, 01 Jun 2024 08:00:00 GMT",
                "video/mp4", extra=f'<podcast:transcript url="{base}/media/autocut_test.srt" '
                                   'type="application/x-subrip" language="zh"/>'),
        episode(base, "LJ001-0001.mp3", "On printing", "Sun, 02 Jun 2024 08:00:00 GMT", "audio/mpeg"),
    ]
    if with_third:
        items.insert(0, episode(base, "LJ001-0002.wav", "Comparatively modern", "Mon, 03 Jun 2024 08:00:00 GMT",
                                "audio/wav"))
    return PODCAST.format(base=base, items="\n".join(items)).encode()


def atom(base: str) -> bytes:
    entries = "".join(
        f"<entry><title>{title}</title><id>urn:{name}</id><updated>2024-06-0{n + 1}T08:00:00Z</updated>"
        f'<link rel="alternate" href="{base}/news/{name}.html"/><author><name>Desk {n}</name></author>'
        f"<summary>{title}</summary></entry>"
        for n, (name, title) in enumerate([("wikipedia", "Mozilla"), ("bbc-1", "Obama on guns"),
                                           ("nytimes-1", "Sudan sanctions")]))
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>The desk</title>'
            f"<id>urn:desk</id><updated>2024-06-03T08:00:00Z</updated>{entries}</feed>").encode()


def sitemap(base: str) -> bytes:
    urls = "".join(f"<url><loc>{base}/docs/{name}</loc><lastmod>2024-05-0{n + 1}</lastmod></url>"
                   for n, name in enumerate(["fake-memo.pdf", "lighthouse-keeping.txt", "sourdough.md"]))
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A stack of this module's own and an origin serving the three sources and their items."""
    from tests.e2e.conftest import RunningStack

    with Origin() as origin:
        base = origin.base
        for file, kind in [("jfk.flac", "audio/flac"), ("autocut_test001.mp4", "video/mp4")]:
            origin.put(f"/media/{file}", FIXTURES / file, kind)
        for file, kind in [("LJ001-0001.mp3", "audio/mpeg"), ("LJ001-0002.wav", "audio/wav"),
                           ("autocut_test.srt", "application/x-subrip")]:
            origin.put(f"/media/{file}", FIXTURES / "speech" / file, kind)
        for name in ("wikipedia", "bbc-1", "nytimes-1"):
            origin.put(f"/news/{name}.html", FIXTURES / "html" / name / "source.html", "text/html; charset=utf-8")
        origin.put("/docs/fake-memo.pdf", FIXTURES / "pdf" / "fake-memo.pdf", "application/pdf")
        origin.put("/docs/lighthouse-keeping.txt", FIXTURES / "text" / "lighthouse-keeping.txt", "text/plain")
        origin.put("/docs/sourdough.md", FIXTURES / "text" / "sourdough.md", "text/markdown")
        origin.put("/podcast.xml", podcast(base, with_third=False), "application/rss+xml")
        origin.put("/desk.atom", atom(base), "application/atom+xml")
        origin.put("/sitemap.xml", sitemap(base), "application/xml")
        running = RunningStack(tmp_path_factory.mktemp("sources"))
        try:
            ids = {}
            for name in ("podcast.xml", "desk.atom", "sitemap.xml"):
                response = running.http.post("/api/sources", json={"url": f"{base}/{name}"})
                assert response.status_code == 202, response.text
                ids[name] = response.json()["id"]
            yield running, origin, ids
        finally:
            running.stop()


def wait_until_indexed(stack, source_id: str, expected: int, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = stack.http.get(f"/api/sources/{source_id}").json()
        finished = sum(n for status, n in view["assets"].items() if status in ("SEARCHABLE", "PROCESSING_ERROR",
                                                                                 "EMBEDDINGS_ERROR"))
        if view["items"]["pending"] == 0 and view["items"]["total"] >= expected and finished >= expected:
            return view
        time.sleep(0.5)
    raise AssertionError(f"source {source_id} was not indexed: {view}")


def search(stack, q: str, **params) -> list[dict]:
    response = stack.http.get("/api/search", params={"q": q, "limit": 5, **params})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_every_item_of_each_source_becomes_searchable(world):
    stack, _, ids = world
    for name, kind in (("podcast.xml", "rss"), ("desk.atom", "atom"), ("sitemap.xml", "sitemap")):
        view = wait_until_indexed(stack, ids[name], 3)
        assert view["kind"] == kind and view["searchable"] == 3, view
        assert view["items"] == {"total": 3, "pending": 0, "submitted": 3, "refused": 0}
    assert stack.http.get(f"/api/sources/{ids['podcast.xml']}").json()["title"] == "Voices from the archive"


def test_an_episode_keeps_what_the_feed_said_of_it_and_is_found_at_the_second(world):
    stack, origin, ids = world
    wait_until_indexed(stack, ids["podcast.xml"], 3)
    results = search(stack, "ask not what your country can do for you", source=ids["podcast.xml"])
    top = results[0]
    assert top["asset"]["url"] == f"{origin.base}/media/jfk.flac"
    assert top["asset"]["title"] == "An inaugural address"
    assert top["asset"]["published_at"].startswith("1961-01-20T17:00:00")
    assert top["asset"]["author"] == "The Archivists" and top["asset"]["source_id"] == ids["podcast.xml"]
    assert 0 <= top["start_s"] <= 11 and top["end_s"] <= 12


def test_an_episode_with_a_publisher_transcript_is_indexed_from_it_with_its_timings(world):
    stack, origin, ids = world
    wait_until_indexed(stack, ids["podcast.xml"], 3)
    results = search(stack, "Hello, my name is AutoCut. This is a video for testing", source=ids["podcast.xml"])
    top = results[0]
    assert top["asset"]["url"] == f"{origin.base}/media/autocut_test001.mp4"
    # The Chinese cue is only in the publisher's SRT: Whisper tiny.en would not write it.
    asset = stack.http.get(f"/api/assets/{top['asset']['id']}").json()
    assert asset["transcript"]["url"].endswith("/media/autocut_test.srt")
    assert "大家好" in top["snippet"] and "AutoCut" in top["snippet"], top
    assert top["end_s"] == 10.26 and 0 <= top["start_s"] <= 5.0, "the SRT's last cue ends at 10.26 s"
    chinese = search(stack, "大家好", source=ids["podcast.xml"], mode="keyword")
    assert [r["asset"]["url"] for r in chinese] == [f"{origin.base}/media/autocut_test001.mp4"]


def test_the_atom_feed_and_the_sitemap_are_found_by_what_their_pages_say(world):
    stack, origin, ids = world
    wait_until_indexed(stack, ids["desk.atom"], 3)
    wait_until_indexed(stack, ids["sitemap.xml"], 3)
    top = search(stack, "Which non-profit organisation develops the Firefox web browser?")[0]
    assert top["asset"]["url"] == f"{origin.base}/news/wikipedia.html"
    assert top["asset"]["source_id"] == ids["desk.atom"] and top["asset"]["author"] == "Desk 0"
    memo = search(stack, "how many bottles of water were delivered", source=ids["sitemap.xml"])[0]
    assert memo["asset"]["url"] == f"{origin.base}/docs/fake-memo.pdf"
    assert memo["asset"]["published_at"].startswith("2024-05-01")


def test_the_source_filter_keeps_to_one_source(world):
    stack, _, ids = world
    for source_id in ids.values():
        wait_until_indexed(stack, source_id, 3)
    results = search(stack, "Which non-profit organisation develops the Firefox web browser?",
                     source=ids["sitemap.xml"])
    assert all(r["asset"]["source_id"] == ids["sitemap.xml"] for r in results)
    listed = stack.http.get("/api/assets", params={"source": ids["desk.atom"]}).json()["assets"]
    assert len(listed) == 3 and {a["source_id"] for a in listed} == {ids["desk.atom"]}
    assert stack.http.get("/api/search", params={"q": "x", "source": "nope"}).status_code == 400


def test_published_dates_filter_search_apart_from_the_creation_date(world):
    stack, _, ids = world
    wait_until_indexed(stack, ids["podcast.xml"], 3)
    old = search(stack, "ask not what your country can do for you", published_before="1970-01-01")
    assert [r["asset"]["url"].rsplit("/", 1)[-1] for r in old] == ["jfk.flac"]
    assert not [r for r in search(stack, "ask not what your country can do for you", published_after="2000-01-01")
                if r["asset"]["url"].endswith("jfk.flac")]


def test_a_refresh_of_a_feed_that_gained_an_episode_adds_exactly_one_asset(world):
    stack, origin, ids = world
    source_id = ids["podcast.xml"]
    wait_until_indexed(stack, source_id, 3)
    before = {a["id"] for a in stack.http.get("/api/assets", params={"source": source_id}).json()["assets"]}
    unchanged = len(origin.requests)
    assert stack.http.post(f"/api/sources/{source_id}/refresh").status_code == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stack.http.get(f"/api/sources/{source_id}").json()["last_refresh_at"] \
            == stack.http.get(f"/api/sources/{source_id}").json()["created_at"]:
        time.sleep(0.2)
    time.sleep(1)
    assert [r["path"] for r in origin.requests[unchanged:]] == ["/podcast.xml"], "one conditional GET"
    origin.replace("/podcast.xml", podcast(origin.base, with_third=True))
    assert stack.http.post(f"/api/sources/{source_id}/refresh").status_code == 202
    view = wait_until_indexed(stack, source_id, 4)
    after = {a["id"] for a in stack.http.get("/api/assets", params={"source": source_id}).json()["assets"]}
    assert len(after - before) == 1 and before <= after, view
    results = search(stack, "in being comparatively modern", source=source_id)
    assert results[0]["asset"]["title"] == "Comparatively modern"


def test_deleting_a_source_with_its_assets_takes_them_out_of_search(world):
    stack, _, ids = world
    source_id = ids["desk.atom"]
    wait_until_indexed(stack, source_id, 3)
    question = "Why is America lifting trade sanctions against the government in Khartoum?"
    assert search(stack, question)[0]["asset"]["source_id"] == source_id
    response = stack.http.delete(f"/api/sources/{source_id}", params={"assets": "true"})
    assert response.status_code == 204, response.text
    assert stack.http.get(f"/api/sources/{source_id}").status_code == 404
    assert not [r for r in search(stack, question) if r["asset"].get("source_id") == source_id]
    assert stack.http.get("/api/assets", params={"source": source_id}).json()["assets"] == []


def test_bad_sources_are_refused_with_a_reason(world):
    stack, origin, _ = world
    origin.put("/not-a-feed.html", b"<html><body><p>Just a page.</p></body></html>", "text/html")
    cases = {
        "not a url": 400,
        f"{origin.base}/missing.xml": 422,
        f"{origin.base}/not-a-feed.html": 415,
    }
    for url, status in cases.items():
        response = stack.http.post("/api/sources", json={"url": url})
        assert response.status_code == status, (url, response.text)
        assert response.json()["error"]["message"]
