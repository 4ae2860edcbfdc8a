"""A constructed recording: real speech at known offsets in a long track of other real speech.

The pieces are cut from the fixture clips (JFK's inaugural excerpt, two LJSpeech sentences, the
English half of the AutoCut video), each cut at the quietest point near a word boundary found
with Whisper's word timestamps. Markers are phrases spoken exactly once, at a known second;
the filler between them is the other pieces in a shuffled order with pauses of varied length,
so the track is speech throughout, as a talk or podcast is, and no marker's words are in the
filler. Written as 16 kHz mono 16-bit PCM WAV, one piece at a time, so memory stays small
whatever the length.

    from bench.recording import build_recording
    markers = build_recording(Path("/tmp/hour.wav"), minutes=60)   # [Marker(name, phrase, offset_s, end_s)]

    python -m bench.recording /tmp/hour.wav 60     # writes it and prints the markers as JSON
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import sys
import wave
from collections.abc import Sequence
from pathlib import Path

RATE = 16000
REPO = Path(__file__).resolve().parents[1]
_SEARCHED = (REPO / "tests" / "fixtures", REPO.parent / "shared" / "fixtures" / "speech")


@dataclasses.dataclass(frozen=True)
class Piece:
    source: str  # a file under tests/fixtures or ../shared/fixtures/speech
    start_s: float  # nominal cut points in the source, moved to the quietest point within 0.3 s
    end_s: float
    phrase: str  # what is said (the reference transcript)


PIECES = {
    "jfk_intro": Piece("jfk.flac", 0.0, 2.6, "And so my fellow Americans"),
    "jfk_ask": Piece("jfk.flac", 2.6, 11.0,
                     "ask not what your country can do for you, ask what you can do for your country"),
    "printing": Piece("ljspeech/LJ001-0001.wav", 0.0, 4.4,
                      "Printing, in the only sense with which we are at present concerned"),
    "crafts": Piece("ljspeech/LJ001-0001.wav", 4.4, 9.66,
                    "differs from most if not from all the arts and crafts represented in the Exhibition"),
    "modern": Piece("ljspeech/LJ001-0002.wav", 0.0, 1.9, "in being comparatively modern"),
    "autocut_hello": Piece("autocut_test001.mp4", 5.1, 7.8, "Hello, my name is AutoCut"),
    "autocut_testing": Piece("autocut_test001.mp4", 7.8, 10.26, "This is a video for testing"),
}
MARKERS = ("jfk_ask", "printing", "autocut_testing", "modern")
FILLER = ("jfk_intro", "crafts", "autocut_hello")
# Only the clips copied into tests/fixtures: for tests that must not depend on ../shared.
TEST_MARKERS = ("jfk_ask",)
TEST_FILLER = ("autocut_hello", "autocut_testing", "jfk_intro")


@dataclasses.dataclass(frozen=True)
class Marker:
    name: str
    phrase: str
    offset_s: float  # where its piece starts in the recording
    end_s: float


def build_recording(path: Path, minutes: float, *, markers: Sequence[str] = MARKERS,
                    filler: Sequence[str] = FILLER, at: Sequence[float] | None = None,
                    seed: int = 0) -> list[Marker]:
    """Write a `minutes`-long WAV to `path` with each of `markers` spoken once; their true offsets.

    `at` gives each marker's offset in seconds (placed at the first piece boundary at or after
    it); by default they are spread over the whole length, one per equal stretch, at a random
    point of its middle half, so none sits on a round multiple of a chunk's length.
    """
    import numpy as np

    total = int(minutes * 60 * RATE)
    rng = random.Random(seed)
    if at is None:
        stretch = minutes * 60 / len(markers)
        at = [stretch * (k + rng.uniform(0.25, 0.75)) for k in range(len(markers))]
    if len(at) != len(markers) or list(at) != sorted(at):
        raise ValueError("one offset per marker, in increasing order")
    pending = sorted(zip(at, markers))
    placed: list[Marker] = []
    written = 0
    order: list[str] = []
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)

        def put(samples) -> None:
            nonlocal written
            samples = samples[: total - written]
            out.writeframes(samples.astype("<i2").tobytes())
            written += len(samples)

        while written < total:
            if pending and written >= pending[0][0] * RATE:
                _, name = pending.pop(0)
                audio = _audio(name)
                placed.append(Marker(name, PIECES[name].phrase, written / RATE, (written + len(audio)) / RATE))
            else:
                if not order:
                    order = list(filler)
                    rng.shuffle(order)
                audio = _audio(order.pop())
            put(audio)
            put(np.zeros(int(rng.uniform(0.3, 1.5) * RATE), dtype=np.int16))
    if pending:
        raise ValueError(f"markers past the end of a {minutes}-minute recording: {[n for _, n in pending]}")
    return placed


def speech_file(name: str) -> Path:
    for folder in _SEARCHED:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{name} is in none of {[str(f) for f in _SEARCHED]}")


def decode(path: Path):
    """A media file's first audio stream as 16 kHz mono int16 samples."""
    import av
    import numpy as np

    parts = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                parts.append(resampled.to_ndarray().reshape(-1))
        for resampled in resampler.resample(None):
            parts.append(resampled.to_ndarray().reshape(-1))
    return np.concatenate(parts)


@functools.cache
def _audio(name: str):
    piece = PIECES[name]
    samples = decode(speech_file(piece.source))
    return samples[_quiet_point(samples, piece.start_s):_quiet_point(samples, piece.end_s)].copy()


def _quiet_point(samples, at_s: float, reach_s: float = 0.3) -> int:
    """The sample index of the quietest 20 ms within `reach_s` of `at_s` (the clip's ends stay put)."""
    import numpy as np

    at = int(at_s * RATE)
    if at <= 0 or at >= len(samples):
        return min(max(at, 0), len(samples))
    step = RATE // 50
    lo, hi = max(0, at - int(reach_s * RATE)), min(len(samples) - step, at + int(reach_s * RATE))
    starts = range(lo, max(lo + 1, hi), step // 2)
    energy = [float(np.abs(samples[s:s + step].astype(np.int32)).sum()) for s in starts]
    return starts[int(np.argmin(energy))] + step // 2


if __name__ == "__main__":
    target, length = Path(sys.argv[1]), float(sys.argv[2])
    print(json.dumps([dataclasses.asdict(m) for m in build_recording(target, length)], indent=1))
