"""Turning staged bytes into text: trafilatura for HTML main text, pypdf for PDF, decoding for text."""

from __future__ import annotations

import io
import re
import threading

from allthethings.domain.content import declared_charset
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted, Extractor

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
    def extract(self, body: bytes, content_type: str, url: str) -> Extracted:
        media = content_type.split(";", 1)[0].strip()
        if media == "application/pdf":
            extracted = self._pdf(body)
        elif media == "text/html":
            extracted = self._html(body, url)
        else:
            extracted = Extracted(title=None, text=_tidy(decode_text(body, declared_charset(content_type))))
        if not extracted.text.strip():
            raise ExtractionFailed(f"no text could be extracted from this {content_type} document")
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

    @staticmethod
    def _pdf(body: bytes) -> Extracted:
        from pypdf import PdfReader

        try:
            reader = PdfReader(io.BytesIO(body))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ExtractionFailed("the PDF is encrypted")
            pages = [page.extract_text() or "" for page in reader.pages]
            title = (reader.metadata.title if reader.metadata else None) or None
        except ExtractionFailed:
            raise
        except Exception as exc:  # a hostile or broken file can break the parser anywhere  # noqa: BLE001
            raise ExtractionFailed(f"the PDF could not be read ({type(exc).__name__})") from None
        return Extracted(title=title, text=_tidy("\n\n".join(pages)))
