"""A long recording from a slow origin, end to end through the production path (issue 14): the
submission answers at once, the fetch function streams the body in invocations that continue with
Range requests, the local Replicate transcribes it (in windows) and embeds it by webhook, and a
phrase spoken late is found within seconds of where it is said.

A shortened recording (minutes, not the hour of the benchmark) keeps it within CI's time: the
same code paths, with FETCH_SLICE_S short enough that the fetch takes several invocations."""

from __future__ import annotations

import time

import httpx
import pytest

from bench.recording import TEST_FILLER, TEST_MARKERS, build_recording
from devstack.origin import Origin
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
RATE = 1 * MiB  # bytes a second: a slow podcast host
MARKER_AT_S = 200.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "talk.wav"
    (marker,) = build_recording(path, minutes=4, markers=TEST_MARKERS, filler=TEST_FILLER, at=[MARKER_AT_S])
    return path, marker


def test_a_long_recording_from_a_slow_origin_is_found_at_the_right_second(tmp_path, recording):
    path, marker = recording
    size = path.stat().st_size
    assert size > 7 * MiB, "larger than one fetch part: fetched in several invocations"
    with Origin() as origin:
        url = origin.put("/talk.wav", path, "audio/wav") + f"?rate={RATE}"
        running = RunningStack(tmp_path / "long", EMBEDDER_BACKEND="replicate", FETCH_PART_BYTES=str(5 * MiB),
                               FETCH_SLICE_S="3")
        try:
            started = time.monotonic()
            answer = running.http.post("/api/assets", json={"url": url})
            took = time.monotonic() - started
            asset = answer.json()
            assert answer.status_code == 202 and asset["status"] == "FETCHING", asset
            assert took < 2, f"the submission took {took:.1f} s"
            assert asset["size_bytes"] == size and asset["fetched_bytes"] == 0
            seen = _progress(running, asset["id"])
            done = running.wait_for(asset["id"], timeout_s=600, poll_s=0.5)
            assert done["status"] == "SEARCHABLE", done
            assert done["size_bytes"] == size and done["sha256"]
            assert any(0 < b < size for b in seen), f"progress was shown while fetching: {seen}"
            ranges = [r["range"] for r in origin.requests if r["range"]]
            assert ranges and all(r.startswith("bytes=") for r in ranges), "the fetch went on with Range requests"

            results = running.http.get("/api/search", params={"q": marker.phrase}).json()["results"]
            top = results[0]
            assert top["asset"]["id"] == asset["id"]
            assert abs(top["start_s"] - marker.offset_s) < 30, (top["start_s"], marker)
            assert top["end_s"] - top["start_s"] <= 35, "a timed passage, not a minute of speech"
        finally:
            running.stop()


def _progress(running: RunningStack, asset_id: str) -> list[int]:
    """fetched_bytes as the API shows it while the asset is FETCHING."""
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            asset = running.http.get(f"/api/assets/{asset_id}").json()
        except httpx.TransportError:
            break
        if asset["status"] != "FETCHING":
            break
        seen.append(asset["fetched_bytes"])
        time.sleep(0.5)
    return seen
