"""Sources (adapters/feeds.py): what a podcast feed, an Atom feed, a sitemap, a sitemap index or an
HTML page lists, read from bytes with the real parsers, and the hostile or broken sources that must
end in a clear error or in counted, skipped items. Every document is written out here."""

from __future__ import annotations

import gzip
import time
import zlib
from datetime import UTC, datetime

import pytest

from allthethings.adapters.feeds import (
    ParsedSource,
    SourceItem,
    SourceKind,
    SourceLimits,
    Transcript,
    parse_source,
)
from allthethings.domain.errors import ContentTooLarge, ExtractionFailed, UnsupportedContentType

MiB = 1024 * 1024

PODCAST = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"
     xmlns:podcast="https://podcastindex.org/namespace/1.0">
  <channel>
    <title>Kettle Talk</title>
    <link>https://pod.example/</link>
    <itunes:author>Ann Example</itunes:author>
    <item>
      <title>Descaling, at last &amp; for good</title>
      <link>https://pod.example/episodes/1</link>
      <guid isPermaLink="false">kettle-ep-1</guid>
      <pubDate>Tue, 02 Jan 2024 10:00:00 +0100</pubDate>
      <itunes:author>Ann Example</itunes:author>
      <itunes:duration>00:31:07</itunes:duration>
      <description><![CDATA[<p>Why limescale <b>builds up</b>.</p><p>And what vinegar does.</p>
        <script>alert("no")</script>]]></description>
      <enclosure url="/audio/ep1.mp3#t=10" type="audio/mpeg" length="123456"/>
      <podcast:transcript url="https://pod.example/t/ep1.vtt" type="text/vtt" language="en" rel="captions"/>
      <podcast:transcript url="/t/ep1.srt" type="application/x-subrip" language="en"/>
      <podcast:transcript url="/t/ep1.html" type="text/html"/>
      <podcast:transcript url="/t/ep1.json" type="application/json"/>
    </item>
    <item>
      <title>Show notes only</title>
      <link>/notes/2</link>
      <guid>kettle-notes-2</guid>
      <pubDate>Wed, 03 Jan 2024 08:30:00 GMT</pubDate>
      <enclosure url="https://pod.example/notes/2.pdf" type="application/pdf" length="99"/>
    </item>
  </channel>
</rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">Kettle &lt;em&gt;Notes&lt;/em&gt;</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2024-03-01T12:00:00Z</updated>
  <entry>
    <title>Water hardness, explained</title>
    <link rel="alternate" href="https://blog.example/hardness"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2024-03-01T12:00:00+02:00</updated>
    <author><name>Bea Writer</name></author>
    <summary type="html">&lt;p&gt;Calcium &amp;amp; magnesium.&lt;/p&gt;</summary>
  </entry>
</feed>"""


def sitemap(*entries: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(entries) + "</urlset>").encode()


def sitemap_index(*locs: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs) + "</sitemapindex>").encode()


def rss(items: str, title: str = "Feed") -> bytes:
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{items}'
            "</channel></rss>").encode()


def counts(**nonzero: int) -> dict[str, int]:
    return {"no_url": 0, "duplicate": 0, "over_limit": 0, "bad_url": 0, **nonzero}


# --- feeds ----------------------------------------------------------------------------------


def test_a_podcast_item_becomes_its_audio_enclosure_with_its_publisher_transcripts():
    parsed = parse_source(PODCAST, "https://pod.example/feed.xml", "application/rss+xml")

    assert parsed.kind is SourceKind.RSS
    assert parsed.title == "Kettle Talk"
    episode = parsed.items[0]
    assert episode.url == "https://pod.example/audio/ep1.mp3"
    assert episode.title == "Descaling, at last & for good"
    assert episode.published_at == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
    assert episode.author == "Ann Example"
    assert episode.guid == "kettle-ep-1"
    assert episode.description == "Why limescale builds up. And what vinegar does."
    assert episode.transcripts == [
        Transcript("https://pod.example/t/ep1.vtt", "text/vtt", language="en", rel="captions"),
        Transcript("https://pod.example/t/ep1.srt", "application/x-subrip", language="en"),
        Transcript("https://pod.example/t/ep1.json", "application/json"),
    ]


def test_an_item_whose_enclosure_is_no_audio_or_video_gives_its_link():
    parsed = parse_source(PODCAST, "https://pod.example/feed.xml", "application/rss+xml")

    notes = parsed.items[1]
    assert notes.url == "https://pod.example/notes/2"
    assert notes.published_at == datetime(2024, 1, 3, 8, 30, tzinfo=UTC)
    assert notes.transcripts == []
    assert parsed.skipped == counts()


def test_an_enclosure_without_a_type_is_known_as_audio_by_its_file_name():
    feed = rss('<item><link>https://pod.example/e/3</link>'
               '<enclosure url="https://cdn.example/e3.m4a" length="1"/></item>')

    assert [i.url for i in parse_source(feed, "https://pod.example/feed", None).items] == ["https://cdn.example/e3.m4a"]


def test_an_atom_entry_gives_its_link_date_author_and_summary_as_plain_text():
    parsed = parse_source(ATOM, "https://blog.example/atom.xml", "application/atom+xml")

    assert parsed.kind is SourceKind.ATOM
    assert parsed.title == "Kettle Notes"
    assert parsed.items == [SourceItem(
        "https://blog.example/hardness",
        title="Water hardness, explained",
        published_at=datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        author="Bea Writer",
        description="Calcium & magnesium.",
        guid="urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a",
    )]


def test_a_feed_served_as_html_is_still_read_as_a_feed():
    parsed = parse_source(ATOM, "https://blog.example/atom.xml", "text/html; charset=utf-8")

    assert parsed.kind is SourceKind.ATOM
    assert [i.url for i in parsed.items] == ["https://blog.example/hardness"]


def test_a_feed_with_no_items_is_an_empty_feed_not_an_error():
    parsed = parse_source(rss(""), "https://blog.example/feed", "application/rss+xml")

    assert (parsed.kind, parsed.title, parsed.items) == (SourceKind.RSS, "Feed", [])


def test_a_long_description_is_cut_to_the_limit():
    feed = rss(f"<item><link>https://blog.example/long</link><description>{'word ' * 5000}</description></item>")

    description = parse_source(feed, "https://blog.example/feed", None).items[0].description

    assert len(description) == 2_000
    assert description.startswith("word word") and description.endswith("…")


def test_a_feed_of_100000_items_reads_the_first_thousand_and_counts_the_rest_quickly():
    feed = rss("".join(f"<item><title>Episode {n}</title><link>https://big.example/e/{n}</link>"
                       f"<guid>e{n}</guid></item>" for n in range(100_000)))

    started = time.perf_counter()
    parsed = parse_source(feed, "https://big.example/feed", "application/rss+xml")
    elapsed = time.perf_counter() - started

    assert len(parsed.items) == 1_000
    assert (parsed.items[0].url, parsed.items[-1].url) == ("https://big.example/e/0", "https://big.example/e/999")
    assert parsed.skipped == counts(over_limit=99_000)
    assert elapsed < 10  # feedparser alone takes about 40 s over all of them


def test_a_feed_that_is_not_well_formed_is_cut_at_the_limit_too():
    # &nbsp; is undefined in XML: lxml refuses the feed, feedparser's lenient parser reads it.
    feed = rss("".join(f"<item><title>Episode&nbsp;{n}</title><link>https://big.example/e/{n}</link></item>"
                       for n in range(50)))

    parsed = parse_source(feed, "https://big.example/feed", None, SourceLimits(max_items=10))

    assert [i.url for i in parsed.items] == [f"https://big.example/e/{n}" for n in range(10)]
    assert parsed.skipped == counts(over_limit=40)


def test_items_with_no_url_are_skipped_and_counted():
    feed = rss("<item><title>Nothing to link</title></item>"
               "<item><title>Empty link</title><link>  </link></item>"
               "<item><title>Kept</title><link>https://blog.example/kept</link></item>")

    parsed = parse_source(feed, "https://blog.example/feed", None)

    assert [i.title for i in parsed.items] == ["Kept"]
    assert parsed.skipped == counts(no_url=2)


def test_duplicate_items_are_kept_once_and_counted():
    feed = rss("<item><title>First</title><link>https://blog.example/a</link></item>"
               "<item><title>Same page, other anchor</title><link>https://BLOG.example/a#comments</link></item>"
               "<item><title>Relative, same page</title><link>/a</link></item>"
               "<item><title>Other</title><link>https://blog.example/b</link></item>")

    parsed = parse_source(feed, "https://blog.example/feed", None)

    assert [(i.title, i.url) for i in parsed.items] == [("First", "https://blog.example/a"),
                                                        ("Other", "https://blog.example/b")]
    assert parsed.skipped == counts(duplicate=2)


def test_items_whose_url_is_not_http_are_skipped_as_bad():
    feed = rss("<item><link>javascript:alert(1)</link></item>"
               "<item><link>mailto:ann@example.com</link></item>"
               "<item><link>ftp://files.example/a.mp3</link></item>"
               "<item><link>https://blog.example/ok</link></item>")

    parsed = parse_source(feed, "https://blog.example/feed", None)

    assert [i.url for i in parsed.items] == ["https://blog.example/ok"]
    assert parsed.skipped == counts(bad_url=3)


def test_items_at_private_addresses_are_returned_for_the_caller_to_refuse():
    feed = rss("<item><link>http://127.0.0.1/admin</link></item>"
               "<item><link>http://10.0.0.5/</link></item>"
               "<item><link>http://169.254.169.254/latest/meta-data/</link></item>")

    parsed = parse_source(feed, "https://blog.example/feed", None)

    assert [i.url for i in parsed.items] == ["http://127.0.0.1/admin", "http://10.0.0.5/",
                                             "http://169.254.169.254/latest/meta-data/"]


def test_a_feed_root_that_breaks_before_any_item_is_invalid_xml():
    with pytest.raises(ExtractionFailed, match="the feed is not valid XML: expected '>'"):
        parse_source(b'<?xml version="1.0"?><rss version="2.0"><channel><title>Half</titl',
                     "https://blog.example/feed", None)


# --- sitemaps -------------------------------------------------------------------------------


def test_a_sitemap_lists_its_locs_with_their_lastmod_in_utc():
    body = sitemap("<url><loc>https://docs.example/</loc><lastmod>2024-05-01</lastmod></url>",
                   "<url><loc>\n  https://docs.example/install#linux \n</loc>"
                   "<lastmod>2024-05-02T10:00:00+02:00</lastmod><priority>0.5</priority></url>",
                   "<url><loc>https://docs.example/faq</loc><lastmod>yesterday</lastmod></url>")

    parsed = parse_source(body, "https://docs.example/sitemap.xml", "application/xml")

    assert parsed == ParsedSource(SourceKind.SITEMAP, items=[
        SourceItem("https://docs.example/", published_at=datetime(2024, 5, 1, tzinfo=UTC)),
        SourceItem("https://docs.example/install", published_at=datetime(2024, 5, 2, 8, 0, tzinfo=UTC)),
        SourceItem("https://docs.example/faq"),
    ])


def test_a_sitemap_past_its_limit_counts_the_rest_and_skips_bad_missing_and_repeated_locs():
    body = sitemap("<url><loc>https://docs.example/a</loc></url>",
                   "<url><lastmod>2024-01-01</lastmod></url>",
                   "<url><loc>https://docs.example/a</loc></url>",
                   "<url><loc>gopher://docs.example/b</loc></url>",
                   "<url><loc>https://docs.example/c</loc></url>",
                   "<url><loc>https://docs.example/d</loc></url>",
                   "<url><loc>https://docs.example/e</loc></url>")

    parsed = parse_source(body, "https://docs.example/sitemap.xml", None, SourceLimits(max_items=5))

    assert [i.url for i in parsed.items] == ["https://docs.example/a", "https://docs.example/c"]
    assert parsed.skipped == counts(no_url=1, duplicate=1, bad_url=1, over_limit=2)


def test_a_sitemap_index_lists_its_sitemaps_as_children_up_to_its_limit():
    body = sitemap_index("https://docs.example/pages.xml", "/posts.xml.gz", "https://docs.example/more.xml")

    parsed = parse_source(body, "https://docs.example/sitemap_index.xml", None, SourceLimits(max_children=2))

    assert parsed.kind is SourceKind.SITEMAP_INDEX
    assert parsed.children == ["https://docs.example/pages.xml", "https://docs.example/posts.xml.gz"]
    assert parsed.items == []
    assert parsed.skipped == counts(over_limit=1)


def test_a_sitemap_index_that_lists_itself_parses_with_itself_among_its_children():
    body = sitemap_index("https://docs.example/sitemap_index.xml", "https://docs.example/pages.xml")

    parsed = parse_source(body, "https://docs.example/sitemap_index.xml", None)

    assert parsed.children == ["https://docs.example/sitemap_index.xml", "https://docs.example/pages.xml"]


def test_a_gzipped_sitemap_reads_like_the_plain_one():
    body = sitemap("<url><loc>https://docs.example/a</loc></url>", "<url><loc>https://docs.example/b</loc></url>")

    parsed = parse_source(gzip.compress(body), "https://docs.example/sitemap.xml.gz", "application/gzip")

    assert parsed == parse_source(body, "https://docs.example/sitemap.xml", None)
    assert [i.url for i in parsed.items] == ["https://docs.example/a", "https://docs.example/b"]


def test_a_gzip_bomb_fails_fast_without_inflating_past_the_limit():
    # 64 MiB of zeros in about 64 KB, past the default limit of 50 MiB.
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    bomb = b"".join(deflater.compress(zeros) for _ in range(64)) + deflater.flush()
    assert len(bomb) < 100 * 1024

    started = time.perf_counter()
    with pytest.raises(ContentTooLarge, match="inflates to more than 52,428,800 bytes"):
        parse_source(bomb, "https://docs.example/sitemap.xml.gz", None)
    assert time.perf_counter() - started < 2


def test_a_gzip_bomb_of_a_few_mebibytes_fails_against_a_smaller_limit():
    bomb = gzip.compress(bytes(4 * MiB))

    with pytest.raises(ContentTooLarge, match="the gzipped source inflates"):
        parse_source(bomb, "https://docs.example/sitemap.xml.gz", None, SourceLimits(max_bytes=MiB))


def test_a_gzipped_body_cut_short_is_damaged_not_parsed():
    body = gzip.compress(sitemap("<url><loc>https://docs.example/a</loc></url>"))

    with pytest.raises(ExtractionFailed, match="cut short"):
        parse_source(body[:-12], "https://docs.example/sitemap.xml.gz", None)


def test_a_body_over_the_byte_limit_is_refused_before_parsing():
    with pytest.raises(ContentTooLarge):
        parse_source(sitemap("<url><loc>https://docs.example/a</loc></url>"), "https://docs.example/s.xml", None,
                     SourceLimits(max_bytes=100))


def test_a_sitemap_that_is_not_valid_xml_fails_with_the_parsers_reason():
    body = sitemap("<url><loc>https://docs.example/a</loc></url>", "<url><loc>https://docs.example/b</url>")

    with pytest.raises(ExtractionFailed, match="the sitemap is not valid XML: .*mismatch"):
        parse_source(body, "https://docs.example/sitemap.xml", None)


def test_a_sitemap_entity_pointing_at_a_local_file_is_never_read():
    body = (b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/hostname">]>'
            b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"<url><loc>https://docs.example/&secret;</loc></url></urlset>")

    parsed = parse_source(body, "https://docs.example/sitemap.xml", None)

    assert [i.url for i in parsed.items] == ["https://docs.example/"]


# --- HTML pages and what is no source -------------------------------------------------------


def test_an_html_page_that_links_a_feed_gives_the_feed_absolute():
    page = b"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Kettle blog</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/json" href="/feed.json">
<link rel="Alternate" type="application/rss+xml" title="Posts" href="feed/posts.xml#latest">
<link rel="alternate" type="application/atom+xml" href="/atom.xml">
</head><body><p>Hello</p></body></html>"""

    parsed = parse_source(page, "https://blog.example/kettles/", "text/html; charset=utf-8")

    assert parsed == ParsedSource(None, title="Kettle blog", feed_link="https://blog.example/kettles/feed/posts.xml")


def test_an_html_page_served_as_a_feed_with_no_feed_link_is_unsupported():
    page = b"<!DOCTYPE html><html><head><title>Not a feed</title></head><body><p>Hi</p></body></html>"

    with pytest.raises(UnsupportedContentType, match="no feed or sitemap"):
        parse_source(page, "https://blog.example/feed", "application/rss+xml")


@pytest.mark.parametrize("body", [
    b"just some words, no markup at all",
    b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
    b'<?xml version="1.0"?><note><to>Ann</to></note>',
    b"<urlset><url><loc>https://docs.example/</loc></url></urlset>",  # no sitemaps.org namespace
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
])
def test_a_body_that_is_no_feed_or_sitemap_is_unsupported(body):
    with pytest.raises(UnsupportedContentType, match="no feed or sitemap"):
        parse_source(body, "https://blog.example/feed", None)
