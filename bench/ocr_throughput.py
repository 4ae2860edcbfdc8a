"""OCR throughput: a scanned PDF through the whole stack against the OCR engine alone.

    python -m bench.ocr_throughput [--pages 20]

The PDF is made of page images only (no text layer): each page is real prose (the STS Benchmark
dev sentences, in order) drawn at 150 dpi on US Letter, about 22 lines a page. The engine alone
renders every page as the local Textract does (pypdfium2, the longest side at most 2,000 px) and
reads it (RapidOCR, `devstack/ocr.py`), one page after another. The stack gets the PDF through
`POST /api/assets` and the figure is the time until it is SEARCHABLE (fetch, text-layer check,
one text-detection job, its notice, chunking page by page, embedding). Reports pages per second
both ways, their ratio (goal at least 0.8), the time to SEARCHABLE, the stack's peak RSS, and
whether two lines from the middle of each page find that page (the best chunk of the one result
is on it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import machine, peak_rss_mb, serve, start_stack, sts_sentences

WIDTH, HEIGHT, MARGIN, FONT_PX, LINE_PX = 1275, 1650, 110, 26, 44


def page_texts(pages: int) -> list[str]:
    sentences = iter(sts_sentences()[::2])
    texts = []
    for _ in range(pages):
        words, lines = [], []
        while len(lines) < 30:
            words.append(next(sentences))
            lines = textwrap.wrap(" ".join(words), 78)
        texts.append("\n".join(lines[:30]))
    return texts


def scanned_pdf(texts: list[str], path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("DejaVuSans.ttf", FONT_PX)
    except OSError:
        font = ImageFont.load_default(size=FONT_PX)
    images = []
    for text in texts:
        page = Image.new("L", (WIDTH, HEIGHT), 255)
        draw = ImageDraw.Draw(page)
        for n, line in enumerate(text.splitlines()):
            draw.text((MARGIN, MARGIN + n * LINE_PX), line, fill=0, font=font)
        images.append(page)
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=150)


def engine_alone(path: Path) -> float:
    """Seconds to render and read every page, as the local Textract does (its own page renderer)."""
    from devstack.ocr import lines
    from devstack.textract import MAX_SIDE_PX, pdf_images

    started = time.perf_counter()
    for image in pdf_images(path.read_bytes(), MAX_SIDE_PX):
        lines(image)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="allthethings-ocr-"))
    (work / "files").mkdir()
    texts = page_texts(args.pages)
    pdf = work / "files" / "scanned.pdf"
    scanned_pdf(texts, pdf)

    from PIL import Image

    from devstack.ocr import lines  # load the engine outside the timing, as the stack's is after its first page

    lines(Image.new("L", (200, 60), 255))
    engine_s = engine_alone(pdf)

    base, server = serve(work / "files")
    stack = start_stack(work / "stack", ALLOW_PRIVATE_URLS="true")
    try:
        stack.http.get("/api/search", params={"q": "warm up the model"})
        started = time.perf_counter()
        asset = stack.http.post("/api/assets", json={"url": f"{base}/scanned.pdf"}).json()
        done = stack.wait_for(asset["id"], timeout_s=60 * args.pages, poll_s=0.5)
        stack_s = time.perf_counter() - started
        found = 0
        for number, text in enumerate(texts, 1):
            # Two lines from the middle of the page (STS sentences repeat one another's words, so
            # one short sentence alone may be closer to another page).
            passage = " ".join(text.splitlines()[12:14])
            results = stack.http.get("/api/search", params={"q": passage, "limit": 1}).json()["results"]
            found += bool(results) and (results[0].get("location") or {}).get("page") == number
        rss = peak_rss_mb(stack.process.pid)
    finally:
        stack.stop()
        server.shutdown()

    report = {
        "machine": machine(),
        "pages": args.pages,
        "status": done["status"],
        "chunks": done.get("chunk_count"),
        "engine_pages_per_s": round(args.pages / engine_s, 3),
        "stack_pages_per_s": round(args.pages / stack_s, 3),
        "ratio": round(engine_s / stack_s, 3),
        "engine_s": round(engine_s, 1),
        "time_to_searchable_s": round(stack_s, 1),
        "pages_found_by_two_of_their_lines": f"{found}/{args.pages}",
        "peak_rss_mb": rss,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
