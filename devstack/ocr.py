"""The local OCR engine: RapidOCR (PaddleOCR's models as ONNX, shipped inside the
`rapidocr-onnxruntime` wheel), one per process, loaded on first use.

Used by the local stand-ins of the production services that read text in pictures: the vision
model the local Replicate serves, and the local Textract.

The recognition model drops the spaces between English words when a line is small (under about
40 px high: `theharbourmasterrecorded`), which costs search both the words and their meaning;
enlarging the whole picture instead made detection lose lines. So lines are found on the picture
as it is, and each line is cut out and enlarged (Lanczos) to `LINE_PX` high before it is read.
"""

from __future__ import annotations

import threading

LINE_PX = 48
_PAD_PX = 2

_engine = None
_lock = threading.Lock()


def _ocr():
    global _engine
    if _engine is None:
        from rapidocr_onnxruntime import RapidOCR

        _engine = RapidOCR()
    return _engine


def _bgr(image):
    import numpy

    return numpy.asarray(image.convert("RGB"))[:, :, ::-1]  # RapidOCR reads BGR, as OpenCV does


def lines(image) -> list[str]:
    """The lines of text in a PIL image, top to bottom as the engine orders them. One image at a
    time per process: the engine's ONNX sessions already use every core."""
    from PIL import Image

    image = image.convert("RGB")
    found: list[str] = []
    with _lock:
        boxes, _ = _ocr()(_bgr(image), use_det=True, use_cls=False, use_rec=False)
        for box in boxes or []:
            xs, ys = [p[0] for p in box], [p[1] for p in box]
            crop = image.crop((max(0, int(min(xs)) - _PAD_PX), max(0, int(min(ys)) - _PAD_PX),
                               min(image.width, int(max(xs) + 0.5) + _PAD_PX),
                               min(image.height, int(max(ys) + 0.5) + _PAD_PX)))
            if crop.height < 2 or crop.width < 2:
                continue
            if crop.height < LINE_PX:
                scale = LINE_PX / crop.height
                crop = crop.resize((max(1, round(crop.width * scale)), LINE_PX), Image.LANCZOS)
            # The angle classifier turned upright lines of a real scan upside down (garbling them):
            # lines are read as they stand.
            read, _ = _ocr()(_bgr(crop), use_det=False, use_cls=False, use_rec=True)
            text = read[0][0].strip() if read and read[0] and read[0][0] else ""
            if text:
                found.append(text)
    return found
