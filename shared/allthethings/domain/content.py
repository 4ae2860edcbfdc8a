"""Deciding what a fetched body is, from its bytes, its declared type and its URL's extension.

The declared Content-Type alone is never trusted: servers lie and mislabel. The
bytes decide between binary families (PDF, images, audio, video, archives) and
text; the header and the extension then refine text into HTML, Markdown or plain.
"""

from __future__ import annotations

import dataclasses
import posixpath
from urllib.parse import urlsplit

from allthethings.domain.assets import Kind
from allthethings.domain.errors import UnsupportedContentType

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a Compound File: legacy Office, or encrypted OOXML
OLE_TYPE = "application/x-ole-storage"

# (offset, magic, mime). Order matters where one magic prefixes another.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"{\\rtf", "application/rtf"),
    (0, OLE_MAGIC, OLE_TYPE),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
)

# Audio and video we transcribe (Whisper decodes all of these; video through its audio track).
AUDIO_TYPES = {"audio/flac", "audio/mpeg", "audio/ogg", "audio/wav", "audio/mp4", "audio/webm"}
VIDEO_TYPES = {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska"}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff", "image/bmp", "image/heic",
               "image/heif"}
# HEIF brands (ISO/IEC 23008-12) in an `ftyp` box: still images, not video.
_HEIF_BRANDS = {b"heic": "image/heic", b"heix": "image/heic", b"heim": "image/heic", b"heis": "image/heic",
                b"mif1": "image/heif", b"msf1": "image/heif", b"avif": "image/avif"}

_BMP_HEADERS = {12, 40, 52, 56, 64, 108, 124}

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
ODP = "application/vnd.oasis.opendocument.presentation"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
EPUB = "application/epub+zip"
RTF = "application/rtf"
# An Office Open XML package whose part names did not fit in the first bytes: which of the
# three it is is read from the whole body when it is processed.
OOXML = "application/vnd.openxmlformats-officedocument"
CONTAINER_KINDS = {DOCX: Kind.DOCUMENT, ODT: Kind.DOCUMENT, RTF: Kind.DOCUMENT, OOXML: Kind.DOCUMENT,
                   PPTX: Kind.PRESENTATION, ODP: Kind.PRESENTATION,
                   XLSX: Kind.SPREADSHEET, ODS: Kind.SPREADSHEET, EPUB: Kind.EBOOK}
_CONTAINER_EXT = {".docx": DOCX, ".pptx": PPTX, ".xlsx": XLSX, ".odt": ODT, ".odp": ODP, ".ods": ODS,
                  ".epub": EPUB}
_OOXML_PARTS = ((b"word/", DOCX), (b"ppt/", PPTX), (b"xl/", XLSX))
_LEGACY_EXT = {".doc": "Word 97-2003 (.doc)", ".xls": "Excel 97-2003 (.xls)", ".ppt": "PowerPoint 97-2003 (.ppt)",
               ".msg": "an Outlook message (.msg)"}
ACCEPTED = ("text, Markdown, reStructuredText, CSV, JSON, HTML, PDF, images (PNG, JPEG, WebP, GIF, TIFF, BMP, "
            "HEIC), Word (DOCX), PowerPoint (PPTX), Excel (XLSX), OpenDocument (ODT, ODP, ODS), EPUB, RTF, "
            "audio (FLAC, MP3, Ogg, WAV, M4A) and video (MP4, MOV, WebM, MKV)")

_TEXT_DECLARED = {"text/plain", "text/markdown", "text/x-markdown", "text/csv", "application/json",
                  "application/xml", "text/xml", "text/x-rst", "text/prs.fallenstein.rst"}
_TEXT_EXT = {".csv": "text/csv", ".json": "application/json", ".rst": "text/x-rst", ".txt": "text/plain"}
_HTML_DECLARED = {"text/html", "application/xhtml+xml"}
_MARKDOWN_EXT = {".md", ".markdown", ".mdown"}
_HTML_EXT = {".html", ".htm", ".xhtml"}
_HTML_OPENERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<h1",
                 b"<div", b"<font", b"<table", b"<a ", b"<style", b"<title", b"<b ", b"<br", b"<p ",
                 b"<p>", b"<!--")
# Bytes that never occur in text (WHATWG MIME Sniffing, "binary data byte").
_BINARY_BYTES = frozenset(set(range(0x00, 0x09)) | {0x0B} | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20)))

SNIFF_BYTES = 1445  # as much as the WHATWG algorithm reads


@dataclasses.dataclass(frozen=True)
class Decision:
    content_type: str
    kind: Kind


def declared_charset(declared: str | None) -> str | None:
    for param in (declared or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"').lower()
    return None


def _media_type(declared: str | None) -> str:
    return (declared or "").split(";", 1)[0].strip().lower()


def sniff(head: bytes) -> str | None:
    """The MIME type the first bytes show, `text/html`, `text/plain`, or None for unknown binary."""
    for offset, magic, mime in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return mime
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0" and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "image/bmp"  # "BM" alone starts words too: the reserved zeros and DIB header size decide
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[head[8:12]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM names its DocType, Matroska says matroska
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"
    body = head
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if body.startswith(bom):
            return "text/plain"
    if any(b in _BINARY_BYTES for b in body):
        return None
    lead = body.lstrip(b" \t\r\n\x0c").lower()
    if lead.startswith(b"<?xml"):
        return "text/html" if b"<html" in lead[:SNIFF_BYTES] else "text/xml"
    if lead.startswith(_HTML_OPENERS):
        return "text/html"
    return "text/plain"


def decide(head: bytes, declared: str | None, url: str) -> Decision:
    """Decide content type and kind; raise UnsupportedContentType for what we cannot index.

    Plain text keeps a declared charset (`text/plain; charset=iso-8859-1`): nothing else in the
    bytes says how to decode them."""
    decision = _decide(head, declared, url)
    charset = declared_charset(declared)
    if decision.kind is Kind.TEXT and charset and charset not in ("utf-8", "us-ascii"):
        return Decision(f"{decision.content_type}; charset={charset}", decision.kind)
    return decision


def _decide(head: bytes, declared: str | None, url: str) -> Decision:
    sniffed = sniff(head[:SNIFF_BYTES])
    media = _media_type(declared)
    ext = posixpath.splitext(urlsplit(url).path)[1].lower()

    if sniffed == "application/pdf":
        return Decision("application/pdf", Kind.PDF)
    if sniffed in IMAGE_TYPES:
        return Decision(sniffed, Kind.IMAGE)
    if sniffed == "application/rtf":
        return Decision(RTF, Kind.DOCUMENT)
    if sniffed == "application/zip":
        container = zip_container(head, media, ext)
        if container:
            return Decision(container, CONTAINER_KINDS[container])
    if sniffed == OLE_TYPE:
        legacy = _LEGACY_EXT.get(ext, "a legacy Office file (.doc, .xls, .ppt)")
        raise UnsupportedContentType(
            f"the URL returned an OLE compound file: {legacy} or a password-protected Office document, "
            f"which cannot be read; save it as DOCX, XLSX or PPTX without a password. Supported are {ACCEPTED}")
    if sniffed in AUDIO_TYPES:
        return Decision(sniffed, Kind.AUDIO)
    if sniffed in VIDEO_TYPES:
        # A video container the server calls audio (an .m4a-style upload) is still transcribed.
        return Decision(sniffed, Kind.AUDIO if media.startswith("audio/") else Kind.VIDEO)
    if sniffed is None or not (sniffed.startswith("text/")):
        shown = sniffed or "unrecognised binary data"
        raise UnsupportedContentType(
            f"the URL returned {shown} (declared {media or 'nothing'}); supported are {ACCEPTED}")
    if sniffed == "text/html" and media not in ("text/plain", "text/markdown", "text/x-markdown"):
        return Decision("text/html", Kind.HTML)
    if media in _HTML_DECLARED or (not media and ext in _HTML_EXT):
        return Decision("text/html", Kind.HTML)
    if media in ("text/markdown", "text/x-markdown") or ext in _MARKDOWN_EXT:
        return Decision("text/markdown", Kind.TEXT)
    if media == "text/prs.fallenstein.rst":
        return Decision("text/x-rst", Kind.TEXT)
    if (media in ("", "text/plain", "application/octet-stream")) and ext in _TEXT_EXT:
        return Decision(_TEXT_EXT[ext], Kind.TEXT)
    if media in _TEXT_DECLARED or media.startswith("text/"):
        return Decision(media if media != "text/x-markdown" else "text/markdown", Kind.TEXT)
    return Decision("text/plain", Kind.TEXT)


def zip_container(head: bytes, media: str, ext: str) -> str | None:
    """Which document format a ZIP body is, from its first entry (an OpenDocument or EPUB file
    begins with an uncompressed `mimetype` entry naming its type; an Office Open XML package
    holds `[Content_Types].xml`), then the part names in the first bytes, the declared type and
    the extension. None for any other ZIP. Processing checks the whole body's structure again."""
    name_length = int.from_bytes(head[26:28], "little")
    extra_length = int.from_bytes(head[28:30], "little")
    first = head[30:30 + name_length]
    if first == b"mimetype":
        start = 30 + name_length + extra_length
        # Stored, so its compressed size is its size; a writer that left the sizes to a data
        # descriptor (zero here) is read up to the next entry's header.
        size = int.from_bytes(head[18:22], "little")
        raw = head[start:start + min(size, 80)] if size else head[start:start + 80].split(b"PK\x03\x04", 1)[0]
        declared = raw.decode("ascii", "replace").strip()
        return declared if declared in CONTAINER_KINDS else None
    if first != b"[Content_Types].xml" and b"[Content_Types].xml" not in head:
        # Its telling entries lie past the first bytes: the declared type or the extension may
        # name the format (processing then checks the whole body, and fails it if it is not).
        return media if media in CONTAINER_KINDS and media not in (OOXML, RTF) else _CONTAINER_EXT.get(ext)
    for part, mime in _OOXML_PARTS:
        if part in head:
            return mime
    if media in (DOCX, PPTX, XLSX):
        return media
    return _CONTAINER_EXT.get(ext) if ext in (".docx", ".pptx", ".xlsx") else OOXML


@dataclasses.dataclass(frozen=True)
class SizeLimits:
    """The largest body accepted per kind, in bytes. A fetch stops as soon as the first bytes say
    what the body is and it is over that kind's limit (or over every kind's limit before that)."""

    text: int = 10 * 1024 * 1024
    html: int = 10 * 1024 * 1024
    pdf: int = 50 * 1024 * 1024
    audio: int = 1024 * 1024 * 1024
    video: int = 4 * 1024 * 1024 * 1024
    image: int = 50 * 1024 * 1024
    document: int = 50 * 1024 * 1024
    presentation: int = 200 * 1024 * 1024
    spreadsheet: int = 50 * 1024 * 1024
    ebook: int = 50 * 1024 * 1024

    @property
    def ceiling(self) -> int:
        return max(self.of(kind) for kind in Kind)

    def of(self, kind: Kind) -> int:
        return getattr(self, kind.value)

    def for_body(self, head: bytes, declared: str | None, url: str) -> int:
        """The limit for the body these first bytes begin; UnsupportedContentType if none applies."""
        return self.of(decide(head, declared, url).kind)
