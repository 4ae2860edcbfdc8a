"""Stopping `make run` on the AWS emulator (LOCAL_AWS=moto) half-way loses no asset: on the next
start, what can resume resumes and what cannot (the emulator forgot its staged body and message)
is marked failed, visibly, instead of sitting in PROCESSING for ever. On the embedded default
nothing is forgotten: tests/e2e/test_embedded_aws.py."""

from __future__ import annotations

import pytest

from allthethings.adapters.sqlite_store import SqliteStore
from allthethings.domain.assets import Asset, Chunk, Kind, Status
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def test_a_restart_resumes_embedding_and_fails_what_lost_its_staged_body_and_a_retry_fetches_it_again(
        tmp_path, fixture_server):
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(str(data / "allthethings.db"), 384, "all-MiniLM-L6-v2")
    lost = Asset.new(f"{fixture_server}/text/lighthouse-keeping.txt", content_type="text/plain", kind=Kind.TEXT,
                     staged_key="staged/gone", size_bytes=10)
    store.add(lost)
    store.move(lost.id, Status.PROCESSING)
    chunked = Asset.new("http://x.test/chunked.txt", content_type="text/plain", kind=Kind.TEXT,
                        staged_key="staged/gone-too", size_bytes=10)
    store.add(chunked)
    store.move(chunked.id, Status.PROCESSING)
    store.put_chunks(chunked.id, [Chunk(chunked.id, 0, "Keepers lit the lamp at sunset.")])
    store.move(chunked.id, Status.PROCESSED, chunk_count=1)
    waiting = Asset.new("http://x.test/waiting.flac", content_type="audio/flac", kind=Kind.AUDIO,
                        staged_key="staged/gone-three", size_bytes=10)
    store.add(waiting)
    for status in (Status.PROCESSING, Status.PROCESSED):
        store.move(waiting.id, status)
    store.put_chunks(waiting.id, [Chunk(waiting.id, 0, "a transcript", 0.0, 1.0)])
    store.move(waiting.id, Status.GENERATING_EMBEDDINGS, chunk_count=1, prediction_id="gone")
    store.close()

    running = RunningStack(data, LOCAL_AWS="moto")  # the emulator forgets (the embedded parts: test_embedded_aws)
    try:
        assert running.wait_for(chunked.id, timeout_s=120)["status"] == "SEARCHABLE"
        failed = running.http.get(f"/api/assets/{lost.id}").json()
        assert failed["status"] == "PROCESSING_ERROR" and "retry it" in failed["error"]
        orphan = running.http.get(f"/api/assets/{waiting.id}").json()
        assert orphan["status"] == "EMBEDDINGS_ERROR" and "retry it" in orphan["error"]
        # Its staged body died with the emulator: a retry fetches the URL again, and it is indexed.
        assert running.http.post(f"/api/assets/{lost.id}/retry").status_code == 202
        assert running.wait_for(lost.id, timeout_s=120)["status"] == "SEARCHABLE"
        results = running.http.get("/api/search", params={"q": "who lit the lamp"}).json()["results"]
        assert results[0]["asset"]["id"] == chunked.id
    finally:
        running.stop()
