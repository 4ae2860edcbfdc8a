"""Images with Pillow (and pillow-heif for HEIC): checking a body before anything is spent on it,
a small JPEG thumbnail, the description an image carries in its own metadata, and the vision
model's contract (the prompt production sends, and the parser of its answer).

Only the first frame is ever decoded: the first frame of an animation, the first page of a TIFF.
Every entry point opens the body with the same checks, so each fails with the same reason, and
only as `ExtractionFailed`: formats outside IMAGE_TYPES are never tried (Pillow's EPS plugin, for
one, would start Ghostscript), the declared size is checked against a pixel budget before any
pixel is decoded, and the first frame is decoded to its last byte (a JPEG at an eighth of its
scale) so that a truncated file is caught here rather than indexed as a half-grey picture.

The model answers in this format, which the local stand-in (devstack/vision.py) writes too, naming
in parentheses where its description came from:

    DESCRIPTION: <one paragraph, or NONE>
    TEXT:
    <the visible text, line by line, or NONE>
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import re
from collections.abc import Iterator

from allthethings.domain import content
from allthethings.domain.errors import ExtractionFailed
from allthethings.ports import Pictures, Prepared, Reading

__all__ = ["IMAGE_TYPES", "VISION_MAX_NEW_TOKENS", "VISION_PROMPT", "ImageInfo", "ImageLimits", "Reading",
           "first_frame", "inspect_image", "metadata_description", "reading_from_output", "thumbnail",
           "xmp_fields"]

IMAGE_TYPES = frozenset(content.IMAGE_TYPES)

# Pillow format names we open, and their types (a JPEG with a Multi-Picture index opens as MPO;
# a HEIF's type is read from its `ftyp` brand).
_FORMAT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp",
                 "GIF": "image/gif", "TIFF": "image/tiff", "BMP": "image/bmp", "HEIF": "image/heif"}
_OPENED_AS = ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP")
# HEIF `ftyp` brands pillow-heif reads (AVIF is not among the types handled).
_HEIF_BRANDS = {b"heic": "image/heic", b"heix": "image/heic", b"hevc": "image/heic", b"hevx": "image/heic",
                b"heim": "image/heic", b"heis": "image/heic", b"mif1": "image/heif", b"msf1": "image/heif"}
# Formats whose extra frames are an animation we never read. Pages (TIFF, a HEIF collection, an
# MPO's second view) count against max_frames: each one is a picture of its own that the first
# alone does not represent, and walking a TIFF's page chain costs a read per page.
_ANIMATED = frozenset({"GIF", "PNG", "WEBP"})
_READABLE = "PNG, JPEG, WebP, GIF, TIFF, BMP or HEIC"

VISION_MAX_NEW_TOKENS = 512  # the most lucataco/qwen2-vl-7b-instruct accepts
VISION_PROMPT = (
    "Read this image and answer in exactly this format, with nothing before or after it:\n"
    "\n"
    "DESCRIPTION: <one paragraph describing what the image shows: its subject, setting, people, objects, "
    "and what kind of image it is (photo, screenshot, chart, diagram, document, drawing)>\n"
    "TEXT:\n"
    "<all the text visible in the image, transcribed verbatim, one line of the image per line, in reading "
    "order>\n"
    "\n"
    "Write NONE after DESCRIPTION: if there is nothing to describe, and NONE on the line after TEXT: if no "
    "text is visible. Do not translate, correct or summarise the text. No other commentary."
)


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """What an image may declare before it is refused, and the thumbnail's size.

    `max_pixels` bounds the first frame's width x height, checked from the header before decoding;
    Pillow's own decompression-bomb check (2 x Image.MAX_IMAGE_PIXELS, about 179 MP by default)
    stays in force as a second fence, so a budget above it is capped by it. `max_frames` bounds
    pages (TIFF, HEIF collections), not the frames of an animation (GIF, APNG, WebP), of which
    only the first is decoded."""

    max_pixels: int = 50_000_000
    max_frames: int = 20
    thumbnail_side: int = 320


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int
    frames: int  # pages, or the frames an animation declares (only the first is ever decoded)


def inspect_image(body: bytes, limits: ImageLimits = ImageLimits()) -> ImageInfo:
    """What the image is, after decoding its first frame in full; ExtractionFailed (and nothing
    else) with a reason a user can read when it cannot be opened, declares too many pixels or
    pages, or is truncated or corrupt."""
    with _opened(body, limits) as (image, info):
        if image.format in ("JPEG", "MPO"):
            # An eighth-scale decode still reads every byte of the scan (a truncation still shows)
            # in a sixty-fourth of the memory.
            image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
        _load(image)
    return info


def first_frame(body: bytes, limits: ImageLimits = ImageLimits(), max_side: int | None = None):
    """The first frame as an RGB PIL image, upright (its EXIF orientation applied), transparency
    flattened on white, no larger than `max_side` on its longest side when given. Raises as
    inspect_image does."""
    from PIL import Image, ImageOps

    with _opened(body, limits) as (image, _info):
        if max_side and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale, never below max_side
        _load(image)
        try:
            ImageOps.exif_transpose(image, in_place=True)  # while the frame is still the file's: TIFF tags too
            if image.mode in ("P", "PA", "1"):
                image = image.convert("RGBA")  # a palette image resizes by nearest neighbour only
            elif image.mode.startswith("I;16"):
                image = image.convert("I")
            if max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return _flattened(image)
        except Exception as exc:  # noqa: BLE001 - a crafted EXIF block or mode can raise any type here
            raise ExtractionFailed(f"the image could not be converted ({_reason(exc)})") from None


def thumbnail(body: bytes, limits: ImageLimits = ImageLimits()) -> bytes:
    """A JPEG of the first frame, upright, at most `limits.thumbnail_side` on its longest side."""
    frame = first_frame(body, limits, max_side=limits.thumbnail_side)
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=80, optimize=True)
    return out.getvalue()


# --- opening -------------------------------------------------------------------------------------


@functools.cache
def _heif_opener() -> str | None:
    """Register pillow-heif's opener once; None when it is there, else why it is not."""
    try:
        import pillow_heif
    except ImportError:
        return "pillow-heif is not installed"
    pillow_heif.register_heif_opener()
    return None


def _heif_type(body: bytes) -> str | None:
    return _HEIF_BRANDS.get(body[8:12]) if body[4:8] == b"ftyp" else None


@contextlib.contextmanager
def _opened(body: bytes, limits: ImageLimits) -> Iterator[tuple[object, ImageInfo]]:
    """The image at its first frame, with its size and page count checked; nothing decoded yet."""
    from PIL import Image, UnidentifiedImageError

    if not body:
        raise ExtractionFailed("the body is empty: not an image")
    heif = _heif_type(body)
    if heif and (problem := _heif_opener()):
        raise ExtractionFailed(f"HEIC/HEIF images cannot be read here: {problem}")
    formats = ["HEIF"] if heif else list(_OPENED_AS)
    try:
        image = Image.open(io.BytesIO(body), formats=formats)
    except Image.DecompressionBombError as exc:
        raise ExtractionFailed(_too_many_pixels(limits, _declared_pixels(str(exc)))) from None
    except UnidentifiedImageError:
        if heif:
            raise ExtractionFailed("the HEIC/HEIF image could not be read (pillow-heif cannot open it)") from None
        raise ExtractionFailed(f"not an image that can be read here (expected {_READABLE})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise any type on crafted headers
        if "truncated" in str(exc).lower():
            raise ExtractionFailed(f"the image is truncated or corrupt ({_reason(exc)})") from None
        raise ExtractionFailed(f"not an image that can be read here ({_reason(exc)})") from None
    # Never closed here: a BytesIO holds no descriptor, and a closed image cannot be returned.
    width, height = image.size
    if width < 1 or height < 1:
        raise ExtractionFailed(f"the image declares an empty size ({width} x {height})")
    if width * height > limits.max_pixels:
        raise ExtractionFailed(_too_many_pixels(limits, width * height, (width, height)))
    frames = _frames(body, image, formats, limits)
    mime = heif or _FORMAT_TYPES[image.format]
    yield image, ImageInfo(mime=mime, width=width, height=height, frames=frames)


def _frames(body: bytes, image, formats: list[str], limits: ImageLimits) -> int:
    """The page count (refused past max_frames), or the frames an animation declares."""
    from PIL import Image

    if image.format not in ("GIF", "TIFF"):
        try:
            count = int(getattr(image, "n_frames", 1))  # read from the header: no walk
        except Exception:  # noqa: BLE001 - a bad count is not worth refusing a readable first frame
            count = 1
    else:
        # GIF and TIFF frames are counted by walking the file, on a handle of its own so that a
        # broken later frame cannot spoil the first; pages only as far as the limit.
        cap = None if image.format in _ANIMATED else limits.max_frames
        count = 1
        try:
            with Image.open(io.BytesIO(body), formats=formats) as walker:
                while cap is None or count <= cap:
                    walker.seek(count)
                    count += 1
        except Exception:  # noqa: BLE001, S110 - EOFError ends the walk; a broken frame ends it too (never read)
            pass
    if image.format not in _ANIMATED and count > limits.max_frames:
        counted = f"more than {limits.max_frames}" if image.format == "TIFF" else str(count)
        raise ExtractionFailed(f"the {image.format} image has {counted} pages; at most {limits.max_frames} "
                               "are accepted")
    return count


def _load(image) -> None:
    from PIL import Image

    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ExtractionFailed(f"the image is too large to decode ({_reason(exc)})") from None
    except MemoryError:
        raise ExtractionFailed("the image is too large to decode in the memory available") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        raise ExtractionFailed(f"the image is truncated or corrupt ({_reason(exc)})") from None


def _flattened(image):
    """RGB, with transparency on white and deep or float samples scaled into 0-255."""
    from PIL import Image

    if image.mode in ("I", "F"):
        low, high = image.getextrema()
        scale = 255.0 / (high - low) if high > low else 1.0
        image = image.point(lambda v: (v - low) * scale).convert("L")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def _declared_pixels(message: str) -> int | None:
    match = re.search(r"\((\d+) pixels\)", message)  # Pillow's bomb message names the size it saw
    return int(match.group(1)) if match else None


def _too_many_pixels(limits: ImageLimits, pixels: int | None, size: tuple[int, int] | None = None) -> str:
    declared = f"{size[0]} x {size[1]} = {pixels:,} pixels" if size and pixels else (
        f"{pixels:,} pixels" if pixels else "more pixels than allowed")
    return (f"the image is too large: it declares {declared}; at most {limits.max_pixels:,} are accepted "
            "(a decompression bomb is refused before it is decoded)")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


# --- the image's own description -----------------------------------------------------------------

MAX_VALUE_CHARS = 2000  # a metadata field longer than this is a dump, not a caption
_EXIF_DESCRIPTION = 0x010E
_XP_TAGS = (("XPTitle", 0x9C9B), ("XPComment", 0x9C9C), ("XPSubject", 0x9C9F), ("XPKeywords", 0x9C9E))
_IPTC = (("IPTC Caption", (2, 120)), ("IPTC Headline", (2, 105)), ("IPTC Keywords", (2, 25)))
_PNG_KEYS = ("Title", "Description", "Comment")
_DC = "http://purl.org/dc/elements/1.1/"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# What cameras and editors write when nobody wrote anything: not a description of this image.
_PLACEHOLDERS = frozenset({
    "olympus digital camera", "sony dsc", "default", "digital camera", "konica minolta digital camera",
    "minolta digital camera", "kodak digital still camera", "samsung digital camera", "exif_jpeg_picture",
    "created with gimp", "lead technologies inc. v1.01", "untitled", "no title", "title", "description",
    "image", "picture", "photo", "camera", "none", "null", "n/a", "-",
})
# Camera file names written into the caption (IMG_1234, DSC01234.JPG, PXL_20240101_123456789).
_FILE_NAME = re.compile(r"(?:img|dsc[nf]?|pict?|imgp|dji|gopr|pxl|mvimg|sam|p)[_ -]?\d[\d_ -]*"
                        r"(?:\.(?:jpe?g|png|heic|tiff?|gif|webp|dng))?", re.IGNORECASE)


def metadata_description(body: bytes) -> list[tuple[str, str]]:
    """(source, text) pairs from the image's own metadata, most trusted first: EXIF
    ImageDescription, the Windows XP tags, XMP dc:title, dc:description and dc:subject, IPTC
    Caption, Headline and Keywords, PNG Title, Description and Comment. Empty values and camera
    placeholders are dropped, and a text already given by an earlier source is not repeated.
    Raises ExtractionFailed as inspect_image does; a broken metadata block is only skipped."""
    found: list[tuple[str, str | None]] = []
    with _opened(body, ImageLimits()) as (image, _info):
        for reader in (_exif_values, _xmp_values, _iptc_values, _png_values):
            try:
                found.extend(reader(image))
            except Exception:  # noqa: BLE001, S112 - one broken block must not hide the others
                continue
    described: list[tuple[str, str]] = []
    seen: set[str] = set()
    for source, raw in found:
        text = _cleaned(raw)
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            described.append((source, text))
    return described


def _cleaned(raw: str | None) -> str | None:
    if not raw:
        return None
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    if not any(ch.isalnum() for ch in text) or text.casefold() in _PLACEHOLDERS or _FILE_NAME.fullmatch(text):
        return None
    return text[:MAX_VALUE_CHARS]


def _decoded(value) -> str | None:
    """Text from a metadata value: UTF-8 bytes (else Windows-1252), or a string Pillow decoded
    as Latin-1 that was really UTF-8 (as most software writes EXIF ASCII fields nowadays)."""
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        value = bytes(v & 0xFF for v in value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("cp1252", errors="replace")
    if isinstance(value, str):
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    return None


def _exif_values(image) -> list[tuple[str, str | None]]:
    exif = image.getexif()
    values = [("EXIF ImageDescription", _decoded(exif.get(_EXIF_DESCRIPTION)))]
    for name, tag in _XP_TAGS:
        raw = exif.get(tag)
        if isinstance(raw, tuple):
            raw = bytes(v & 0xFF for v in raw)
        if isinstance(raw, bytes):
            text = raw.decode("utf-16-le", errors="replace").replace("\x00", "")
            if name == "XPKeywords":
                text = ", ".join(part.strip() for part in text.split(";") if part.strip())
            values.append((f"EXIF {name}", text))
    return values


def _xmp_packet(image) -> bytes | None:
    for key in ("xmp", "XML:com.adobe.xmp"):
        packet = image.info.get(key)
        if packet:
            return packet.encode("utf-8") if isinstance(packet, str) else bytes(packet)
    tags = getattr(image, "tag_v2", None)
    packet = tags.get(700) if tags is not None else None  # TIFF's XMLPacket tag
    if isinstance(packet, str):
        return packet.encode("utf-8")
    return bytes(packet) if isinstance(packet, (bytes, tuple)) else None


def _xmp_values(image) -> list[tuple[str, str | None]]:
    packet = _xmp_packet(image)
    return xmp_fields(packet) if packet else []


def xmp_fields(packet: bytes) -> list[tuple[str, str]]:
    """dc:title, dc:description and dc:subject from a raw XMP packet. Parsed here with the standard
    library rather than Pillow's getxmp(), which needs defusedxml (not in the layer); a packet
    with a DTD is refused unread, since XMP never has one and entities are how XML bombs work."""
    from xml.etree import ElementTree

    packet = packet.strip(b"\x00 \t\r\n")
    start = packet.find(b"<")
    if start < 0 or re.search(rb"<!(?:DOCTYPE|ENTITY)", packet, re.IGNORECASE):
        return []
    try:
        root = ElementTree.fromstring(packet[start:])  # noqa: S314 - no DTD, so no entities to expand
    except ElementTree.ParseError:
        return []
    fields = []
    for name in ("title", "description", "subject"):
        parts: list[str] = []
        for element in root.iter(f"{{{_DC}}}{name}"):
            items = list(element.iter(f"{{{_RDF}}}li"))
            if name != "subject" and items:
                # A language alternative: the default language, else the first.
                items = [next((li for li in items if li.get(_XML_LANG) == "x-default"), items[0])]
            parts.extend((li.text or "").strip() for li in items)
            if not items and element.text:
                parts.append(element.text.strip())
        for description in root.iter(f"{{{_RDF}}}Description"):
            if description.get(f"{{{_DC}}}{name}"):
                parts.append(description.get(f"{{{_DC}}}{name}", "").strip())
        parts = list(dict.fromkeys(part for part in parts if part))
        if parts:
            fields.append((f"XMP dc:{name}", (", " if name == "subject" else " ").join(parts)))
    return fields


def _iptc_values(image) -> list[tuple[str, str | None]]:
    from PIL import IptcImagePlugin

    iptc = IptcImagePlugin.getiptcinfo(image) or {}
    values = []
    for source, key in _IPTC:
        raw = iptc.get(key)
        items = raw if isinstance(raw, list) else [raw] if raw else []
        texts = [text.strip() for text in (_decoded(item) for item in items) if text and text.strip()]
        if texts:
            values.append((source, ", ".join(texts)))
    return values


def _png_values(image) -> list[tuple[str, str | None]]:
    if image.format != "PNG":
        return []
    chunks = {key: value for key, value in image.info.items() if isinstance(value, str)}
    if not getattr(image, "is_animated", False):  # an APNG's trailing chunks cost decoding every frame
        try:
            chunks.update(image.text)  # chunks after the image data are read only with the pixels
        except Exception:  # noqa: BLE001, S110 - a truncated tail: the chunks read so far will do
            pass
    by_key = {key.casefold(): value for key, value in chunks.items() if isinstance(key, str)}
    return [(f"PNG {key}", str(by_key[key.casefold()])) for key in _PNG_KEYS if key.casefold() in by_key]


# --- the model's answer --------------------------------------------------------------------------

# A header at the start of a line, however the model dresses it: `DESCRIPTION:`, `**Description:**`,
# `## TEXT`, `DESCRIPTION (EXIF ImageDescription):`, `Visible text:`.
_HEADER = re.compile(
    r"^[\s>#*_`-]*(?P<name>description|(?:visible\s+)?text)[*_`]*\s*(?:\((?P<source>[^)\n]*)\))?"
    r"\s*[*_`]*\s*:[*_`]*[ \t]*(?P<rest>.*)$",
    re.IGNORECASE)
_NOTHING = frozenset({"none", "(none)", "[none]", "<none>", "n/a", "no text", "no visible text", "nothing"})
_FENCE = re.compile(r"^\s*```\w*\s*$")


def reading_from_output(output: object) -> Reading:
    """The reading in a vision prediction's output: a string, or the list of tokens Replicate
    streams (joined). ValueError for anything else; never for a string, however malformed.

    The description's source is what the header names in parentheses, else `model`; NONE means
    empty. Text before the first header is the model's preamble and is dropped; an answer with
    no header at all is kept as the description, since a model that ignores the format nearly
    always describes the picture, and dropping it would lose the only reading there is."""
    if isinstance(output, (list, tuple)) and all(isinstance(token, str) for token in output):
        output = "".join(output)
    if not isinstance(output, str):
        raise ValueError(f"a vision output is a string or a list of strings, not {type(output).__name__}")
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in output.replace("\r\n", "\n"))
    lines = [line for line in text.split("\n") if not _FENCE.match(line)]

    description_lines: list[str] | None = None
    text_lines: list[str] | None = None
    source: str | None = None
    for line in lines:
        if text_lines is not None:
            text_lines.append(line)  # once the text begins, everything is text, headers or not
            continue
        header = _HEADER.match(line)
        if header and header.group("name").lower().endswith("text"):
            text_lines = [header.group("rest")]
        elif header and description_lines is None:
            description_lines = [header.group("rest")]
            source = (header.group("source") or "").strip() or None
        elif description_lines is not None:
            description_lines.append(line)

    if description_lines is None and text_lines is None:
        paragraph = " ".join(text.split())
        return Reading(description=paragraph or None, description_source="model" if paragraph else None, text="")
    description = " ".join(" ".join(description_lines or []).split())
    if _is_nothing(description):
        description, source = "", None
    visible = [line.strip() for line in text_lines or [] if line.strip()]
    if _is_nothing(" ".join(visible)):
        visible = []
    return Reading(description=description or None,
                   description_source=(source or "model") if description else None,
                   text="\n".join(visible))


def _is_nothing(text: str) -> bool:
    return not text or text.strip(" .*_").casefold() in _NOTHING or text.strip().casefold() in _NOTHING


# What a hosted vision model's image loader decodes as it is, and the longest side worth sending
# (a larger image is downscaled by the model anyway, after a longer download).
_MODEL_READS = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
MODEL_SIDE_PX = 2048


class PillowPictures(Pictures):
    """The image checked in full (`inspect_image`, one decode), then its thumbnail and, for a
    format or size a hosted model may not take, a JPEG copy (EXIF and XMP kept), within `limits`."""

    def __init__(self, limits: ImageLimits = ImageLimits()):
        self.limits = limits

    def prepare(self, body: bytes, content_type: str) -> Prepared:
        info = inspect_image(body, self.limits)
        readable = content_type.split(";", 1)[0].strip() in _MODEL_READS \
            and max(info.width, info.height) <= MODEL_SIDE_PX * 2
        return Prepared(thumbnail=thumbnail(body, self.limits),
                        for_model=None if readable else self._copy(body))

    def _copy(self, body: bytes) -> bytes:
        frame = first_frame(body, self.limits, max_side=MODEL_SIDE_PX)
        # The copy keeps the EXIF and XMP that describe the picture (the local stand-in of the
        # model reads its description from them); the orientation is already applied.
        with _opened(body, self.limits) as (image, _info):
            exif, xmp = image.getexif(), image.info.get("xmp")
        exif.pop(0x0112, None)
        out = io.BytesIO()
        try:
            frame.save(out, "JPEG", quality=90, exif=exif.tobytes(), **({"xmp": xmp} if xmp else {}))
        except Exception:  # noqa: BLE001 - a metadata block Pillow cannot write back: the picture alone
            out = io.BytesIO()
            frame.save(out, "JPEG", quality=90)
        return out.getvalue()
