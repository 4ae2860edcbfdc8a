"""Turning staged bytes into text: trafilatura for HTML main text, pypdf for PDF, decoding for text."""

from __future__ import annotations

import io
import re

from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted, Extractor


def decode_text(body: bytes) -> str:
    if body.startswith(b"\xef\xbb\xbf"):
        return body[3:].decode("utf-8", errors="replace")
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
        return str(best) if best is not None else body.decode("utf-8", errors="replace")


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class DocumentExtractor(Extractor):
    def extract(self, body: bytes, content_type: str, url: str) -> Extracted:
        if content_type == "application/pdf":
            extracted = self._pdf(body)
        elif content_type == "text/html":
            extracted = self._html(body, url)
        else:
            extracted = Extracted(title=None, text=_tidy(decode_text(body)))
        if not extracted.text.strip():
            raise ExtractionFailed(f"no text could be extracted from this {content_type} document")
        return extracted

    @staticmethod
    def _html(body: bytes, url: str) -> Extracted:
        import trafilatura

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
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(body))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ExtractionFailed("the PDF is encrypted")
            pages = [page.extract_text() or "" for page in reader.pages]
            title = (reader.metadata.title if reader.metadata else None) or None
        except ExtractionFailed:
            raise
        except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
            raise ExtractionFailed(f"the PDF could not be read ({type(exc).__name__})") from None
        return Extracted(title=title, text=_tidy("\n\n".join(pages)))
