"""The local vision stand-in with the real OCR engine (RapidOCR): what it answers for an image is
what production's parser reads back, the text from the pixels and the description only from the
image's own metadata."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from allthethings.adapters.images import reading_from_output
from allthethings.domain.errors import ExtractionFailed
from devstack.vision import answer, read_image

pytest.importorskip("rapidocr_onnxruntime", reason="the local OCR engine is not installed")

LINES = ("Harbour office closed", "Ferry to Lundy 42")


def font(size: int):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def sign(exif: Image.Exif | None = None, fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", (1000, 600), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(LINES):
        draw.text((60, 150 + 200 * i), line, font=font(36), fill="black")
    out = io.BytesIO()
    image.save(out, fmt, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def squashed(text: str) -> str:
    return "".join(text.split()).casefold()  # the engine sometimes drops the space between two words


def test_the_text_rendered_in_an_image_comes_back_through_the_parser():
    reading = reading_from_output(read_image(sign(fmt="PNG")))
    for line in LINES:
        assert squashed(line) in squashed(reading.text), reading.text
    assert (reading.description, reading.description_source) == (None, None)


def test_a_jpeg_exif_description_is_the_description_with_its_source():
    exif = Image.Exif()
    exif[0x010E] = "The harbour office at Ilfracombe"
    output = read_image(sign(exif))
    assert output.startswith("DESCRIPTION (EXIF ImageDescription): The harbour office at Ilfracombe\nTEXT:\n")
    reading = reading_from_output(output)
    assert reading.description == "The harbour office at Ilfracombe"
    assert reading.description_source == "EXIF ImageDescription"
    assert squashed(LINES[1]) in squashed(reading.text)


def test_an_image_without_text_or_metadata_reads_as_nothing():
    blank = io.BytesIO()
    Image.new("RGB", (300, 200), "lightgrey").save(blank, "PNG")
    output = read_image(blank.getvalue())
    assert output == "DESCRIPTION (none): NONE\nTEXT:\nNONE"
    assert reading_from_output(output) == reading_from_output("DESCRIPTION: NONE\nTEXT:\nNONE")


def test_several_metadata_sources_are_named_once_per_family_and_joined_into_one_paragraph():
    output = answer([("XMP dc:title", "The lighthouse"), ("XMP dc:description", "A lighthouse at dusk"),
                     ("IPTC Keywords", "sea, coast")], [])
    assert output == ("DESCRIPTION (XMP dc:title, dc:description, IPTC Keywords): The lighthouse. "
                      "A lighthouse at dusk. sea, coast\nTEXT:\nNONE")
    assert reading_from_output(output).description_source == "XMP dc:title, dc:description, IPTC Keywords"


def test_an_image_that_cannot_be_read_fails_with_the_reason_inspection_gives():
    whole = sign()
    with pytest.raises(ExtractionFailed, match="truncated"):
        read_image(whole[: len(whole) // 2])
