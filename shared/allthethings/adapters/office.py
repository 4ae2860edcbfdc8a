"""Text from office documents and e-books, in sections that say where each part is: python-docx for
DOCX, python-pptx for PPTX, openpyxl for XLSX, odfpy for ODT, ODP and ODS, ebooklib for EPUB,
striprtf for RTF.

Every one of these but RTF is a ZIP, and a ZIP is where a small body becomes gigabytes: the
central directory is checked (entries, declared sizes, ratios) and every entry is proven to
inflate to no more than it declares before any library sees the bytes, so the limits hold
for the libraries too. Whatever goes wrong surfaces as ExtractionFailed with a reason a user can
read, never another exception type.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import io
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import unquote

from allthethings.domain.assets import Location
from allthethings.domain.content import DOCX, EPUB, ODP, ODS, ODT, OLE_MAGIC, PPTX, RTF, XLSX
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Extracted, Section

__all__ = ["DOCX", "EPUB", "ODP", "ODS", "ODT", "PPTX", "RTF", "XLSX", "OfficeLimits", "container_type",
           "extract_office"]


MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class OfficeLimits:
    """How much one document may cost. Past any of them extraction fails, except that a sheet
    ends after `max_empty_rows` consecutive empty rows (see `_xlsx`)."""

    max_entries: int = 10_000  # files inside the ZIP
    max_uncompressed_bytes: int = 256 * MiB  # all entries together, as declared and as proven
    max_ratio: int = 100  # an entry inflating more than this many times...
    ratio_min_bytes: int = 16 * MiB  # ...and to more than this is a bomb, not a document
    # One XML or XHTML part: python-docx, python-pptx, odfpy and ebooklib build each part whole in
    # memory (odfpy in pure Python objects, many times the part's size). XLSX sheets are streamed.
    max_markup_bytes: int = 64 * MiB
    max_cells: int = 2_000_000  # spreadsheet cells visited, empty ones included
    max_empty_rows: int = 1_000  # consecutive empty rows that end an XLSX sheet
    max_chars: int = 20_000_000  # characters of text in the whole document


_NAMES = {DOCX: "DOCX", PPTX: "PPTX", XLSX: "XLSX", ODT: "ODT", ODP: "ODP", ODS: "ODS", EPUB: "EPUB", RTF: "RTF"}

# What container_type reads: the entry list and two small entries, never more.
_PROBE_MAX_ENTRIES = 100_000
_PROBE_MIMETYPE_BYTES = 256
_PROBE_CONTENT_TYPES_BYTES = 1 * MiB

_ODF_MIMETYPES = {ODT: ODT, ODP: ODP, ODS: ODS, EPUB: EPUB}
# The content type of each package's main part; python-pptx and openpyxl also read the
# macro-enabled variants, python-docx refuses anything but a plain document.
_OOXML_MAIN = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": DOCX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": PPTX,
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": PPTX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": XLSX,
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": XLSX,
}
_OOXML_PARTS = {"word/document.xml": DOCX, "ppt/presentation.xml": PPTX, "xl/workbook.xml": XLSX}


def container_type(body: bytes) -> str | None:
    """Which of DOCX, PPTX, XLSX, ODT, ODP, ODS or EPUB this whole ZIP body is, from what is inside
    it: an OpenDocument or EPUB by its `mimetype` entry, an Office Open XML package by the main
    part named in its `[Content_Types].xml` (else by the main part's usual path). None for any
    other ZIP, a ZIP with more than 100,000 entries, and anything that is not a ZIP. Reads at most
    1 MiB of inflated data."""
    if not body.startswith(b"PK\x03\x04"):
        return None
    count = _declared_entries(body)
    if count is not None and count > _PROBE_MAX_ENTRIES:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            names = set(zf.namelist())
            if "mimetype" in names:
                declared = _read_capped(zf, "mimetype", _PROBE_MIMETYPE_BYTES)
                return _ODF_MIMETYPES.get(declared.decode("ascii").strip()) if declared is not None else None
            if "[Content_Types].xml" in names:
                raw = _read_capped(zf, "[Content_Types].xml", _PROBE_CONTENT_TYPES_BYTES)
                return _ooxml_type(raw, names) if raw is not None else None
    except Exception:  # a ZIP too broken to say what it is is none of ours  # noqa: BLE001
        return None
    return None


def _read_capped(zf: zipfile.ZipFile, name: str, cap: int) -> bytes | None:
    """The entry's bytes, or None when it inflates to more than `cap` (whatever it declares)."""
    with zf.open(name) as entry:
        data = entry.read(cap + 1)
    return None if len(data) > cap else data


def _ooxml_type(raw: bytes, names: set[str]) -> str | None:
    from lxml import etree

    root = etree.fromstring(raw, _safe_xml_parser())
    overrides = {}
    for element in root:
        if isinstance(element.tag, str) and etree.QName(element).localname == "Override":
            overrides[(element.get("PartName") or "").lstrip("/")] = (element.get("ContentType") or "").lower()
    for content_type in overrides.values():
        if content_type in _OOXML_MAIN:
            return _OOXML_MAIN[content_type]
    # A package that types its main part only through the Default for .xml: the part's usual path.
    for path, kind in _OOXML_PARTS.items():
        if path in names and path not in overrides:
            return kind
    return None


def _safe_xml_parser():
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _declared_entries(body: bytes) -> int | None:
    """How many entries the end-of-central-directory record declares, read before zipfile builds
    an object for each of them (a small body can declare millions). zipfile's own reader of that
    record is private, so a Python without it just skips this early look."""
    try:
        end = zipfile._EndRecData(io.BytesIO(body))
        return None if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])
    except Exception:  # noqa: BLE001
        return None


def extract_office(body: bytes, media: str, limits: OfficeLimits = OfficeLimits()) -> Extracted:
    """The title and sectioned text of a document of type `media` (one of this module's MIME
    constants); ExtractionFailed when it cannot be read, breaks a limit, or holds no text."""
    media = media.split(";", 1)[0].strip().lower()
    reader = _READERS.get(media)
    if reader is None:
        raise ExtractionFailed(f"{media or 'this type'} is not an office document or e-book type")
    name = _NAMES[media]
    if body.startswith(OLE_MAGIC):
        raise ExtractionFailed(_ole_reason(body))
    budget = _Budget(name, limits)
    try:
        extracted = reader(body, limits, budget)
    except ExtractionFailed:
        raise
    except MemoryError:
        raise ExtractionFailed(f"the {name} file is too large to read") from None
    except Exception as exc:  # a hostile or broken file can break a parser anywhere  # noqa: BLE001
        raise ExtractionFailed(f"the {name} file could not be read ({type(exc).__name__})") from None
    if not extracted.text.strip():
        raise ExtractionFailed(f"no text could be extracted from this {name} file")
    return extracted


def _ole_reason(body: bytes) -> str:
    # An encrypted DOCX, XLSX or PPTX is a Compound File whose directory names these streams
    # (in UTF-16); any other Compound File is a Word, Excel or PowerPoint 97-2003 file.
    if "EncryptionInfo".encode("utf-16-le") in body or "EncryptedPackage".encode("utf-16-le") in body:
        return "the document is password-protected; remove the password and submit it again"
    return ("the document is a legacy binary Office file (.doc, .xls or .ppt), which cannot be read; "
            "save it as DOCX, XLSX or PPTX")


class _Budget:
    """The characters and cells one extraction has spent, failing the moment either runs out."""

    def __init__(self, name: str, limits: OfficeLimits):
        self.name, self.limits = name, limits
        self.chars = 0
        self.cells = 0

    def text(self, text: str) -> str:
        self.chars += len(text)
        if self.chars > self.limits.max_chars:
            raise ExtractionFailed(f"the {self.name} file holds more than {self.limits.max_chars:,} characters "
                                   "of text, more than one document may")
        return text

    def visit(self, cells: int) -> None:
        self.cells += cells
        if self.cells > self.limits.max_cells:
            raise ExtractionFailed(f"the {self.name} file has more than {self.limits.max_cells:,} cells, "
                                   "more than one spreadsheet may")


def _checked_zip(body: bytes, name: str, limits: OfficeLimits, streamed: Callable[[str], bool] = lambda _: False,
                 ) -> None:
    """Fail unless the ZIP is within the limits: its entry count and declared sizes first (no
    inflating), then each entry inflated in small pieces to prove it ends where it says.

    The proof matters because zipfile trusts the central directory: a `read()` of an entry that
    declares 1 KB but holds 10 GB of deflated zeros inflates all of it before noticing. Reading
    one byte past the declared size, in 1 MiB pieces, costs at most the declared total.
    `streamed(entry_name)` says which markup parts the library streams instead of building whole.
    """
    count = _declared_entries(body)
    if count is not None and count > limits.max_entries:
        raise ExtractionFailed(f"the {name} file has {count:,} entries inside; at most {limits.max_entries:,} "
                               "are read")
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise ExtractionFailed(f"the {name} file has {len(infos):,} entries inside; at most "
                                   f"{limits.max_entries:,} are read")
        if sum(info.file_size for info in infos) > limits.max_uncompressed_bytes:
            raise ExtractionFailed(f"the {name} file would inflate to more than "
                                   f"{_size(limits.max_uncompressed_bytes)} (a zip bomb?)")
        for info in infos:
            if info.flag_bits & 0x1:
                raise ExtractionFailed(f"the {name} file is password-protected; remove the password and submit "
                                       "it again")
            if info.file_size > limits.ratio_min_bytes \
                    and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise ExtractionFailed(f"an entry of the {name} file inflates more than {limits.max_ratio} times "
                                       "(a zip bomb?)")
            if info.file_size > limits.max_markup_bytes and _is_markup(info.filename) \
                    and not streamed(info.filename):
                raise ExtractionFailed(f"the {name} file has a part of {_size(info.file_size)}; parts over "
                                       f"{_size(limits.max_markup_bytes)} are not read")
        for info in infos:
            if _inflates_past(zf, info):
                raise ExtractionFailed(f"an entry of the {name} file inflates past its declared size (a zip bomb?)")


def _size(count: int) -> str:
    return f"{count / MiB:,.0f} MiB" if count >= MiB else f"{count:,} bytes"


_MARKUP = re.compile(r"\.(xml|rels|xhtml|html?|opf|ncx)$", re.IGNORECASE)


def _is_markup(filename: str) -> bool:
    return bool(_MARKUP.search(filename))


def _inflates_past(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    # zipfile stops at the size its ZipInfo declares; one byte more shows whether the data goes on.
    # Without an expected CRC (zipfile then skips its check) that byte is seen, not a CRC error:
    # a broken entry of honest size still fails later, in the library, as a BadZipFile.
    probe = copy.copy(info)
    probe.file_size = info.file_size + 1
    probe.CRC = None
    seen = 0
    with zf.open(probe) as entry:
        while piece := entry.read(MiB):
            seen += len(piece)
            if seen > info.file_size:
                return True
    return False


# --- text helpers ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _line(text: str | None) -> str:
    """One paragraph's text: control characters gone (a vertical tab is PowerPoint's line break),
    runs of spaces and tabs one space, lines stripped."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\v", "\n")
    text = _CONTROL.sub(" ", text)
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


class _Outline:
    """Sections that follow a document's headings: each heading starts a section located at its
    heading path; text before the first heading has no location."""

    def __init__(self, budget: _Budget):
        self.budget = budget
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.blocks: list[str] = []
        self.first_heading: str | None = None

    def heading(self, level: int, text: str) -> None:
        text = " ".join(_line(text).split())
        if not text:
            return
        self._flush()
        self.first_heading = self.first_heading or text
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, text))
        self.blocks.append(self.budget.text(text))

    def block(self, text: str) -> None:
        text = _line(text)
        if text:
            self.blocks.append(self.budget.text(text))

    def done(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        if self.blocks:
            location = Location(section=" › ".join(t for _, t in self.path)) if self.path else None
            self.sections.append(Section("\n\n".join(self.blocks), location))
        self.blocks = []


class _SheetText:
    """A sheet's rows as lines, cells joined with " | ". When the first row is all text and the
    second holds a number or a date, the first is a header, and later rows read "Header: value"
    so that a line found alone still says what its numbers are."""

    def __init__(self, budget: _Budget):
        self.budget = budget
        self.lines: list[str] = []
        self.first: list[tuple[int, str, bool]] | None = None
        self.header: dict[int, str] = {}
        self.decided = False

    def row(self, cells: list[tuple[int, str, bool]]) -> None:
        """A row's non-empty cells as (column, text, is_text)."""
        if not cells:
            return
        if not self.lines:
            self.first = cells
        elif not self.decided:
            self.decided = True
            first = self.first or []
            if len(first) >= 2 and all(is_text for _, _, is_text in first) \
                    and any(not is_text for _, _, is_text in cells):
                self.header = {column: text for column, text, _ in first}
        parts = (f"{self.header[column]}: {text}" if column in self.header else text for column, text, _ in cells)
        self.lines.append(self.budget.text(" | ".join(parts)))

    def text(self) -> str:
        return "\n".join(self.lines)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(sep=" ")
    return " ".join(_line(str(value)).split())


# --- DOCX -----------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"heading ([1-9])", re.IGNORECASE)


def _docx(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """Paragraphs and tables in body order, sections by heading ("Title" is level 0 and "Heading
    1".."Heading 9" levels 1 to 9, also through styles based on them). Title: the core
    properties' title, else the first heading."""
    import docx
    from docx.table import Table

    _checked_zip(body, "DOCX", limits)
    document = docx.Document(io.BytesIO(body))
    outline = _Outline(budget)
    levels: dict[str | None, int | None] = {}
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            outline.block(_docx_table(block))
            continue
        # Paragraph.style looks the style up among all styles every time (seconds for a few
        # thousand paragraphs); the style id in the paragraph's XML is free, so levels are kept by it.
        style_id = block._p.style
        if style_id not in levels:
            levels[style_id] = _docx_level(block.style)
        level = levels[style_id]
        if level is None:
            outline.block(block.text)
        else:
            outline.heading(level, block.text)
    title = _clean_title(document.core_properties.title) or outline.first_heading
    return Extracted.of_sections(title, outline.done())


def _docx_level(style) -> int | None:
    """0 for "Title", 1 to 9 for "Heading 1".."Heading 9", None for any other paragraph style."""
    # A custom heading style is usually based on a built-in one; a few steps up is enough.
    for _ in range(4):
        if style is None:
            return None
        name = (style.name or "").strip()
        match = _HEADING_STYLE.fullmatch(name)
        if match:
            return int(match.group(1))
        if name.lower() == "title":
            return 0
        style = style.base_style
    return None


def _docx_table(table) -> str:
    from docx.table import Table

    rows, seen = [], set()
    for row in table.rows:
        cells = []
        for cell in row.cells:
            # A merged cell comes back once per grid column (and row) it spans. The set holds the
            # XML elements themselves: an id() of a freed lxml proxy is reused by the next one.
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            parts = [_docx_table(inner) if isinstance(inner, Table) else inner.text
                     for inner in cell.iter_inner_content()]
            text = " ".join(" ".join(_line(p).split()) for p in parts if p and p.strip())
            if text:
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _clean_title(title: str | None) -> str | None:
    title = " ".join((title or "").split())
    return title or None


# --- PPTX -----------------------------------------------------------------------------------

def _pptx(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """One section per slide at Location(slide=n, section=the slide's title): the text of every
    shape (text boxes, placeholders, tables, shapes inside groups) in the slide's order, then the
    speaker notes. Title: the core properties' title, else the first slide's title."""
    import pptx

    _checked_zip(body, "PPTX", limits)
    presentation = pptx.Presentation(io.BytesIO(body))
    sections, first_title = [], None
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        slide_title = " ".join(_line(title_shape.text_frame.text).split()) if title_shape is not None \
            and title_shape.has_text_frame else ""
        first_title = first_title or (slide_title if number == 1 else None)
        blocks = [_line(text) for shape in slide.shapes for text in _pptx_texts(shape)]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            blocks.append(_line(slide.notes_slide.notes_text_frame.text))
        text = budget.text("\n\n".join(b for b in blocks if b))
        sections.append(Section(text, Location(slide=number, section=slide_title or None)))
    title = _clean_title(presentation.core_properties.title) or first_title or None
    return Extracted.of_sections(title, sections)


def _pptx_texts(shape) -> Iterator[str]:
    from pptx.shapes.group import GroupShape

    # isinstance, not shape_type: shape_type raises on shapes python-pptx cannot name.
    if isinstance(shape, GroupShape):
        for inner in shape.shapes:
            yield from _pptx_texts(inner)
    elif shape.has_text_frame:
        yield shape.text_frame.text
    elif getattr(shape, "has_table", False):
        rows = (" | ".join(t for t in (" ".join(_line(c.text).split()) for c in row.cells) if t)
                for row in shape.table.rows)
        yield "\n".join(r for r in rows if r)


# --- XLSX -----------------------------------------------------------------------------------

def _xlsx(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """One section per worksheet at Location(sheet=name), its non-empty rows as lines (cached
    formula values, not formulas). Sheets are streamed, never loaded whole, and the dimensions a
    sheet declares are ignored (they can claim a million rows, or be wrong).

    Limits: more than `max_cells` cells visited (empty ones and the gaps between rows included)
    fails; after `max_empty_rows` consecutive empty rows the sheet ends, so text further down
    is not read (a sheet formatted down to row 1,048,576 declares every one of those rows).
    Title: the workbook properties' title."""
    import openpyxl

    _checked_zip(body, "XLSX", limits, streamed=lambda entry: entry.startswith("xl/worksheets/"))
    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    try:
        sections = []
        for sheet in workbook.worksheets:
            sheet.reset_dimensions()
            text = _SheetText(budget)
            empty = 0
            for values in sheet.iter_rows(values_only=True):
                budget.visit(max(len(values), 1))
                cells = [(column, t, isinstance(v, str))
                         for column, v in enumerate(values, start=1) if (t := _cell_text(v))]
                if cells:
                    empty = 0
                    text.row(cells)
                else:
                    empty += 1
                    if empty >= limits.max_empty_rows:
                        break
            sections.append(Section(text.text(), Location(sheet=sheet.title)))
        title = _clean_title(workbook.properties.title)
    finally:
        workbook.close()
    return Extracted.of_sections(title, sections)


# --- OpenDocument ---------------------------------------------------------------------------

# The OpenDocument namespaces (the same strings as odf.namespaces, which is imported only when used).
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_PRESENTATION = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"


def _odf_load(body: bytes, name: str, limits: OfficeLimits):
    from odf.opendocument import load

    _checked_zip(body, name, limits)
    return load(io.BytesIO(body))


def _odf_text(element) -> str:
    """The words of an ODF element, like odfpy's teletype.extractText but safe: `<text:s
    text:c="999999999"/>` is one space here, not a billion, and comments are left out."""
    parts: list[str] = []
    stack = [iter(element.childNodes)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        if child.nodeType == child.TEXT_NODE:
            parts.append(child.data)
        elif child.nodeType == child.ELEMENT_NODE:
            qname = child.qname
            if qname == (_TEXT, "line-break") or (qname in ((_TEXT, "p"), (_TEXT, "h")) and parts):
                parts.append("\n")
            if qname in ((_TEXT, "s"), (_TEXT, "tab")):
                parts.append(" ")
            elif qname not in ((_OFFICE, "annotation"), (_OFFICE, "annotation-end")):
                stack.append(iter(child.childNodes))
    return "".join(parts)


def _odf_title(document) -> str | None:
    from odf import dc

    titles = document.meta.getElementsByType(dc.Title) if document.meta is not None else []
    return _clean_title(_odf_text(titles[0])) if titles else None


def _odt(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """Paragraphs, lists and tables in order, sections by `text:h` outline level. Tracked
    deletions and generated tables of contents are left out. Title: the metadata's dc:title, else
    the first heading."""
    document = _odf_load(body, "ODT", limits)
    if getattr(document, "text", None) is None:  # odfpy sets only the body its file has
        raise ExtractionFailed("the ODT file has no text body")
    outline = _Outline(budget)
    skipped = {(_TEXT, "tracked-changes"), (_TEXT, "table-of-content"), (_TEXT, "sequence-decls")}
    stack = [iter(document.text.childNodes)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        if node.nodeType != node.ELEMENT_NODE or node.qname in skipped:
            continue
        if node.qname == (_TEXT, "h"):
            level = _odf_int(node.attributes.get((_TEXT, "outline-level")), default=1)
            outline.heading(min(max(level, 1), 10), _odf_text(node))
        elif node.qname == (_TEXT, "p"):
            outline.block(_odf_text(node))
        elif node.qname == (_TABLE, "table"):
            outline.block(_ods_table_text(node, budget))
        else:
            stack.append(iter(node.childNodes))
    return Extracted.of_sections(_odf_title(document) or outline.first_heading, outline.done())


_AUTO_PAGE_NAME = re.compile(r"(page|slide)\s*\d+", re.IGNORECASE)


def _odp(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """One section per draw:page at Location(slide=n, section=the slide's title frame, else the
    page's name unless it is an automatic "pageN"), the text of its frames and its notes.
    Title: the metadata's dc:title, else the first slide's title."""
    from odf.draw import Page

    document = _odf_load(body, "ODP", limits)
    if getattr(document, "presentation", None) is None:
        raise ExtractionFailed("the ODP file has no slides")
    sections, first_title = [], None
    for number, page in enumerate(document.presentation.getElementsByType(Page), start=1):
        blocks, slide_title = [], None
        stack = [iter(page.childNodes)]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                continue
            if node.nodeType != node.ELEMENT_NODE:
                continue
            if node.qname in ((_TEXT, "p"), (_TEXT, "h")):
                blocks.append(_line(_odf_text(node)))
                continue
            if node.qname == (_DRAW, "frame") and slide_title is None \
                    and node.attributes.get((_PRESENTATION, "class")) == "title":
                slide_title = " ".join(_line(_odf_text(node)).split()) or None
            stack.append(iter(node.childNodes))
        name = (page.attributes.get((_DRAW, "name")) or "").strip()
        section = slide_title or (name if name and not _AUTO_PAGE_NAME.fullmatch(name) else None)
        first_title = first_title or (slide_title if number == 1 else None)
        text = budget.text("\n\n".join(b for b in blocks if b))
        sections.append(Section(text, Location(slide=number, section=section)))
    return Extracted.of_sections(_odf_title(document) or first_title, sections)


def _ods(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """One section per table:table at Location(sheet=name), its non-empty rows as lines. Repeated
    empty rows and cells (`number-rows-repeated="1000000"`) are counted, never expanded, so text
    after them is still read; repeated non-empty ones are written out, each repeat a visited cell
    against `max_cells`. Title: the metadata's dc:title."""
    from odf.table import Table

    document = _odf_load(body, "ODS", limits)
    if getattr(document, "spreadsheet", None) is None:
        raise ExtractionFailed("the ODS file has no sheets")
    sections = []
    for table in document.spreadsheet.getElementsByType(Table):
        name = table.attributes.get((_TABLE, "name")) or None
        sections.append(Section(_ods_table_text(table, budget), Location(sheet=name)))
    return Extracted.of_sections(_odf_title(document), sections)


def _ods_table_text(table, budget: _Budget) -> str:
    sheet = _SheetText(budget)
    for row in _ods_rows(table):
        budget.visit(1)
        cells: list[tuple[int, str, bool]] = []
        column = 1
        for cell in row.childNodes:
            if cell.nodeType != cell.ELEMENT_NODE or cell.qname not in ((_TABLE, "table-cell"),
                                                                        (_TABLE, "covered-table-cell")):
                continue
            budget.visit(1)
            repeat = _odf_int(cell.attributes.get((_TABLE, "number-columns-repeated")), default=1)
            text = " ".join(_line(_odf_text(cell)).split())
            if text:
                budget.visit(repeat - 1)
                is_text = cell.attributes.get((_OFFICE, "value-type"), "string") == "string"
                cells.extend((column + i, text, is_text) for i in range(repeat))
            column += repeat
        if cells:
            repeat = _odf_int(row.attributes.get((_TABLE, "number-rows-repeated")), default=1)
            budget.visit(len(cells) * (repeat - 1))
            for _ in range(repeat):
                sheet.row(cells)
    return sheet.text()


def _ods_rows(table) -> Iterator:
    """The table's rows in order, through header-rows and row groups, not into cells."""
    stack = [iter(table.childNodes)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif node.nodeType == node.ELEMENT_NODE:
            if node.qname == (_TABLE, "table-row"):
                yield node
            elif node.qname in ((_TABLE, "table-header-rows"), (_TABLE, "table-rows"),
                                (_TABLE, "table-row-group")):
                stack.append(iter(node.childNodes))


def _odf_int(value: str | None, default: int) -> int:
    try:
        return max(int(value), 1) if value is not None else default
    except ValueError:
        return default


# --- EPUB -----------------------------------------------------------------------------------

_XHTML_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "br", "blockquote", "section",
                 "article", "pre", "dt", "dd", "table", "ul", "ol", "hr", "figcaption", "header", "footer",
                 "aside", "nav"}
_XHTML_SKIPPED = {"script", "style", "head"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def _epub(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """One section per content document in spine order, at Location(section=its chapter title
    in the navigation document, else its first heading). Title: the DC metadata's title.
    DRM-encrypted content documents fail with that reason rather than as unreadable markup."""
    import ebooklib
    from ebooklib import epub

    _checked_zip(body, "EPUB", limits)
    _refuse_drm(body)
    book = epub.read_epub(io.BytesIO(body), {"ignore_ncx": True})
    chapters = _toc_titles(book.toc)
    sections = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
            continue
        parsed = _xhtml(item.get_content())
        if parsed is None:
            continue
        text, heading = parsed
        path = posixpath.normpath(unquote(item.file_name))
        chapter = chapters.get(path) or chapters.get(posixpath.basename(path)) or heading
        sections.append(Section(budget.text(text), Location(section=chapter) if chapter else None))
    if not any(s.text.strip() for s in sections):
        raise ExtractionFailed("the EPUB has no content documents with text")
    titles = book.get_metadata("DC", "title")
    return Extracted.of_sections(_clean_title(titles[0][0]) if titles else None, sections)


def _refuse_drm(body: bytes) -> None:
    """An EPUB whose content documents are encrypted (DRM) says so in META-INF/encryption.xml;
    fonts alone are often obfuscated there too, which does not matter for text."""
    from lxml import etree

    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        if "META-INF/encryption.xml" not in zf.namelist():
            return
        raw = zf.read("META-INF/encryption.xml")  # proven by _checked_zip to be what it declares
    for element in etree.fromstring(raw, _safe_xml_parser()).iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == "CipherReference" \
                and re.search(r"\.(x?html?)$", element.get("URI") or "", re.IGNORECASE):
            raise ExtractionFailed("the EPUB is DRM-protected: its chapters are encrypted")


def _toc_titles(toc: Iterable) -> dict[str, str]:
    """Each content document's first title in the navigation, by its path (and by its bare file
    name, for navigation written relative to another folder)."""
    from ebooklib import epub

    titles: dict[str, str] = {}
    stack = [iter(toc)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if isinstance(entry, tuple):
            section, children = entry[0], entry[1]
            stack.append(iter(children))
            entry = section
        if isinstance(entry, epub.Link | epub.Section) and entry.href and entry.title:
            path = posixpath.normpath(unquote(entry.href.split("#", 1)[0]))
            title = " ".join(entry.title.split())
            if title:
                titles.setdefault(path, title)
                titles.setdefault(posixpath.basename(path), title)
    return titles


def _xhtml(content: bytes) -> tuple[str, str | None] | None:
    """A content document's text (block elements on lines of their own, no scripts or styles)
    and its first heading; None when it cannot be parsed at all. XHTML parses as XML; markup
    that is not well-formed (or uses HTML entities without a DTD) falls back to the HTML parser."""
    from lxml import etree, html

    if not content or not content.strip():
        return None
    try:
        root = etree.fromstring(content, _safe_xml_parser())
    except etree.XMLSyntaxError:
        try:
            root = html.document_fromstring(content)
        except (etree.LxmlError, ValueError):
            return None
    body = next((e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "body"), root)
    parts: list[str] = []
    heading = None
    # (element, entering) pairs: an element's text on the way in, its line break and tail on the way out.
    stack = [(body, True)]
    while stack:
        element, entering = stack.pop()
        name = etree.QName(element).localname.lower() if isinstance(element.tag, str) else ""
        if entering:
            if name and name not in _XHTML_SKIPPED:
                if heading is None and name in _HEADINGS:
                    heading = " ".join("".join(element.itertext()).split()) or None
                parts.append(_spaced(element.text))
                stack.append((element, False))
                stack.extend((child, True) for child in reversed(element))
                continue
            stack.append((element, False))  # skipped, comment or entity: only its tail counts
        else:
            if name in _XHTML_BLOCKS:
                parts.append("\n")
            if element is not body:
                parts.append(_spaced(element.tail))
    text = "\n\n".join(p for p in (_line(block) for block in "".join(parts).split("\n")) if p)
    return text, heading


def _spaced(text: str | None) -> str:
    # Line breaks in markup are spaces; only block elements break lines.
    return re.sub(r"\s+", " ", text) if text else ""


# --- RTF ------------------------------------------------------------------------------------

_RTF_TITLE = re.compile(r"\{\\title\s([^{}]*)\}")


def _rtf(body: bytes, limits: OfficeLimits, budget: _Budget) -> Extracted:
    """The text as one section without a location; title: the \\info group's \\title."""
    from striprtf.striprtf import rtf_to_text

    if not body.lstrip().startswith(b"{\\rtf"):
        raise ExtractionFailed("the RTF file does not start with {\\rtf")
    # RTF is 7-bit: other characters come as escapes that striprtf decodes with the declared
    # code page; latin-1 maps every byte to one character, so nothing is lost on the way in.
    source = body.decode("latin-1")
    text = _line(rtf_to_text(source, errors="ignore"))
    found = _RTF_TITLE.search(source, 0, 64 * 1024)
    title = _clean_title(rtf_to_text("{\\rtf1 " + found.group(1) + "}", errors="ignore")) if found else None
    return Extracted.of_sections(title, [Section(budget.text(text))])


_READERS: dict[str, Callable[[bytes, OfficeLimits, _Budget], Extracted]] = {
    DOCX: _docx, PPTX: _pptx, XLSX: _xlsx, ODT: _odt, ODP: _odp, ODS: _ods, EPUB: _epub, RTF: _rtf,
}
