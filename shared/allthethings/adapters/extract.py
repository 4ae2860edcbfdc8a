"""Turning staged bytes into text: trafilatura for HTML main text, pypdf for PDF, markdown-it for
Markdown (plain text without its markup, the first `#` heading as title), decoding for text."""

from __future__ import annotations

import dataclasses
import io
import re
import threading

from allthethings.domain.assets import Location
from allthethings.domain.content import CONTAINER_KINDS, OOXML, RTF, declared_charset
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted, Extractor, Section

# Single-byte Latin code pages that detectors confuse on short texts; Windows-1252 (a superset of
# ISO-8859-1's printable range) is by far the most common of them on the web.
_LATIN_FAMILY = {"cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_9", "iso8859_15",
                 "mac_latin2", "mac_roman"}


def decode_text(body: bytes, charset: str | None = None) -> str:
    """Text from bytes: a BOM, else the declared charset, else UTF-8, else a detected encoding."""
    if body.startswith(b"\xef\xbb\xbf"):
        return body[3:].decode("utf-8", errors="replace")
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace")
    if charset:
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    if best is None:
        return body.decode("cp1252", errors="replace")
    if best.encoding in _LATIN_FAMILY:
        try:
            return body.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return str(best)



# A page whose text comes out one word to a line (pypdf on PDFs that place each word by itself):
# at least this many lines, nearly all of them a single word.
WORD_LINES_MIN = 12
WORD_LINES_SHARE = 0.8
_BULLETS = "●•▪◦■‣∙"


def join_word_lines(page: str) -> str:
    """A page's text with its words joined into lines again when it came out one word to a
    line (a snippet of such a page reads as a column of words); other pages unchanged. A bullet
    still starts a line of its own."""
    lines = [line.strip() for line in page.splitlines() if line.strip()]
    single = sum(1 for line in lines if len(line.split()) == 1)
    if len(lines) < WORD_LINES_MIN or single < WORD_LINES_SHARE * len(lines):
        return page
    joined = " ".join(lines)
    return re.sub(rf"\s*([{_BULLETS}])\s+", r"\n\1 ", joined).strip()


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


def markdown_text(source: str) -> Extracted:
    """Markdown as the words a reader sees: no `#`, `**`, link targets or table pipes, one block
    (paragraph, heading, list item, table row, code block) per paragraph of the text, in sections
    under their heading path (`Install › From source`). The title is the front matter's `title:`,
    else the first level-one heading."""
    from markdown_it import MarkdownIt

    title = None
    front = _FRONT_MATTER.match(source)
    if front:
        found = _FRONT_TITLE.search(front.group(1))
        title = found.group(1).strip("'\"") if found else None
        source = source[front.end():]
    sections: list[Section] = []
    blocks: list[str] = []
    path: list[tuple[int, str]] = []  # (level, heading) from the outermost in

    def close_section() -> None:
        if blocks:
            where = Location(section=" › ".join(h for _, h in path)) if path else None
            sections.append(Section(_tidy("\n\n".join(blocks)), where))
            blocks.clear()

    row: list[str] | None = None
    heading = None
    for token in MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(source):
        if token.type == "heading_open":
            heading = token.tag
        elif token.type == "heading_close":
            heading = None
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.append(" | ".join(cell for cell in row if cell))
            row = None
        elif token.type == "inline":
            text = _inline_text(token.children or [])
            if heading and text:
                if heading == "h1" and title is None:
                    title = text
                close_section()
                level = int(heading[1:])
                path[:] = [(lv, h) for lv, h in path if lv < level] + [(level, text)]
                blocks.append(text)
            elif row is not None:
                row.append(text)
            elif text:
                blocks.append(text)
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(token.content.rstrip("\n"))
        elif token.type == "html_block":
            text = re.sub(r"<[^>]*>", " ", token.content).strip()
            if text:
                blocks.append(text)
    close_section()
    return Extracted.of_sections(title, sections)


def _inline_text(children) -> str:
    """The words of an inline run: text and code as written, an image as its alt text, a soft
    line break as a space; emphasis, link targets and inline HTML tags dropped."""
    parts = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "image":
            parts.append(_inline_text(child.children or []))
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts).strip()


_lxml_thread = threading.local()


def _own_lxml_dictionary() -> None:
    """Give this thread its own libxml2 string dictionary before trafilatura parses in it.

    lxml gives a thread that has no dictionary yet the dictionary of the parser it first parses
    with. trafilatura (and htmldate) parse with one module-level HTMLParser, so fresh threads (the
    process function's asyncio.to_thread workers, new for every batch) came to share one
    dictionary, which libxml2 does not lock: concurrent parses, deep copies and frees corrupted
    the heap ("double free or corruption", about one local-stack start in eight). A first parse
    with a private parser makes the thread's dictionary its own; later parses with the shared
    parser use it.
    """
    if not getattr(_lxml_thread, "ready", False):
        import lxml.html

        lxml.html.fromstring("<p>.</p>", parser=lxml.html.HTMLParser())
        _lxml_thread.ready = True


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class DocumentExtractor(Extractor):
    """Every document kind but images and recordings: HTML, PDF (page by page; pages without a
    text layer are named for OCR), Markdown (by heading), plain text, and the office and e-book
    formats (adapters/office.py)."""

    def __init__(self, *, ocr_min_page_chars: int = 20):
        self.ocr_min_page_chars = ocr_min_page_chars

    def extract(self, body: bytes, content_type: str, url: str) -> Extracted:
        media = content_type.split(";", 1)[0].strip()
        if media == "application/pdf":
            extracted = self._pdf(body)
        elif media in CONTAINER_KINDS or media == RTF:
            extracted = self._office(body, media)
        elif media == "text/html":
            extracted = self._html(body, url)
        elif media == "text/markdown":
            extracted = markdown_text(decode_text(body, declared_charset(content_type)))
        else:
            extracted = Extracted(title=None, text=_tidy(decode_text(body, declared_charset(content_type))))
        if not extracted.text.strip() and not extracted.unread_pages:
            raise ExtractionFailed(f"no text could be extracted from this {content_type} document")
        return extracted

    @staticmethod
    def _office(body: bytes, media: str) -> Extracted:
        """An office document or e-book, its type checked against the whole body's structure."""
        from allthethings.adapters.office import container_type, extract_office

        proved = media
        if media != RTF:
            proved = container_type(body)
            if proved is None:
                raise ExtractionFailed("the file is a ZIP archive but not a DOCX, PPTX, XLSX, ODT, ODP, ODS or "
                                       "EPUB document")
        extracted = extract_office(body, proved)
        if proved != media or media == OOXML:
            return dataclasses.replace(extracted, content_type=proved)
        return extracted

    @staticmethod
    def _html(body: bytes, url: str) -> Extracted:
        import trafilatura

        _own_lxml_dictionary()
        doc = trafilatura.bare_extraction(body, url=url, with_metadata=True, include_comments=False,
                                          include_tables=True, favor_precision=True)
        if doc is None or not (doc.text or "").strip():
            # Pages too short or odd for the main-text heuristics: fall back to all visible text.
            doc = trafilatura.bare_extraction(body, url=url, with_metadata=True, include_comments=False,
                                              no_fallback=False, favor_recall=True)
        if doc is None:
            return Extracted(title=None, text="")
        return Extracted(title=doc.title, text=_tidy(doc.text or ""))

    def _pdf(self, body: bytes) -> Extracted:
        """Each page a section of its own (`page`, from 1); a page with less text than
        `ocr_min_page_chars` is a scan, named in `unread_pages`."""
        from pypdf import PdfReader

        try:
            reader = PdfReader(io.BytesIO(body))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ExtractionFailed("the PDF is encrypted (password-protected)")
            texts = [_tidy(join_word_lines(page.extract_text() or "")) for page in reader.pages]
            title = (reader.metadata.title if reader.metadata else None) or None
        except ExtractionFailed:
            raise
        except Exception as exc:  # a hostile or broken file can break the parser anywhere  # noqa: BLE001
            raise ExtractionFailed(f"the PDF could not be read ({type(exc).__name__})") from None
        unread = tuple(n for n, text in enumerate(texts, 1) if len(text.strip()) < self.ocr_min_page_chars)
        sections = [Section(text, Location(page=n)) for n, text in enumerate(texts, 1) if n not in unread]
        return Extracted.of_sections(title, sections, unread_pages=unread)

