"""A podcast episode with a publisher's transcript is indexed from it, with its timings, and
costs no Whisper prediction; a transcript that cannot be used falls back to Whisper."""

import pytest

from allthethings.adapters.fetch import vetted_addresses
from allthethings.domain.assets import Status
from allthethings.services.embeddings import apply_embedding_prediction
from allthethings.services.process_asset import process_asset
from allthethings.services.submit_asset import submit_asset
from allthethings.services.transcription import TRANSCRIPT_MAX_BYTES, apply_transcription_prediction
from tests.fakes import FakeEmbedder, FakeFetcher, fake_deps, word_vector

FLAC = b"fLaC\x00\x00\x00\x22" + bytes(200)
EPISODE = "https://cdn.test/episodes/12.flac"
TRANSCRIPT = "https://cdn.test/episodes/12.vtt"
VTT = b"""WEBVTT

NOTE Edited by hand.

00:00:01.000 --> 00:00:04.500 align:start
<v Ada>Lighthouse keepers trimmed the wicks at dusk.</v>

00:00:04.500 --> 00:00:09.000
<v Ada>They polished the lenses through the night.</v>

00:01:30.000 --> 00:01:36.250
<v Grace>Storms cut the keepers off for weeks on the rock towers.</v>
"""
WHISPER_SEGMENTS = [{"id": 0, "start": 0.0, "end": 6.0, "text": " Whisper heard the lighthouse keepers"}]


class GuardedFetcher(FakeFetcher):
    """The fake fetcher behind the real address policy: a host that is, or resolves to, a
    non-public address is refused (InvalidInput) before anything is fetched, as in production."""

    names = {"cdn.test": ["93.184.216.34"], "intranet.test": ["10.0.0.7"]}

    def open(self, url, limits, **kw):
        from urllib.parse import urlsplit

        vetted_addresses(urlsplit(url).hostname, 443, resolver=lambda host, _port: self.names.get(host, []))
        return super().open(url, limits, **kw)


def episode(deps, transcript_url=TRANSCRIPT, transcript_type="text/vtt"):
    """A podcast episode whose recording is staged and which a feed said has a transcript."""
    deps.fetcher.pages[EPISODE] = ("audio/flac", FLAC)
    asset, _ = submit_asset(EPISODE, deps)
    held = deps.store.assets[asset.id]  # as the feed's submission records them
    held.title, held.transcript = "Episode 12: Keepers", {"url": transcript_url, "type": transcript_type}
    return asset.id


def guarded_deps(**kw):
    return fake_deps(fetcher=GuardedFetcher(), **kw)


def test_a_transcript_is_used_and_no_whisper_prediction_is_started():
    deps = guarded_deps(embedder=FakeEmbedder(pending=True))
    deps.fetcher.pages[TRANSCRIPT] = ("text/vtt; charset=utf-8", VTT)
    asset_id = episode(deps)
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.GENERATING_EMBEDDINGS
    assert deps.transcriber.submitted == []
    assert deps.metrics.counts["predictions_created"] == 1, "the embedding prediction only"
    assert deps.metrics.counts["publisher_transcripts_used"] == 1
    assert "publisher_transcripts_failed" not in deps.metrics.counts
    assert process_asset(asset_id, deps) is Status.GENERATING_EMBEDDINGS
    assert deps.fetcher.calls.count(TRANSCRIPT) == 1, "a redelivered message fetches nothing again"


def test_the_chunks_carry_the_transcripts_timings_and_the_asset_becomes_searchable_after_embeddings():
    deps = guarded_deps(embedder=FakeEmbedder(pending=True))
    deps.fetcher.pages[TRANSCRIPT] = ("text/vtt", VTT)
    asset_id = episode(deps)
    process_asset(asset_id, deps, webhook_base="https://api.test")
    chunks = deps.store.chunks(asset_id)
    assert chunks[0].text.startswith("Ada: Lighthouse keepers trimmed the wicks")
    assert chunks[0].start_s == 1.0 and chunks[-1].end_s == 96.25
    assert any(c.start_s == 90.0 and "Grace: Storms" in c.text for c in chunks), \
        "the minute-long gap starts a new chunk (CHUNK_MAX_SECONDS)"
    embeddings = {"id": deps.store.get(asset_id).prediction_id, "status": "succeeded",
                  "output": [{"embedding": word_vector(c.text)} for c in chunks]}
    asset = apply_embedding_prediction(asset_id, embeddings, deps)
    assert asset.status is Status.SEARCHABLE and asset.chunk_count == len(chunks)
    assert asset.title == "Episode 12: Keepers" and asset.staged_key, "the recording stays the asset's media"
    assert deps.transcriber.submitted == []


def fell_back_to_whisper(deps, asset_id):
    """The recording went to Whisper as it would without a transcript, and its delivery indexes it."""
    asset = deps.store.get(asset_id)
    assert asset.status is Status.PROCESSING and asset.prediction_id == "t1"
    ((audio_url, webhook),) = deps.transcriber.submitted
    assert audio_url.startswith("https://staging.test/staged/")
    assert webhook == f"https://api.test/webhooks/audio/{asset_id}"
    assert deps.metrics.counts["publisher_transcripts_failed"] == 1
    assert "publisher_transcripts_used" not in deps.metrics.counts
    body = {"id": "t1", "status": "succeeded", "output": {"segments": WHISPER_SEGMENTS}}
    assert apply_transcription_prediction(asset_id, body, deps).status is Status.SEARCHABLE
    assert deps.store.chunks(asset_id)[0].text == "Whisper heard the lighthouse keepers"


def test_an_unreachable_transcript_falls_back_to_whisper():
    deps = guarded_deps()  # the transcript's URL answers 404
    asset_id = episode(deps)
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.PROCESSING
    assert TRANSCRIPT in deps.fetcher.calls
    fell_back_to_whisper(deps, asset_id)


@pytest.mark.parametrize("served", [
    ("text/html", b"<html><body><p>Keepers trimmed the wicks.</p></body></html>"),
    ("text/vtt", b"WEBVTT\n\nNOTE nothing but a comment\n"),
    ("application/json", b'{"version": "1.0.0", "segments": "soon"}'),
    ("text/vtt", b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(64)),
])
def test_an_unparseable_transcript_falls_back_to_whisper(served):
    deps = guarded_deps()
    deps.fetcher.pages[TRANSCRIPT] = served
    asset_id = episode(deps, transcript_type=served[0])
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.PROCESSING
    fell_back_to_whisper(deps, asset_id)


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/transcript.vtt",
                                 "http://127.0.0.1:8080/12.vtt", "https://intranet.test/12.vtt"])
def test_a_transcript_at_a_private_address_falls_back_to_whisper_without_being_fetched(url):
    deps = guarded_deps()
    deps.fetcher.pages[url] = ("text/vtt", VTT)  # only the address policy stands between it and us
    asset_id = episode(deps, transcript_url=url)
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.PROCESSING
    assert url not in deps.fetcher.calls
    fell_back_to_whisper(deps, asset_id)


def test_a_transcript_over_the_cap_falls_back_to_whisper():
    deps = guarded_deps()
    deps.fetcher.pages[TRANSCRIPT] = ("text/vtt", VTT + b"\n" * (TRANSCRIPT_MAX_BYTES - len(VTT) + 1))
    asset_id = episode(deps)
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.PROCESSING
    fell_back_to_whisper(deps, asset_id)


def test_a_transcript_longer_than_it_said_is_cut_off_at_the_cap_and_falls_back_to_whisper():
    class Chunked(GuardedFetcher):
        """Announces no size (a chunked response), so only reading the body can find it too long."""

        def open(self, url, limits, **kw):
            download = super().open(url, limits, **dict(kw, limit=2 ** 40))
            download.total = None
            return download

    deps = fake_deps(fetcher=Chunked())
    deps.fetcher.pages[TRANSCRIPT] = ("text/vtt", VTT + b"\n" * TRANSCRIPT_MAX_BYTES)
    asset_id = episode(deps)
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.PROCESSING
    fell_back_to_whisper(deps, asset_id)


def test_a_malformed_transcript_record_falls_back_to_whisper():
    deps = guarded_deps()
    asset_id = episode(deps)
    deps.store.assets[asset_id].transcript = {"href": TRANSCRIPT}
    assert process_asset(asset_id, deps, webhook_base="https://api.test") is Status.PROCESSING
    fell_back_to_whisper(deps, asset_id)


def test_a_recording_without_a_transcript_counts_nothing_of_transcripts():
    deps = guarded_deps()
    deps.fetcher.pages[EPISODE] = ("audio/flac", FLAC)
    asset, _ = submit_asset(EPISODE, deps)
    assert process_asset(asset.id, deps, webhook_base="https://api.test") is Status.PROCESSING
    assert len(deps.transcriber.submitted) == 1
    assert not {"publisher_transcripts_used", "publisher_transcripts_failed"} & set(deps.metrics.counts)
