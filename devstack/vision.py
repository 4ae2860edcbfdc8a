"""The local stand-in of the vision model (lucataco/qwen2-vl-7b-instruct) that the local Replicate
serves: the same answer format as the production prompt asks for (adapters/images.py), made by
real engines rather than a language model.

The text is RapidOCR's reading of the first frame (devstack/ocr.py). The description is taken
only from the image's own metadata (EXIF, XMP, IPTC, PNG text), its sources named in the header's
parentheses, and is `NONE` when there is none: a caption made up here would be indexed and found
as if it were true.
"""

from __future__ import annotations

from allthethings.adapters.images import ImageLimits, first_frame, metadata_description
from devstack import ocr

# RapidOCR shrinks larger pictures to about this size for detection anyway; doing it before the
# engine sees them keeps a 50-megapixel photo from costing 150 MB of array.
OCR_MAX_SIDE = 2000


def read_image(body: bytes, limits: ImageLimits = ImageLimits()) -> str:  # noqa: B008 - frozen, shared safely
    """The model's answer for an image: its metadata description and the text OCR reads in its
    first frame. ExtractionFailed (the same reasons as inspect_image) when it cannot be read."""
    frame = first_frame(body, limits, max_side=OCR_MAX_SIDE)
    return answer(metadata_description(body), ocr.lines(frame))


def answer(described: list[tuple[str, str]], lines: list[str]) -> str:
    """The answer in the contract's format: `DESCRIPTION (<sources>): <paragraph>` and `TEXT:`."""
    if described:
        header = f"DESCRIPTION ({_sources([source for source, _ in described])}): {_paragraph(described)}"
    else:
        header = "DESCRIPTION (none): NONE"
    text = "\n".join(" ".join(line.split()) for line in lines if line.strip()) or "NONE"
    return f"{header}\nTEXT:\n{text}"


def _paragraph(described: list[tuple[str, str]]) -> str:
    """The texts as one paragraph, a full stop between two only where the first has none: a
    single source comes out exactly as the image carries it."""
    texts = [" ".join(text.split()) for _source, text in described]
    return " ".join([text if text[-1] in ".!?…" else f"{text}." for text in texts[:-1]] + texts[-1:])


def _sources(sources: list[str]) -> str:
    """`XMP dc:title, dc:description`: a family named once for the sources that follow it."""
    named = []
    family = None
    for source in sources:
        head, _, field = source.partition(" ")
        named.append(field if head == family and field else source)
        family = head
    return ", ".join(named)
