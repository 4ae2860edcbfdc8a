"""The local stack on its embedded queues and bucket (LOCAL_AWS=embedded, issue 15): the same
handlers index a page, a recording through the local Replicate (which fetches the staged body
from the stack's own presigned URL) and a large body fetched in parts; and after `kill -9` with
work in flight, a restart on the same DATA_DIR carries every asset to SEARCHABLE with no user
action, no error and no duplicate chunks, including an asset the kill caught between its record
and its queued work."""

from __future__ import annotations

import sqlite3
import time

import pytest

from devstack.origin import Origin
from tests.conftest import FIXTURES
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
FINAL = ("SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR")


def test_the_embedded_parts_carry_a_page_a_recording_and_a_large_body(tmp_path, fixture_server):
    running = RunningStack(tmp_path / "stack", LOCAL_AWS="embedded", EMBEDDER_BACKEND="replicate",
                           INLINE_FETCH_BYTES=str(256 * 1024), FETCH_PART_BYTES=str(5 * MiB))
    try:
        page = running.http.post("/api/assets", json={"url": f"{fixture_server}/text/lighthouse-keeping.txt"}).json()
        clip = running.http.post("/api/assets", json={"url": f"{fixture_server}/jfk.flac"}).json()
        with Origin() as origin:
            body = (b"ID3" + bytes(range(256)) * (11 * MiB // 256))
            url = origin.put("/big.mp3", body, "audio/mpeg") + f"?rate={8 * MiB}"
            big = running.http.post("/api/assets", json={"url": url}).json()
            assert big["status"] == "FETCHING"
            deadline = time.monotonic() + 60
            while running.http.get(f"/api/assets/{big['id']}").json()["status"] == "FETCHING":
                assert time.monotonic() < deadline, "the large body was not fetched"
                time.sleep(0.3)
        staged = running.http.get(f"/api/assets/{big['id']}").json()
        assert staged["size_bytes"] == len(body) and staged["status"] != "FETCHING"
        assert (tmp_path / "stack" / "aws" / "blobs" / "objects" / "staged" / big["id"]).stat().st_size == len(body)
        assert running.wait_for(page["id"])["status"] == "SEARCHABLE"
        assert running.wait_for(clip["id"])["status"] == "SEARCHABLE"
        results = running.http.get("/api/search", params={"q": "ask not what your country can do"}).json()["results"]
        assert results[0]["asset"]["id"] == clip["id"]
        assert not (tmp_path / "stack" / "aws-emulator.log").exists(), "no emulator was started"
        from allthethings.adapters.embedded_blobs import EmbeddedBlobs

        folder = tmp_path / "stack" / "aws"
        blobs = EmbeddedBlobs(folder / "blobs", running.url, (folder / "blob-secret").read_text().strip().encode())
        served = running.http.get(blobs.presigned_url(f"staged/{big['id']}", 60), headers={"Range": "bytes=0-2"})
        assert served.status_code == 206 and served.content == b"ID3", "a presigned URL answers Range requests"
        assert served.headers["content-type"] == "audio/mpeg", "with the type the body was staged with"
    finally:
        running.stop()


def test_after_kill_9_a_restart_carries_every_asset_to_searchable(tmp_path):
    data = tmp_path / "stack"
    text = (FIXTURES / "text" / "lighthouse-keeping.txt").read_text()
    with Origin() as origin:
        urls = [origin.put(f"/doc-{n}.txt", f"Document {n}. {text}".encode(), "text/plain") for n in range(40)]
        running = RunningStack(data, LOCAL_AWS="embedded", LOCAL_POLLERS="1")
        ids = [running.http.post("/api/assets", json={"url": u}).json()["id"] for u in urls]
        running.process.kill()  # kill -9, with work still queued or in flight
        running.process.wait(timeout=30)
        running.http.close()
        statuses = _statuses(data)
        assert any(s != "SEARCHABLE" for s in statuses.values()), f"the kill came too late to test anything: {statuses}"
        # A kill between storing an asset and queueing its work leaves an asset no message names:
        # made here by deleting the messages of some unfinished assets. The restart queues their
        # work (the sweeper would only after STUCK_AFTER_S, 15 minutes).
        orphans = [i for i, s in statuses.items() if s in ("SUBMITTED", "PROCESSING", "PROCESSED")][:3]
        assert orphans, statuses
        with sqlite3.connect(data / "aws" / "queues.db") as queues:
            for orphan in orphans:
                queues.execute("DELETE FROM messages WHERE body LIKE ?", (f'%"{orphan}"%',))

        again = RunningStack(data, LOCAL_AWS="embedded", API_KEYS=f"e2e={running.api_key}")
        try:
            done = {i: again.wait_for(i, timeout_s=240) for i in ids}
        finally:
            again.stop()
    assert {d["status"] for d in done.values()} == {"SEARCHABLE"}, {i: d.get("error") for i, d in done.items()}
    assert all(not d.get("error") for d in done.values())
    with sqlite3.connect(data / "allthethings.db") as db:
        duplicated = db.execute("SELECT asset_id, idx, COUNT(*) FROM chunks GROUP BY asset_id, idx "
                                "HAVING COUNT(*) > 1").fetchall()
    assert duplicated == []


def _statuses(data) -> dict[str, str]:
    with sqlite3.connect(data / "allthethings.db") as db:
        return dict(db.execute("SELECT id, status FROM assets").fetchall())
