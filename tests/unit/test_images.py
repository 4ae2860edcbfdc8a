"""Images without the OCR model: checking a body (size, pages, truncation, formats), thumbnails,
the description an image carries in its metadata, and the parser of the vision model's answer.
Every image is made here by Pillow, or crafted byte by byte where Pillow would refuse to."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image, PngImagePlugin

from allthethings.adapters.images import (
    IMAGE_TYPES,
    VISION_PROMPT,
    ImageInfo,
    ImageLimits,
    inspect_image,
    metadata_description,
    reading_from_output,
    thumbnail,
    xmp_fields,
)
from allthethings.domain import content
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Reading
from tests.conftest import REPO


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_exif(**tags) -> Image.Exif:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag.removeprefix("t"), 16)] = value
    return exif


def photo(size=(64, 48), color="teal") -> Image.Image:
    return Image.new("RGB", size, color)


# --- what an image is ----------------------------------------------------------------------------


def test_the_types_handled_are_the_ones_the_content_decision_sends_here():
    assert frozenset(content.IMAGE_TYPES) == IMAGE_TYPES


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"),
                                           ("GIF", "image/gif"), ("TIFF", "image/tiff"), ("BMP", "image/bmp")])
def test_each_format_handled_is_inspected_with_its_type_and_size(fmt, mime):
    assert inspect_image(encoded(photo((120, 80)), fmt)) == ImageInfo(mime=mime, width=120, height=80, frames=1)


@pytest.mark.parametrize("body", [b"", b"just some text, not a picture",
                                  b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9",
                                  b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0garbage", b"GIF89a"],
                         ids=["empty", "text", "eps", "png-signature-only", "jpeg-garbage", "gif-signature-only"])
def test_what_is_not_a_readable_image_fails_with_a_reason(body):
    with pytest.raises(ExtractionFailed) as failure:
        inspect_image(body)
    assert failure.value.message


def test_an_icon_is_refused_though_pillow_could_open_it():
    # Only the formats handled are tried: an ICO (or an EPS, which would start Ghostscript) is not one.
    with pytest.raises(ExtractionFailed, match="expected PNG, JPEG"):
        inspect_image(encoded(photo((32, 32)), "ICO"))


def test_a_png_declaring_ten_billion_pixels_is_refused_before_any_decoding():
    # The pixel data is empty: had decoding begun, the failure would be a truncation instead.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b""))
            + png_chunk(b"IEND", b""))
    with pytest.raises(ExtractionFailed, match=r"too large: it declares 10,000,000,000 pixels"):
        inspect_image(bomb)
    with pytest.raises(ExtractionFailed, match="too large"):
        thumbnail(bomb)


def test_the_pixel_budget_is_the_callers_and_names_the_size_declared():
    body = encoded(photo((100, 100)), "PNG")
    assert inspect_image(body, ImageLimits(max_pixels=10_000)).width == 100
    with pytest.raises(ExtractionFailed, match=r"100 x 100 = 10,000 pixels; at most 9,999"):
        inspect_image(body, ImageLimits(max_pixels=9_999))


def test_a_truncated_jpeg_is_caught_though_its_header_is_whole():
    whole = encoded(Image.effect_noise((400, 300), 64).convert("RGB"), "JPEG")
    assert inspect_image(whole).mime == "image/jpeg"
    with pytest.raises(ExtractionFailed, match="truncated"):
        inspect_image(whole[: len(whole) // 2])
    with pytest.raises(ExtractionFailed, match="truncated"):
        thumbnail(whole[: len(whole) // 2])


def test_a_truncated_png_is_caught_too():
    whole = encoded(Image.effect_noise((200, 200), 64), "PNG")
    with pytest.raises(ExtractionFailed, match="truncated or corrupt"):
        inspect_image(whole[: len(whole) * 2 // 3])


def test_a_tiff_of_five_hundred_pages_is_refused_for_its_page_count():
    pages = [Image.new("L", (1, 1), i % 256) for i in range(500)]
    body = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ExtractionFailed, match="TIFF image has more than 20 pages; at most 20 are accepted"):
        inspect_image(body)


def test_a_tiff_within_the_page_limit_is_read_with_its_page_count():
    pages = [Image.new("L", (8, 8), 40 * i) for i in range(3)]
    body = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert inspect_image(body).frames == 3
    with pytest.raises(ExtractionFailed, match="more than 2 pages"):
        inspect_image(body, ImageLimits(max_frames=2))


def test_a_long_gif_animation_is_accepted_and_only_its_first_frame_shown():
    frames = [photo((40, 30), (8 * i, 255 - 8 * i, 0)) for i in range(30)]
    body = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    info = inspect_image(body, ImageLimits(max_frames=20))
    assert (info.mime, info.frames) == ("image/gif", 30)
    first = Image.open(io.BytesIO(thumbnail(body))).convert("RGB").getpixel((20, 15))
    assert first[1] > 200 and first[0] < 40, f"the thumbnail shows a later frame: {first}"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns of each corrupt TIFF tag it skips
def test_no_prefix_of_a_valid_image_raises_anything_but_extraction_failed():
    bodies = [encoded(Image.effect_noise((60, 40), 50).convert("RGB"), fmt) for fmt in ("PNG", "JPEG", "GIF",
                                                                                       "WEBP", "TIFF", "BMP")]
    rng = random.Random(7)
    for body in bodies:
        cuts = sorted({*range(0, min(len(body), 200), 7), *(rng.randrange(len(body)) for _ in range(20))})
        for cut in cuts:
            mangled = body[:cut] + bytes(rng.randrange(256) for _ in range(8))
            for call in (inspect_image, thumbnail, metadata_description):
                try:
                    call(mangled)
                except ExtractionFailed:
                    pass


# --- HEIC ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heic() -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    pillow_heif.register_heif_opener()
    try:
        return encoded(photo((64, 48), "orange"), "HEIF", quality=60,
                       exif=with_exif(t010E="A crate of oranges").tobytes())
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        pytest.skip(f"pillow-heif cannot write HEIC here (no HEVC encoder?): {exc}")


def test_a_heic_photo_is_inspected_thumbnailed_and_described(heic):
    assert inspect_image(heic) == ImageInfo(mime="image/heic", width=64, height=48, frames=1)
    assert Image.open(io.BytesIO(thumbnail(heic))).format == "JPEG"
    assert metadata_description(heic) == [("EXIF ImageDescription", "A crate of oranges")]


def test_a_heic_that_pillow_heif_cannot_read_fails_with_a_reason():
    broken = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00\x00\x00\x08free" * 4
    with pytest.raises(ExtractionFailed, match="HEIC/HEIF"):
        inspect_image(broken)


def test_a_heic_without_pillow_heif_installed_fails_with_that_reason(heic):
    # A process of its own in which pillow_heif cannot be imported: this one's import state stays as it is.
    script = ("import sys; sys.modules['pillow_heif'] = None\n"
              "from allthethings.adapters.images import inspect_image\n"
              "from allthethings.domain.errors import ExtractionFailed\n"
              "try:\n    inspect_image(sys.stdin.buffer.read())\n"
              "except ExtractionFailed as exc:\n    print(exc.message)\n")
    run = subprocess.run([sys.executable, "-c", script], input=heic, capture_output=True, cwd=REPO, timeout=60,
                         env={"PYTHONPATH": f"{REPO}/shared"})
    assert run.stdout.decode().strip() == "HEIC/HEIF images cannot be read here: pillow-heif is not installed", (
        run.stderr.decode())


# --- thumbnails ----------------------------------------------------------------------------------


def test_a_thumbnail_is_a_jpeg_no_larger_than_the_side_asked_for():
    body = encoded(photo((2000, 1000)), "JPEG")
    small = Image.open(io.BytesIO(thumbnail(body)))
    assert (small.format, small.size) == ("JPEG", (320, 160))
    assert Image.open(io.BytesIO(thumbnail(body, ImageLimits(thumbnail_side=100)))).size == (100, 50)


def test_a_thumbnail_is_turned_upright_by_the_exif_orientation():
    # Stored landscape, red on the left; orientation 6 means "turn 90 degrees clockwise to show",
    # which puts the left edge at the top.
    stored = photo((400, 200), "blue")
    stored.paste(photo((200, 200), "red"), (0, 0))
    small = Image.open(io.BytesIO(thumbnail(encoded(stored, "JPEG", exif=with_exif(t0112=6)))))
    assert small.size == (160, 320)
    top, bottom = small.getpixel((80, 40)), small.getpixel((80, 280))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0], (top, bottom)


def test_transparency_is_flattened_on_white():
    clear = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    clear.paste((0, 0, 0, 255), (0, 0, 25, 50))
    small = Image.open(io.BytesIO(thumbnail(encoded(clear, "PNG"))))
    assert small.mode == "RGB"
    assert min(small.getpixel((40, 25))) > 240 and max(small.getpixel((10, 25))) < 20


def test_a_sixteen_bit_greyscale_png_keeps_its_contrast():
    ramp = Image.linear_gradient("L").resize((64, 64)).convert("I").point(lambda v: v * 257)
    body = encoded(ramp.convert("I;16"), "PNG")
    small = Image.open(io.BytesIO(thumbnail(body))).convert("L")
    assert small.getpixel((32, 2)) < 30 and small.getpixel((32, 61)) > 225


# --- the image's own description -----------------------------------------------------------------


def test_a_jpeg_exif_image_description_is_its_description():
    body = encoded(photo(), "JPEG", exif=with_exif(t010E="A lighthouse at dusk"))
    assert metadata_description(body) == [("EXIF ImageDescription", "A lighthouse at dusk")]


def test_a_utf8_exif_description_is_not_read_as_latin1():
    # Pillow writes ASCII fields only: put UTF-8 bytes in place of five ASCII ones.
    body = encoded(photo(), "JPEG", exif=with_exif(t010E="Caf@@ au lait"))
    body = body.replace(b"Caf@@ au lait", "Café au lait".encode())
    assert metadata_description(body) == [("EXIF ImageDescription", "Café au lait")]


def test_camera_placeholders_and_blank_values_are_no_description():
    for placeholder in ("OLYMPUS DIGITAL CAMERA", "SONY DSC", "default", "   ", "DSC01234.JPG", "IMG_2024"):
        body = encoded(photo(), "JPEG", exif=with_exif(t010E=placeholder))
        assert metadata_description(body) == [], placeholder
    assert metadata_description(encoded(photo(), "JPEG")) == []


def test_windows_xp_tags_are_read_as_utf16():
    exif = with_exif(t9C9B="Été à Paris".encode("utf-16-le") + b"\0\0",
                     t9C9E="seine;bridge".encode("utf-16-le") + b"\0\0")
    assert metadata_description(encoded(photo(), "JPEG", exif=exif)) == [
        ("EXIF XPTitle", "Été à Paris"), ("EXIF XPKeywords", "seine, bridge")]


XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:title><rdf:Alt><rdf:li xml:lang="fr-FR">Le phare</rdf:li><rdf:li xml:lang="x-default">The lighthouse</rdf:li>
  </rdf:Alt></dc:title>
  <dc:description><rdf:Alt><rdf:li xml:lang="x-default">A lighthouse on a rock at dusk</rdf:li></rdf:Alt>
  </dc:description>
  <dc:subject><rdf:Bag><rdf:li>sea</rdf:li><rdf:li>coast</rdf:li></rdf:Bag></dc:subject>
 </rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def test_xmp_title_description_and_subject_are_read_from_a_jpeg():
    body = encoded(photo(), "JPEG", xmp=XMP.encode())
    assert metadata_description(body) == [("XMP dc:title", "The lighthouse"),
                                          ("XMP dc:description", "A lighthouse on a rock at dusk"),
                                          ("XMP dc:subject", "sea, coast")]


def test_xmp_in_a_png_is_read_too():
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    assert ("XMP dc:title", "The lighthouse") in metadata_description(encoded(photo(), "PNG", pnginfo=info))


def test_an_xmp_packet_with_a_dtd_is_not_parsed():
    laughs = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;">]>'
              '<x:xmpmeta xmlns:x="adobe:ns:meta/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
              '<dc:title>&b;</dc:title></x:xmpmeta>')
    assert xmp_fields(laughs.encode()) == []
    assert xmp_fields(laughs.split("]>")[1].replace("&b;", "plain").encode()) == [("XMP dc:title", "plain")]


def iptc_app13(*datasets: tuple[int, str]) -> bytes:
    """A Photoshop APP13 segment holding IPTC-IIM record 2 datasets (number, UTF-8 text)."""
    iim = b"".join(b"\x1c\x02" + bytes([number]) + struct.pack(">H", len(raw)) + raw
                   for number, raw in ((n, text.encode()) for n, text in datasets))
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2)
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def test_iptc_caption_headline_and_keywords_are_read():
    jpeg = encoded(photo(), "JPEG")
    body = jpeg[:2] + iptc_app13((120, "Fishing boats at the harbour wall"), (105, "Harbour"),
                                 (25, "boats"), (25, "sea")) + jpeg[2:]
    assert metadata_description(body) == [("IPTC Caption", "Fishing boats at the harbour wall"),
                                          ("IPTC Headline", "Harbour"), ("IPTC Keywords", "boats, sea")]


def test_png_title_description_and_comment_chunks_are_read_in_that_order():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Drawn on a tablet")
    info.add_itxt("Description", "Un diagramme du réseau")
    info.add_text("Title", "Network map")
    info.add_text("Software", "ignored")
    assert metadata_description(encoded(photo(), "PNG", pnginfo=info)) == [
        ("PNG Title", "Network map"), ("PNG Description", "Un diagramme du réseau"),
        ("PNG Comment", "Drawn on a tablet")]


def test_a_png_description_written_after_the_pixels_is_found():
    body = encoded(photo(), "PNG")
    tail = png_chunk(b"tEXt", b"Description\x00A chunk after IDAT")
    body = body[:-12] + tail + body[-12:]  # before IEND
    assert metadata_description(body) == [("PNG Description", "A chunk after IDAT")]


def test_sources_come_in_order_of_trust_and_a_repeated_text_only_once():
    exif = with_exif(t010E="The lighthouse", t9C9B="the  LIGHTHOUSE".encode("utf-16-le"))
    body = encoded(photo(), "JPEG", exif=exif, xmp=XMP.encode())
    assert metadata_description(body) == [("EXIF ImageDescription", "The lighthouse"),
                                          ("XMP dc:description", "A lighthouse on a rock at dusk"),
                                          ("XMP dc:subject", "sea, coast")]


def test_a_tiff_image_description_tag_is_read():
    body = encoded(photo(), "TIFF", tiffinfo={270: "A scanned postcard"})
    assert metadata_description(body) == [("EXIF ImageDescription", "A scanned postcard")]


def test_metadata_of_what_is_not_an_image_fails_like_inspection():
    with pytest.raises(ExtractionFailed):
        metadata_description(b"not an image")


# --- the vision model's answer -------------------------------------------------------------------


def test_the_prompt_asks_for_both_parts_the_parser_reads():
    assert "DESCRIPTION:" in VISION_PROMPT and "TEXT:" in VISION_PROMPT and "NONE" in VISION_PROMPT
    assert reading_from_output(VISION_PROMPT.split("\n\n")[1]).description_source == "model"


def test_a_plain_answer_gives_a_description_by_the_model_and_text_line_by_line():
    answer = "DESCRIPTION: A shop front at night.\nTEXT:\nOPEN\n24 hours\n"
    assert reading_from_output(answer) == Reading("A shop front at night.", "model", "OPEN\n24 hours")


def test_the_local_stand_ins_header_names_the_source():
    answer = "DESCRIPTION (XMP dc:title, dc:description): The lighthouse. A lighthouse at dusk\nTEXT:\nNONE"
    assert reading_from_output(answer) == Reading("The lighthouse. A lighthouse at dusk",
                                                  "XMP dc:title, dc:description", "")


def test_none_in_both_parts_means_nothing_read():
    assert reading_from_output("DESCRIPTION (none): NONE\nTEXT:\nNONE") == Reading(None, None, "")
    assert reading_from_output("DESCRIPTION: None.\nTEXT: none") == Reading(None, None, "")


def test_bold_headers_extra_whitespace_and_a_preamble_are_tolerated():
    answer = ("Sure! Here is what I see.\n\n  **DESCRIPTION:**   A red   bus\n on a bridge.  \n\n"
              "**TEXT:**\n```\n  Route 9  \n\nCity Centre\n```\n")
    assert reading_from_output(answer) == Reading("A red bus on a bridge.", "model", "Route 9\nCity Centre")


def test_a_list_of_streamed_tokens_is_joined():
    tokens = ["DESCRIP", "TION: A ", "cat", "\nTE", "XT:\n", "MEOW"]
    assert reading_from_output(tokens) == Reading("A cat", "model", "MEOW")


def test_a_missing_text_part_is_empty_text():
    assert reading_from_output("DESCRIPTION: A cat asleep") == Reading("A cat asleep", "model", "")


def test_text_that_looks_like_a_header_stays_text():
    answer = "DESCRIPTION: A form.\nTEXT:\nName: Ada\nDescription: widget\nTEXT: 3 lines"
    assert reading_from_output(answer).text == "Name: Ada\nDescription: widget\nTEXT: 3 lines"


def test_an_answer_without_headers_is_kept_as_the_models_description():
    assert reading_from_output("A photo of a dog on a beach.") == Reading("A photo of a dog on a beach.", "model", "")
    assert reading_from_output("") == Reading(None, None, "")


def test_no_string_makes_the_parser_raise():
    rng = random.Random(3)
    alphabet = "DESCRIPTONX:()*#_`\n \t\x00\u200bNEé"
    for _ in range(2000):
        garbage = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        reading = reading_from_output(garbage)
        assert isinstance(reading.text, str)


@pytest.mark.parametrize("output", [None, 42, {"text": "x"}, ["a", 1], b"DESCRIPTION: bytes"])
def test_an_output_that_is_neither_a_string_nor_tokens_is_a_value_error(output):
    with pytest.raises(ValueError):
        reading_from_output(output)
