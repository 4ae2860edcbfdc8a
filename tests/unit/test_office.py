"""Office documents and e-books (adapters/office.py): sections and where they are, titles, what
kind of ZIP a body is, and the hostile or broken files that must fail fast with a reason a user
can read. Every file is built here, with the format's own library or with zipfile."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile

import pytest

from allthethings.adapters.office import (
    DOCX,
    EPUB,
    ODP,
    ODS,
    ODT,
    PPTX,
    RTF,
    XLSX,
    OfficeLimits,
    container_type,
    extract_office,
)
from allthethings.domain.assets import Location
from allthethings.domain.errors import ExtractionFailed

# --- builders -------------------------------------------------------------------------------


def docx_body(build) -> bytes:
    import docx

    document = docx.Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def safety_manual(document) -> None:
    document.add_paragraph("Read this before anything else.")
    document.add_heading("Part 1", 1)
    document.add_paragraph("Unpacking the kettle.")
    document.add_heading("Part 2", 1)
    document.add_heading("Safety", 2)
    document.add_paragraph("Never immerse the base in water.")
    table = document.add_table(rows=3, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Symbol", "Meaning"
    table.cell(1, 0).text, table.cell(1, 1).text = "⚠", "Hot surface"
    table.cell(2, 0).merge(table.cell(2, 1)).text = "Unplug before cleaning"
    document.add_heading("Cleaning", 2)
    document.add_paragraph("Descale monthly.")


def pptx_body() -> bytes:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text = "Numbers for the board"
    first.notes_slide.notes_text_frame.text = "Mention the new office."
    second = deck.slides.add_slide(deck.slide_layouts[6])  # blank: no title placeholder
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1)).text_frame.text = "Grouped remark"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(3), Inches(4), Inches(1)).table
    table.cell(0, 0).text, table.cell(0, 1).text = "Region", "Sales"
    table.cell(1, 0).text, table.cell(1, 1).text = "North", "120"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx_body(title: str | None = None) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    budget = workbook.active
    budget.title = "Budget"
    budget.append(["Item", "Cost"])
    budget.append(["Paint", 120])
    budget.append([None, None])
    budget.append(["Brushes", 15.0])
    notes = workbook.create_sheet("Notes")
    notes.append(["Alice", "Bob"])
    notes.append(["Carol", "Dan"])
    if title:
        workbook.properties.title = title
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def odf_body(document) -> bytes:
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


def odt_body(title: str | None) -> bytes:
    from odf import dc
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    if title:
        document.meta.addElement(dc.Title(text=title))
    document.text.addElement(P(text="A note before the parts."))
    document.text.addElement(H(outlinelevel=1, text="Part 2"))
    document.text.addElement(H(outlinelevel=2, text="Safety"))
    document.text.addElement(P(text="Wear gloves."))
    document.text.addElement(H(outlinelevel=1, text="Part 3"))
    document.text.addElement(P(text="Store it dry."))
    return odf_body(document)


def odp_body() -> bytes:
    from odf.draw import Frame, Page, TextBox
    from odf.namespaces import PRESENTATIONNS
    from odf.opendocument import OpenDocumentPresentation
    from odf.presentation import Notes
    from odf.style import MasterPage, PageLayout
    from odf.text import P

    document = OpenDocumentPresentation()
    layout = PageLayout(name="layout")
    document.automaticstyles.addElement(layout)
    master = MasterPage(name="master", pagelayoutname=layout)
    document.masterstyles.addElement(master)

    def frame(cls: str | None, text: str) -> Frame:
        shape = Frame(width="10cm", height="2cm", x="1cm", y="1cm")
        if cls:
            shape.setAttrNS(PRESENTATIONNS, "class", cls)
        box = TextBox()
        box.addElement(P(text=text))
        shape.addElement(box)
        return shape

    first = Page(name="page1", masterpagename=master)
    first.addElement(frame("title", "Roadmap"))
    first.addElement(frame(None, "Ship the kettle in May."))
    notes = Notes()
    notes.addElement(frame("notes", "Say it slowly."))
    first.addElement(notes)
    second = Page(name="Appendix", masterpagename=master)
    second.addElement(frame(None, "Sources and thanks."))
    document.presentation.addElement(first)
    document.presentation.addElement(second)
    return odf_body(document)


def ods_body(build) -> bytes:
    from odf.opendocument import OpenDocumentSpreadsheet

    document = OpenDocumentSpreadsheet()
    build(document)
    return odf_body(document)


def ods_cell(text: str | None = None, value: float | None = None, **attributes):
    from odf.table import TableCell
    from odf.text import P

    if value is not None:
        cell = TableCell(valuetype="float", value=value, **attributes)
        cell.addElement(P(text=str(value)))
    else:
        cell = TableCell(valuetype="string", **attributes) if text else TableCell(**attributes)
        if text:
            cell.addElement(P(text=text))
    return cell


def ods_row(*cells, **attributes):
    from odf.table import TableRow

    row = TableRow(**attributes)
    for cell in cells:
        row.addElement(cell)
    return row


def ods_sheet(name: str, *rows):
    from odf.table import Table

    table = Table(name=name)
    for row in rows:
        table.addElement(row)
    return table


def epub_body(chapters: list[tuple[str, str, str]], toc: bool = True) -> bytes:
    """An EPUB of (file name, navigation title, body HTML) chapters."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("urn:test:kettle")
    book.set_title("The Kettle Book")
    book.set_language("en")
    items = []
    for file_name, title, html in chapters:
        item = epub.EpubHtml(title=title, file_name=file_name, lang="en")
        item.content = html
        book.add_item(item)
        items.append(item)
    book.toc = [epub.Link(item.file_name, title, item.file_name) for item, (_, title, _) in zip(items, chapters)
                if toc]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    out = io.BytesIO()
    epub.write_epub(out, book)
    return out.getvalue()


def zip_of(entries: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def rezipped(body: bytes, replace: dict[str, bytes | str]) -> bytes:
    """The same package with some entries' contents replaced."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return zip_of({**entries, **replace})


def locations(extracted) -> list[Location | None]:
    return [s.location for s in extracted.sections]


def fails(body: bytes, media: str, limits: OfficeLimits | None = None) -> str:
    with pytest.raises(ExtractionFailed) as raised:
        extract_office(body, media, limits or OfficeLimits())
    return raised.value.message


# --- what each format yields ----------------------------------------------------------------


def test_docx_sections_follow_the_heading_path_and_text_before_any_heading_has_no_location():
    extracted = extract_office(docx_body(safety_manual), DOCX)
    assert locations(extracted) == [None, Location(section="Part 1"), Location(section="Part 2"),
                                    Location(section="Part 2 › Safety"), Location(section="Part 2 › Cleaning")]
    assert extracted.sections[0].text == "Read this before anything else."
    safety = extracted.sections[3].text
    assert safety.startswith("Safety\n\nNever immerse")
    # A cell merged across the row is read once.
    assert safety.endswith("Symbol | Meaning\n⚠ | Hot surface\nUnplug before cleaning")
    assert extracted.title == "Part 1"  # no title in the properties: the first heading


def test_a_docx_title_comes_from_its_properties_before_its_headings():
    def titled(document):
        document.core_properties.title = "Kettle manual"
        safety_manual(document)

    assert extract_office(docx_body(titled), DOCX).title == "Kettle manual"


def test_pptx_has_one_section_per_slide_with_its_number_title_shapes_tables_and_notes():
    extracted = extract_office(pptx_body(), PPTX)
    assert locations(extracted) == [Location(slide=1, section="Quarterly review"), Location(slide=2)]
    first, second = (s.text for s in extracted.sections)
    assert first == "Quarterly review\n\nNumbers for the board\n\nMention the new office."
    assert "Grouped remark" in second and "Region | Sales\nNorth | 120" in second
    assert extracted.title == "Quarterly review"


def test_xlsx_has_a_section_per_sheet_and_reads_rows_under_a_header_as_pairs():
    extracted = extract_office(xlsx_body("Renovation"), XLSX)
    assert locations(extracted) == [Location(sheet="Budget"), Location(sheet="Notes")]
    budget, notes = (s.text for s in extracted.sections)
    assert budget == "Item | Cost\nItem: Paint | Cost: 120\nItem: Brushes | Cost: 15"
    # All text in both rows: no sign that the first is a header, so no pairs.
    assert notes == "Alice | Bob\nCarol | Dan"
    assert extracted.title == "Renovation"


def test_odt_sections_follow_outline_levels():
    extracted = extract_office(odt_body("Care guide"), ODT)
    assert locations(extracted) == [None, Location(section="Part 2"), Location(section="Part 2 › Safety"),
                                    Location(section="Part 3")]
    assert extracted.sections[2].text == "Safety\n\nWear gloves."
    assert extracted.title == "Care guide"
    assert extract_office(odt_body(None), ODT).title == "Part 2"


def test_odp_has_one_section_per_page_named_by_its_title_frame_or_a_given_page_name():
    extracted = extract_office(odp_body(), ODP)
    # "page1" is a name LibreOffice makes up; "Appendix" was given by a person.
    assert locations(extracted) == [Location(slide=1, section="Roadmap"), Location(slide=2, section="Appendix")]
    assert extracted.sections[0].text == "Roadmap\n\nShip the kettle in May.\n\nSay it slowly."
    assert extracted.title == "Roadmap"


def test_ods_has_a_section_per_sheet_with_its_name():
    def build(document):
        document.spreadsheet.addElement(ods_sheet("Prices", ods_row(ods_cell("Item"), ods_cell("Price")),
                                                  ods_row(ods_cell("Tea"), ods_cell(value=3))))
        document.spreadsheet.addElement(ods_sheet("Suppliers", ods_row(ods_cell("Leaf & Co"))))

    extracted = extract_office(ods_body(build), ODS)
    assert locations(extracted) == [Location(sheet="Prices"), Location(sheet="Suppliers")]
    assert extracted.sections[0].text == "Item | Price\nItem: Tea | Price: 3"


def test_epub_chapters_are_located_by_their_navigation_title_else_their_first_heading():
    body = epub_body([("one.xhtml", "Chapter One", "<html><body><h1>Beginnings</h1><p>It was a "
                       "cold\n   morning.</p><script>var x = 'hidden';</script></body></html>"),
                      ("two.xhtml", "Chapter Two", "<html><body><h2>Tea</h2><p>Steam rose.</p></body></html>")])
    extracted = extract_office(body, EPUB)
    assert locations(extracted) == [Location(section="Chapter One"), Location(section="Chapter Two")]
    assert extracted.sections[0].text == "Beginnings\n\nIt was a cold morning."
    assert extracted.title == "The Kettle Book"
    untitled = epub_body([("one.xhtml", "x", "<html><body><h1>Beginnings</h1><p>Cold.</p></body></html>")],
                         toc=False)
    assert locations(extract_office(untitled, EPUB)) == [Location(section="Beginnings")]


def test_rtf_is_one_section_without_a_location_titled_by_its_info_group():
    body = rb"{\rtf1\ansi{\info{\title Minutes}}Kettle \b meeting\b0 , caf\'e9.\par Next item.}"
    extracted = extract_office(body, RTF)
    assert extracted.title == "Minutes"
    assert [(s.text, s.location) for s in extracted.sections] == [("Kettle meeting, café.\nNext item.", None)]


# --- which container a ZIP is ---------------------------------------------------------------


def test_container_type_is_read_from_inside_the_zip_for_every_format():
    def odf(document_class) -> bytes:
        from odf.text import P

        document = document_class()
        if hasattr(document, "text") and document.text is not None:
            document.text.addElement(P(text="x"))
        return odf_body(document)

    from odf.opendocument import OpenDocumentPresentation, OpenDocumentSpreadsheet, OpenDocumentText

    bodies = {DOCX: docx_body(safety_manual), PPTX: pptx_body(), XLSX: xlsx_body(),
              ODT: odf(OpenDocumentText), ODP: odf(OpenDocumentPresentation), ODS: odf(OpenDocumentSpreadsheet),
              EPUB: epub_body([("one.xhtml", "One", "<html><body><p>x</p></body></html>")])}
    assert {media: container_type(body) for media, body in bodies.items()} == {m: m for m in bodies}


def test_a_docx_named_only_by_its_main_part_path_is_still_a_docx():
    body = zip_of({"[Content_Types].xml": '<Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                                          'content-types"><Default Extension="xml" ContentType="application/'
                                          'xml"/></Types>', "word/document.xml": "<w:document/>"})
    assert container_type(body) == DOCX


def test_any_other_zip_or_a_non_zip_has_no_container_type():
    assert container_type(zip_of({"readme.txt": "hello", "data.csv": "a,b"})) is None
    assert container_type(zip_of({"mimetype": "application/vnd.oasis.opendocument.graphics"})) is None
    assert container_type(b"%PDF-1.7\n" + b"x" * 100) is None
    assert container_type(docx_body(safety_manual)[:2000]) is None  # a ZIP's start without its end


def test_container_type_does_not_inflate_an_oversized_mimetype():
    body = zip_of({"mimetype": "application/epub+zip" + " " * (4 * 1024 * 1024)})
    tracemalloc.start()
    try:
        assert container_type(body) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


# --- hostile and broken files ---------------------------------------------------------------


def test_a_zip_bomb_disguised_as_docx_fails_before_inflating():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as entry:
            zeros = bytes(1024 * 1024)
            for _ in range(300):
                entry.write(zeros)
    body = out.getvalue()
    assert len(body) < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        message = fails(body, DOCX)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "zip bomb" in message and "DOCX" in message
    assert peak < 16 * 1024 * 1024


def test_an_entry_that_inflates_far_more_than_its_neighbours_is_a_bomb_even_under_the_total():
    body = rezipped(docx_body(safety_manual), {"word/media/filler.bin": bytes(20 * 1024 * 1024)})
    assert "inflates more than 100 times" in fails(body, DOCX)


def test_an_entry_that_lies_about_its_size_fails_without_inflating_what_it_hides():
    # A real package whose document part declares 1,000 bytes in the central directory but
    # holds 50 MiB of deflated zeros: zipfile's read() would inflate all of them.
    body = bytearray(rezipped(docx_body(safety_manual), {"word/document.xml": bytes(50 * 1024 * 1024)}))
    name = b"word/document.xml"
    at = next(i for i in range(len(body)) if body.startswith(b"PK\x01\x02", i) and body[i + 46:i + 46 + len(name)]
              == name)
    struct.pack_into("<I", body, at + 24, 1000)
    tracemalloc.start()
    try:
        message = fails(bytes(body), DOCX)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "inflates past its declared size" in message
    assert peak < 16 * 1024 * 1024


def test_an_xlsx_declaring_a_million_empty_rows_finishes_fast_with_its_real_text():
    rows = "".join(f'<row r="{n}"/>' for n in range(2, 1_000_001))
    sheet = ('<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             '<dimension ref="A1:XFD1000000"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Real text'
             f'</t></is></c></row>{rows}<row r="1000001"><c r="A1000001" t="inlineStr"><is><t>Far down</t>'
             '</is></c></row></sheetData></worksheet>')
    body = rezipped(xlsx_body(), {"xl/worksheets/sheet1.xml": sheet})
    started = time.perf_counter()
    extracted = extract_office(body, XLSX)
    assert time.perf_counter() - started < 3
    assert extracted.sections[0].text == "Real text"  # the sheet ends after 1,000 empty rows


def test_an_ods_with_a_million_repeated_empty_rows_is_read_without_expanding_them():
    def build(document):
        document.spreadsheet.addElement(ods_sheet(
            "Log", ods_row(ods_cell("Before")),
            ods_row(ods_cell(numbercolumnsrepeated=16384), numberrowsrepeated=1_000_000),
            ods_row(ods_cell("After"))))

    started = time.perf_counter()
    extracted = extract_office(ods_body(build), ODS)
    assert time.perf_counter() - started < 3
    assert extracted.sections[0].text == "Before\nAfter"


def test_an_ods_repeating_a_filled_row_a_million_times_fails_on_the_cell_limit():
    def build(document):
        document.spreadsheet.addElement(ods_sheet(
            "Bomb", ods_row(ods_cell("boom", numbercolumnsrepeated=1000), numberrowsrepeated=1_000_000)))

    started = time.perf_counter()
    message = fails(ods_body(build), ODS)
    assert time.perf_counter() - started < 3
    assert message == "the ODS file has more than 2,000,000 cells, more than one spreadsheet may"


@pytest.mark.parametrize("tail, reason", [
    ("EncryptionInfo".encode("utf-16-le"), "password-protected"),
    ("WordDocument".encode("utf-16-le"), "legacy binary Office file"),
])
def test_a_compound_file_is_refused_as_password_protected_or_legacy(tail, reason):
    body = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + tail + bytes(1024)
    assert reason in fails(body, DOCX)


def test_an_epub_without_content_documents_fails_with_that_reason():
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
           'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">'
           'x</dc:identifier><dc:title>Empty</dc:title></metadata><manifest/><spine/></package>')
    container = ('<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:'
                 'container"><rootfiles><rootfile full-path="content.opf" media-type="application/oebps-package+xml"'
                 '/></rootfiles></container>')
    body = zip_of({"mimetype": "application/epub+zip", "META-INF/container.xml": container, "content.opf": opf})
    assert container_type(body) == EPUB
    assert fails(body, EPUB) == "the EPUB has no content documents with text"


def test_an_epub_with_encrypted_chapters_is_refused_as_drm_protected():
    encryption = ('<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                  'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
                  '<enc:CipherReference URI="EPUB/one.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>')
    body = rezipped(epub_body([("one.xhtml", "One", "<html><body><p>x</p></body></html>")]),
                    {"META-INF/encryption.xml": encryption})
    assert "DRM-protected" in fails(body, EPUB)


def test_a_truncated_docx_fails_as_unreadable():
    body = docx_body(safety_manual)
    assert fails(body[:len(body) // 2], DOCX) == "the DOCX file could not be read (BadZipFile)"


def test_a_library_error_names_the_format_and_the_error_type_only():
    message = fails(xlsx_body(), DOCX)  # a real package, but not a Word one
    assert message.startswith("the DOCX file could not be read (") and "/" not in message


def test_a_document_without_text_fails_with_no_text():
    assert fails(docx_body(lambda document: None), DOCX) == "no text could be extracted from this DOCX file"


@pytest.mark.parametrize("limits, reason", [
    (OfficeLimits(max_entries=5), "entries inside; at most 5 are read"),
    (OfficeLimits(max_markup_bytes=1000), "parts over 1,000 bytes are not read"),
    (OfficeLimits(max_chars=50), "more than 50 characters of text"),
])
def test_each_limit_fails_with_its_own_reason(limits, reason):
    assert reason in fails(docx_body(safety_manual), DOCX, limits)
    extract_office(docx_body(safety_manual), DOCX)  # the same file within the default limits


def test_a_type_that_is_not_an_office_format_is_refused():
    assert "not an office document" in fails(b"PK\x03\x04", "application/zip")
