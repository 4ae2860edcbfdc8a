"""What a source URL lists, read from its bytes: the items of an RSS or Atom feed (podcast feeds
with their enclosures and Podcasting 2.0 transcripts included), the pages of a sitemap, the
sitemaps of a sitemap index, or the feed an HTML page links to.

This module never touches the network: the caller fetches the source (with its own size limit,
conditional GET and SSRF rules) and hands over the bytes. It does not filter item URLs by
address either: an item pointing at 127.0.0.1 or 10.0.0.5 is returned like any other, and the
caller refuses it with the same SSRF rules it applies to every asset, so that the refusal is
counted and shown per item.

Which format a body is comes from the bytes, not from the declared content type (servers label
feeds text/html and sitemaps application/octet-stream): gzip by its magic, inflated with a hard
cap; a sitemap or sitemap index by its root element in the sitemaps.org namespace, read with
lxml (no entity resolution, no network, no huge trees); a feed by feedparser, the ecosystem's
lenient parser, which also reads feeds that are not well-formed XML; an HTML page for its
`<link rel="alternate">` to a feed. Anything else is UnsupportedContentType.

Every item URL is made absolute against the source URL and canonical (normalise_url: http or
https only, fragment dropped), and the first of several items with one URL wins. Items dropped
on the way are counted by reason in `ParsedSource.skipped`. Past `max_items` entries (in document
order) the rest are counted, not read: a feed of 100,000 items is cut before feedparser sees it,
because feedparser spends about half a millisecond on each. Whatever goes wrong surfaces as a
DomainError (ExtractionFailed, ContentTooLarge, UnsupportedContentType) with a reason a user can
read, never another exception type.
"""

from __future__ import annotations

import dataclasses
import io
import mimetypes
import re
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

from allthethings.domain.assets import normalise_url
from allthethings.domain.errors import (
    ContentTooLarge,
    DomainError,
    ExtractionFailed,
    InvalidInput,
    UnsupportedContentType,
)
from allthethings.domain.sources import (
    SKIP_REASONS,
    MiB,
    ParsedSource,
    SourceItem,
    SourceKind,
    SourceLimits,
    Transcript,
)
from allthethings.ports import SourceReader

__all__ = ["FeedReader", "ParsedSource", "SourceItem", "SourceKind", "SourceLimits", "Transcript", "parse_source"]


def parse_source(body: bytes, url: str, content_type: str | None,
                 limits: SourceLimits | None = None) -> ParsedSource:
    """What the source at `url` lists, from its fetched `body`. `content_type` (the response's) only
    breaks ties: a body that is not XML and is declared text/html is read as an HTML page (an XML
    root decides alone), and its charset is passed on to feedparser.

    Raises ContentTooLarge (over `max_bytes`, before or after gunzip), ExtractionFailed (damaged
    gzip, a sitemap or feed that is not valid XML) or UnsupportedContentType (no feed or sitemap,
    including an HTML page that links none)."""
    limits = limits or SourceLimits()
    try:
        body = _inflated(body, limits)
        root = _root_name(body)
        if root is not None and root[0] == _SITEMAP_NS and root[1] in ("urlset", "sitemapindex"):
            return _sitemap(body, url, limits, index=root[1] == "sitemapindex")
        if _is_page(root, body, content_type):
            return _page(body, url)
        return _feed(body, url, content_type, limits, root)
    except DomainError:
        raise
    except MemoryError:
        raise ExtractionFailed("the source is too large to read") from None
    except Exception as exc:  # a hostile or broken body can break a parser anywhere  # noqa: BLE001
        raise ExtractionFailed(f"the source could not be read ({type(exc).__name__})") from None


# --- bytes ----------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"


def _inflated(body: bytes, limits: SourceLimits) -> bytes:
    """The body, gunzipped if it is gzip. Inflating stops one byte past `max_bytes`, so a bomb
    costs at most that much memory and time, never what it would inflate to."""
    if len(body) > limits.max_bytes:
        raise ContentTooLarge(f"the source is {len(body):,} bytes; the limit is {limits.max_bytes:,}")
    if not body.startswith(_GZIP_MAGIC):
        return body
    out = bytearray()
    data = body
    while data.startswith(_GZIP_MAGIC):  # a gzip file may hold several members; trailing junk is ignored, as gzip does
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, limits.max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise ExtractionFailed(f"the gzipped source is damaged: {exc}") from None
        if len(out) > limits.max_bytes:
            raise ContentTooLarge(f"the gzipped source inflates to more than {limits.max_bytes:,} bytes, "
                                  "the limit; it was not read further")
        if not inflater.eof:
            raise ExtractionFailed("the gzipped source is cut short")
        data = inflater.unused_data
    return bytes(out)


def _xml_options() -> dict:
    # No entities beyond XML's own, no DTDs or anything else from the network, and libxml2's
    # default caps on depth and text size: a sitemap is a flat list of short strings.
    return {"resolve_entities": False, "no_network": True, "huge_tree": False, "load_dtd": False}


_SNIFF_BYTES = 1 * MiB  # prolog (declaration, comments, doctype) allowed before the root element
_SNIFF_CHUNK = 64 * 1024


def _root_name(body: bytes) -> tuple[str | None, str] | None:
    """The root element's (namespace, local name), read as far as its start tag and no further;
    None when the body is not XML up to there (an HTML page usually is not)."""
    from lxml import etree

    parser = etree.XMLPullParser(events=("start",), **_xml_options())
    for offset in range(0, min(len(body), _SNIFF_BYTES), _SNIFF_CHUNK):
        failed = False
        try:
            parser.feed(body[offset:offset + _SNIFF_CHUNK])
        except etree.XMLSyntaxError:
            failed = True  # past the root's start tag, perhaps: its event is still there to read
        for _event, element in parser.read_events():
            name = etree.QName(element)
            return name.namespace, name.localname
        if failed:
            return None
    return None


def _absolute(raw: str, base: str) -> str | None:
    """`raw` resolved against `base` in canonical form, or None when that is no http(s) URL."""
    try:
        return normalise_url(urljoin(base, raw.strip()))
    except (InvalidInput, ValueError):
        return None


class _Collector:
    """The URLs a source yields, each once, and the count of those dropped by reason."""

    def __init__(self, base: str):
        self.base = base
        self.seen: set[str] = set()
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)

    def accept(self, raw: str | None) -> str | None:
        if raw is None or not raw.strip():
            self.skipped["no_url"] += 1
            return None
        url = _absolute(raw, self.base)
        if url is None:
            self.skipped["bad_url"] += 1
            return None
        if url in self.seen:
            self.skipped["duplicate"] += 1
            return None
        self.seen.add(url)
        return url


# --- sitemaps -------------------------------------------------------------------------------

_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
_W3C_PARTIAL = re.compile(r"(\d{4})(?:-(\d{2}))?")


def _sitemap(body: bytes, url: str, limits: SourceLimits, *, index: bool) -> ParsedSource:
    """A urlset's `<url>` entries as items (loc, lastmod), or a sitemap index's `<sitemap>` locs
    as children. Streamed: each entry is dropped from the tree once read, so memory stays flat
    however long the list; entries past the limit are counted without being read."""
    from lxml import etree

    entry, cap = ("sitemap", limits.max_children) if index else ("url", limits.max_items)
    what = "sitemap index" if index else "sitemap"
    collector = _Collector(url)
    items: list[SourceItem] = []
    children: list[str] = []
    seen = 0
    try:
        for _event, element in etree.iterparse(io.BytesIO(body), events=("end",), tag=f"{{{_SITEMAP_NS}}}{entry}",
                                               **_xml_options()):
            seen += 1
            if seen > cap:
                collector.skipped["over_limit"] += 1
            else:
                loc = collector.accept(element.findtext(f"{{{_SITEMAP_NS}}}loc"))
                if loc is not None and index:
                    children.append(loc)
                elif loc is not None:
                    items.append(SourceItem(loc, published_at=_w3c_datetime(
                        element.findtext(f"{{{_SITEMAP_NS}}}lastmod"))))
            element.clear()
            parent = element.getparent()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        raise ExtractionFailed(f"the {what} is not valid XML: {exc.msg}") from None
    kind = SourceKind.SITEMAP_INDEX if index else SourceKind.SITEMAP
    return ParsedSource(kind, items=items, children=children, skipped=collector.skipped)


def _w3c_datetime(text: str | None) -> datetime | None:
    """A sitemap's lastmod (W3C Datetime: a year, a month, a date, or a time with its zone) in UTC.
    A time without a zone, which the format does not allow but sites write, is taken as UTC."""
    text = (text or "").strip()
    if not text:
        return None
    partial = _W3C_PARTIAL.fullmatch(text)
    try:
        if partial:
            return datetime(int(partial[1]), int(partial[2] or 1), 1, tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- HTML pages -----------------------------------------------------------------------------

_PAGE_HEAD_BYTES = 1 * MiB  # where a page's <link> elements are: its head
_HTML_START = re.compile(rb"\s*(?:<!--.*?-->\s*|<\?.*?\?>\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>])",
                         re.IGNORECASE | re.DOTALL)
_FEED_LINK_TYPES = ("application/rss+xml", "application/atom+xml")


def _is_page(root: tuple[str | None, str] | None, body: bytes, content_type: str | None) -> bool:
    """XHTML by its root; else, when the body is not XML, HTML by its start or its declared type.
    An XML root decides alone: a feed served as text/html, which is common, is still a feed."""
    if root is not None:
        return root[1].lower() == "html"
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    return declared in ("text/html", "application/xhtml+xml") or bool(
        _HTML_START.match(body.removeprefix(b"\xef\xbb\xbf"), 0, 4096))


def _page(body: bytes, url: str) -> ParsedSource:
    """An HTML page: the first feed it links with `<link rel="alternate" type="application/rss+xml">`
    (or atom+xml), absolute against its `<base>` or its URL; UnsupportedContentType if none."""
    from lxml import etree, html

    try:
        document = html.document_fromstring(body[:_PAGE_HEAD_BYTES])
    except (etree.LxmlError, ValueError):
        document = None
    if document is not None:
        base = url
        for element in document.iter("base"):
            if element.get("href"):
                base = urljoin(url, element.get("href").strip())
                break
        for link in document.iter("link"):
            rel = (link.get("rel") or "").lower().split()
            declared = (link.get("type") or "").split(";", 1)[0].strip().lower()
            href = link.get("href")
            if "alternate" in rel and declared in _FEED_LINK_TYPES and href:
                feed_link = _absolute(href, base)
                if feed_link is not None:
                    title = document.findtext(".//title")
                    return ParsedSource(None, title=_clipped(" ".join((title or "").split()), _MAX_FIELD_CHARS),
                                        feed_link=feed_link)
    raise UnsupportedContentType("the source is an HTML page that links no RSS or Atom feed; "
                                 "it is no feed or sitemap")


# --- feeds ----------------------------------------------------------------------------------

_MAX_FIELD_CHARS = 1_000  # a title, an author or a guid
_FEED_ROOTS = frozenset({"rss", "RDF", "feed"})
_MAX_TRANSCRIPTS = 10  # per item
_TRANSCRIPT_TYPES = frozenset({"text/vtt", "application/x-subrip", "application/srt", "application/json"})
# The Podcasting 2.0 namespace, and the address early feeds declared before it settled.
_PODCAST_NS = frozenset({"https://podcastindex.org/namespace/1.0",
                         "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md"})
# Where RSS 0.9x/2.0 (no namespace), RSS 0.90 and 1.0, and Atom 0.3 and 1.0 put their entries.
_ENTRY_NS = frozenset({None, "http://my.netscape.com/rdf/simple/0.9/", "http://purl.org/rss/1.0/",
                       "http://purl.org/atom/ns#", "http://www.w3.org/2005/Atom"})
# An unprefixed entry's start tag, for cutting a feed that is not well-formed XML.
_ENTRY_START = re.compile(rb"<(?:item|entry)[\s/>]")
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_BLOCKS = ("p", "div", "br", "li", "tr", "td", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre")


@dataclasses.dataclass
class _Bounded:
    """A feed's body cut to `max_items` entries, and what a well-formed one says beyond feedparser."""

    body: bytes
    over_limit: int
    rewritten: bool  # written out again by lxml, in UTF-8 whatever the original's encoding
    # Each kept entry's raw <podcast:transcript> attributes, in order; None when the body is not
    # well-formed XML (feedparser then keeps only each entry's last transcript).
    transcripts: list[list[dict[str, str]]] | None
    error: str | None  # why lxml refused the body


def _feed(body: bytes, url: str, content_type: str | None, limits: SourceLimits,
          root: tuple[str | None, str] | None) -> ParsedSource:
    import feedparser

    bounded = _bounded_feed(body, limits.max_items)
    charset = "utf-8" if bounded.rewritten else _charset(content_type)
    parsed = feedparser.parse(
        io.BytesIO(bounded.body),
        response_headers={"content-location": url,
                          "content-type": f"application/xml; charset={charset}" if charset else "application/xml"},
        # We keep plain text only, so feedparser's HTML sanitizer (fifty times slower than its
        # parsing) buys nothing; links are resolved with the source URL as the base either way.
        sanitize_html=False, resolve_relative_uris=False,
    )
    entries = list(parsed.entries)
    version = parsed.get("version") or ""
    broken = parsed.bozo and not isinstance(parsed.get("bozo_exception"), feedparser.ThingsNobodyCaresAboutButMe)
    if not entries and (broken or not version):
        if root is not None and root[1] in _FEED_ROOTS and broken:
            reason = bounded.error or str(parsed.get("bozo_exception"))
            raise ExtractionFailed(f"the feed is not valid XML: {reason}")
        raise UnsupportedContentType("the source is no feed or sitemap (not RSS, Atom, a sitemap or a sitemap index)")
    over_limit = bounded.over_limit + max(len(entries) - limits.max_items, 0)
    entries = entries[:limits.max_items]
    transcripts = bounded.transcripts
    if transcripts is None or len(transcripts) != len(entries):  # lxml and feedparser saw different entries
        transcripts = [_single_transcript(entry) for entry in entries]

    collector = _Collector(url)
    collector.skipped["over_limit"] = over_limit
    items = []
    for entry, raw_transcripts in zip(entries, transcripts):
        item_url = collector.accept(_entry_url(entry))
        if item_url is None:
            continue
        items.append(SourceItem(
            item_url,
            title=_text(entry, "title", _MAX_FIELD_CHARS),
            published_at=_entry_date(entry),
            author=_clipped(" ".join((entry.get("author") or "").split()), _MAX_FIELD_CHARS),
            description=_text(entry, "summary", limits.max_description_chars)
            or _content_text(entry, limits.max_description_chars),
            guid=_clipped((entry.get("id") or "").strip(), _MAX_FIELD_CHARS),
            transcripts=_transcripts(raw_transcripts, url),
        ))
    is_atom = version.startswith("atom") or (not version and root is not None and root[1] == "feed")
    return ParsedSource(SourceKind.ATOM if is_atom else SourceKind.RSS,
                        title=_text(parsed.feed, "title", _MAX_FIELD_CHARS),
                        items=items, skipped=collector.skipped)


def _bounded_feed(body: bytes, max_items: int) -> _Bounded:
    """The feed with at most `max_items` entries. A well-formed feed is streamed through lxml once:
    entries past the limit are counted and removed, and the kept ones' transcripts collected;
    only when some were removed is the tree written out again for feedparser. A feed that is
    not well-formed is cut at the start tag of its first entry too many, which feedparser's
    lenient parser reads like any other broken feed."""
    from lxml import etree

    transcripts: list[list[dict[str, str]]] = []
    over = 0
    context = etree.iterparse(io.BytesIO(body), events=("end",), tag=("{*}item", "{*}entry"), **_xml_options())
    try:
        for _event, element in context:
            if not _is_entry(element):
                continue
            if len(transcripts) < max_items:
                transcripts.append([dict(t.attrib) for t in element if _is_transcript(t)][:_MAX_TRANSCRIPTS])
            else:
                over += 1
                element.getparent().remove(element)
    except etree.XMLSyntaxError as exc:
        return _cut_feed(body, max_items, exc.msg)
    if not over:
        return _Bounded(body, 0, False, transcripts, None)
    return _Bounded(etree.tostring(context.root, xml_declaration=True, encoding="utf-8"), over, True, transcripts,
                    None)


def _cut_feed(body: bytes, max_items: int, error: str) -> _Bounded:
    starts = _ENTRY_START.finditer(body)
    for count, start in enumerate(starts):
        if count == max_items:
            return _Bounded(body[:start.start()], 1 + sum(1 for _ in starts), False, None, error)
    return _Bounded(body, 0, False, None, error)


def _is_entry(element) -> bool:
    """An item or entry where a feed keeps them: under the root (RSS 1.0, Atom) or its channel."""
    from lxml import etree

    name = etree.QName(element)
    parent = element.getparent()
    if name.namespace not in _ENTRY_NS or parent is None:
        return False
    if parent.getparent() is None:
        return True
    return etree.QName(parent).localname == "channel" and parent.getparent().getparent() is None


def _is_transcript(element) -> bool:
    from lxml import etree

    if not isinstance(element.tag, str):  # a comment or a processing instruction
        return False
    name = etree.QName(element)
    return name.localname == "transcript" and name.namespace in _PODCAST_NS


def _single_transcript(entry) -> list[dict[str, str]]:
    found = entry.get("podcast_transcript")
    return [dict(found)] if isinstance(found, dict) else []


def _transcripts(raw: Iterable[dict[str, str]], base: str) -> list[Transcript]:
    """The transcripts of the types we read, in the feed's order, each URL once."""
    found: list[Transcript] = []
    for attributes in raw:
        media = (attributes.get("type") or "").split(";", 1)[0].strip().lower()
        url = _absolute(attributes.get("url") or "", base) if attributes.get("url") else None
        if media not in _TRANSCRIPT_TYPES or url is None or any(t.url == url for t in found):
            continue
        found.append(Transcript(url, media, language=(attributes.get("language") or "").strip() or None,
                                rel=(attributes.get("rel") or "").strip() or None))
    return found


def _entry_url(entry) -> str | None:
    """The first audio or video enclosure (a podcast episode), else the entry's link."""
    for enclosure in [*entry.get("enclosures", []), *entry.get("media_content", [])]:
        href = enclosure.get("href") or enclosure.get("url")
        if href and _is_media(enclosure.get("type"), href):
            return href
    return entry.get("link")


def _is_media(declared: str | None, href: str) -> bool:
    media = (declared or "").split(";", 1)[0].strip().lower()
    if not media:  # feeds often leave the type out; the file name usually tells
        media = mimetypes.guess_type(urlsplit(href).path)[0] or ""
    return media.startswith(("audio/", "video/"))


def _entry_date(entry) -> datetime | None:
    # feedparser has already turned every date format it knows into a UTC struct_time.
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    try:
        return datetime(*parsed[:6], tzinfo=UTC) if parsed else None
    except (TypeError, ValueError):
        return None


def _text(holder, key: str, limit: int) -> str | None:
    """A feedparser text field as plain text: HTML (by its declared type) is reduced to its words."""
    value = holder.get(key)
    if not value:
        return None
    detail = holder.get(f"{key}_detail") or {}
    return _plain(value, limit, is_html=(detail.get("type") or "") in _HTML_TYPES)


def _content_text(entry, limit: int) -> str | None:
    for content in entry.get("content") or []:
        if content.get("value"):
            return _plain(content["value"], limit, is_html=(content.get("type") or "") in _HTML_TYPES)
    return None


def _plain(value: str, limit: int, *, is_html: bool) -> str | None:
    # Markup rarely outweighs its words eight to one; cutting first keeps a megabyte of
    # content:encoded from costing a megabyte of HTML parsing for two thousand characters.
    value = value[:limit * 8]
    if is_html:
        value = _html_text(value)
    return _clipped(" ".join(value.split()), limit)


def _html_text(markup: str) -> str:
    from lxml import etree, html

    try:
        fragment = html.fragment_fromstring(markup, create_parent="div")
    except (etree.LxmlError, ValueError):
        return re.sub(r"<[^>]*>", " ", markup)
    for element in list(fragment.iter("script", "style")):
        element.drop_tree()
    for element in fragment.iter(*_TEXT_BLOCKS):  # so that blocks do not run their words together
        element.tail = " " + (element.tail or "")
    return fragment.text_content()


def _clipped(text: str, limit: int) -> str | None:
    if not text:
        return None
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _charset(content_type: str | None) -> str | None:
    found = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type or "", re.IGNORECASE)
    return found[1] if found else None


class FeedReader(SourceReader):
    """The SourceReader of feeds (feedparser) and sitemaps (lxml): `parse_source`."""

    def parse(self, body: bytes, url: str, content_type: str | None, limits: SourceLimits) -> ParsedSource:
        return parse_source(body, url, content_type, limits)
