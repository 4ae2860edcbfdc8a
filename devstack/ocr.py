"""The local OCR engine: RapidOCR (PaddleOCR's models as ONNX, shipped inside the
`rapidocr-onnxruntime` wheel), one per process, loaded on first use.

Used by the local stand-ins of the production services that read text in pictures: the vision
model the local Replicate serves, and the local Textract.
"""

from __future__ import annotations

import threading

_engine = None
_lock = threading.Lock()


def _ocr():
    global _engine
    if _engine is None:
        from rapidocr_onnxruntime import RapidOCR

        _engine = RapidOCR()
    return _engine


def lines(image) -> list[str]:
    """The lines of text in a PIL image, top to bottom as the engine orders them. One image at a
    time per process: the engine's ONNX sessions already use every core."""
    import numpy

    array = numpy.asarray(image.convert("RGB"))[:, :, ::-1]  # RapidOCR reads BGR, as OpenCV does
    with _lock:
        result, _ = _ocr()(array)
    return [text.strip() for _box, text, _score in (result or []) if text and text.strip()]
