"""The pure domain: statuses and transitions, URLs, content decisions, chunking, cursors."""

import json
from pathlib import Path

import pytest

from allthethings.adapters.models import packaged_tokenizer
from allthethings.config import load_settings
from allthethings.domain import cursor
from allthethings.domain.assets import RETRY_FROM, TRANSITIONS, Kind, Status, can_move, check_asset_id, normalise_url
from allthethings.domain.chunking import Segment, chunk_segments, chunk_spans, chunk_text
from allthethings.domain.content import Decision, SizeLimits, decide, sniff
from allthethings.domain.errors import InvalidInput, UnsupportedContentType
from allthethings.domain.network import ipv4_spelling

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_status_only_moves_forward():
    order = [Status.FETCHING, Status.SUBMITTED, Status.PROCESSING, Status.PROCESSED, Status.GENERATING_EMBEDDINGS,
             Status.SEARCHABLE]
    for i, current in enumerate(order):
        for earlier in order[:i]:
            assert not can_move(current, earlier), f"{current} must not go back to {earlier}"


def test_a_searchable_asset_never_moves_and_a_failed_one_only_by_a_retry_to_the_step_that_failed():
    assert TRANSITIONS[Status.SEARCHABLE] == frozenset()
    assert RETRY_FROM[Status.PROCESSING_ERROR] == Status.SUBMITTED
    assert TRANSITIONS[Status.PROCESSING_ERROR] == {Status.SUBMITTED, Status.FETCHING}, "FETCHING: fetched again"
    assert RETRY_FROM[Status.EMBEDDINGS_ERROR] == Status.PROCESSED
    assert TRANSITIONS[Status.EMBEDDINGS_ERROR] == {Status.PROCESSED, Status.SUBMITTED, Status.FETCHING}, \
        "SUBMITTED, FETCHING: fetched again"
    assert {s for s in Status if s.is_final} == {Status.SEARCHABLE, *RETRY_FROM}


def test_errors_are_reachable_only_from_their_own_phase():
    assert can_move(Status.PROCESSING, Status.PROCESSING_ERROR)
    assert not can_move(Status.PROCESSING, Status.EMBEDDINGS_ERROR)
    assert can_move(Status.GENERATING_EMBEDDINGS, Status.EMBEDDINGS_ERROR)
    assert not can_move(Status.SEARCHABLE, Status.EMBEDDINGS_ERROR)


@pytest.mark.parametrize("raw, expected", [
    ("http://Example.COM", "http://example.com/"),
    ("https://example.com:443/a?b=1#frag", "https://example.com/a?b=1"),
    ("http://example.com:8080/x", "http://example.com:8080/x"),
    ("  https://example.com/path  ", "https://example.com/path"),
    ("http://[::1]:8000/", "http://[::1]:8000/"),
    # numeric hosts in every spelling the C resolver accepts are one address, so one URL
    ("http://2130706433/a", "http://127.0.0.1/a"),
    ("http://0x7f.1/a", "http://127.0.0.1/a"),
    ("http://0177.0.0.1/a", "http://127.0.0.1/a"),
    ("http://0x7F000001:8080/a", "http://127.0.0.1:8080/a"),
    # an IPv4-mapped IPv6 address is the IPv4 address it delivers to
    ("http://[::FFFF:127.0.0.1]/", "http://127.0.0.1/"),
    ("http://[::ffff:7f00:1]:8080/x", "http://127.0.0.1:8080/x"),
    # a percent-escape in a host is the character (as browsers read it), never an IPv6 zone
    ("http://127%2E0%2E0%2E1:8190/", "http://127.0.0.1:8190/"),
    ("http://ex%61mple.com/", "http://example.com/"),
    ("http://[fe80::1%25eth0]/", "http://[fe80::1]/"),
])
def test_urls_are_normalised_to_one_spelling(raw, expected):
    assert normalise_url(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", None, 42, "example.com", "ftp://example.com/file", "file:///etc/passwd", "javascript:alert(1)",
    "http://", "http://exa mple.com/", "http://user:pw@example.com/", "http://example.com:99999/",
    "http://example.com/\x00", "https://" + "a" * 3000 + ".com/", "http://exa%2Fmple.com/", "http://a%00b.com/",
])
def test_malformed_urls_are_refused_with_a_message(raw):
    with pytest.raises(InvalidInput) as info:
        normalise_url(raw)
    assert info.value.message


def test_asset_ids_are_checked_before_any_lookup():
    assert check_asset_id("0123456789abcdef0123456789abcdef")
    for bad in ("", "abc", "0123456789ABCDEF0123456789ABCDEF", "../../etc/passwd", "g" * 32):
        with pytest.raises(InvalidInput):
            check_asset_id(bad)


def test_the_bytes_decide_over_a_lying_header():
    pdf = (FIXTURES / "pdf" / "fake-memo.pdf").read_bytes()
    html = (FIXTURES / "html" / "bbc-1" / "source.html").read_bytes()
    assert decide(pdf, "text/html", "http://x/page.html").kind is Kind.PDF
    assert decide(html, "application/pdf", "http://x/file.pdf").kind is Kind.HTML
    assert decide((FIXTURES / "jfk.flac").read_bytes(), "text/plain", "http://x/notes.txt").kind is Kind.AUDIO
    assert decide(b"\x89PNG\r\n\x1a\n" + bytes(64), "audio/flac", "http://x/a.flac").kind is Kind.IMAGE
    with pytest.raises(UnsupportedContentType):
        decide(b"PK\x03\x04" + bytes(26) + b"notes.txt", "application/pdf", "http://x/a.pdf")


@pytest.mark.parametrize("head, declared, content_type, kind", [
    (b"fLaC\x00\x00\x00\x22", None, "audio/flac", Kind.AUDIO),
    (b"ID3\x04\x00\x00\x00", "application/octet-stream", "audio/mpeg", Kind.AUDIO),
    (b"RIFF\x24\x08\x00\x00WAVEfmt ", None, "audio/wav", Kind.AUDIO),
    (b"OggS\x00\x02", None, "audio/ogg", Kind.AUDIO),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00", None, "audio/mp4", Kind.AUDIO),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00", "text/plain", "video/mp4", Kind.VIDEO),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00", None, "video/quicktime", Kind.VIDEO),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", None, "video/webm", Kind.VIDEO),
    (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", None, "video/x-matroska", Kind.VIDEO),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00", "audio/mp4", "video/mp4", Kind.AUDIO),
])
def test_audio_and_video_are_recognised_by_their_bytes(head, declared, content_type, kind):
    decision = decide(head, declared, "http://x/file")
    assert (decision.content_type, decision.kind) == (content_type, kind)


def test_text_is_refined_by_header_and_extension():
    text = (FIXTURES / "text" / "sourdough.md").read_bytes()
    assert decide(text, None, "http://x/sourdough.md").content_type == "text/markdown"
    assert decide(text, "text/markdown; charset=utf-8", "http://x/s").content_type == "text/markdown"
    assert decide(text, "application/octet-stream", "http://x/s").content_type == "text/plain"
    assert decide(b"<p>hi</p>", "text/plain", "http://x/a.txt").kind is Kind.TEXT
    assert decide(b"<!DOCTYPE html><title>x</title>", None, "http://x/").kind is Kind.HTML


@pytest.mark.parametrize("head, expected", [
    (b"\x89PNG\r\n\x1a\nrest", "image/png"),
    (b"PK\x03\x04zip", "application/zip"),
    (b"\x00\x01\x02binary", None),
    (b"\xef\xbb\xbfhello", "text/plain"),
    (b"  \n<html><body>", "text/html"),
    (b"plain words", "text/plain"),
    (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
])
def test_sniffing_reads_magic_numbers(head, expected):
    assert sniff(head) == expected


def test_a_declared_charset_is_kept_for_plain_text_only():
    assert decide(b"caf\xe9", "text/plain; charset=ISO-8859-1", "http://x/a.txt").content_type == \
        "text/plain; charset=iso-8859-1"
    assert decide(b"cafe", "text/plain; charset=utf-8", "http://x/a.txt").content_type == "text/plain"
    assert decide(b"<html>caf\xe9", "text/html; charset=iso-8859-1", "http://x/").content_type == "text/html"


def test_binary_garbage_is_unsupported():
    with pytest.raises(UnsupportedContentType):
        decide(bytes(range(256)) * 4, "text/plain", "http://x/a.txt")


@pytest.fixture(scope="module")
def minilm():
    return packaged_tokenizer("all-MiniLM-L6-v2")


def test_every_chunk_fits_the_model_when_tokenized_again(minilm):
    text = (FIXTURES / "text" / "lighthouse-keeping.txt").read_text() * 6
    chunks = chunk_text(text, minilm.spans(text), max_tokens=60, overlap=10)
    assert len(chunks) > 5
    for chunk in chunks:
        assert len(minilm.spans(chunk)) <= 60


def test_chunks_cover_the_whole_text_with_overlap(minilm):
    text = (FIXTURES / "text" / "lighthouse-keeping.txt").read_text()
    spans = chunk_spans(text, minilm.spans(text), max_tokens=50, overlap=10)
    assert spans[0][0] == text.index("The")
    assert spans[-1][1] == len(text.rstrip())
    for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
        assert a2 < b1, "consecutive chunks overlap"
        assert a2 > a1


def test_chunks_prefer_to_end_at_a_sentence(minilm):
    text = (FIXTURES / "text" / "lighthouse-keeping.txt").read_text()
    chunks = chunk_text(text, minilm.spans(text), max_tokens=60, overlap=8)
    assert sum(c.rstrip()[-1] in ".!?" for c in chunks[:-1]) >= len(chunks[:-1]) - 1


def test_a_text_shorter_than_the_window_is_one_chunk(minilm):
    assert chunk_text("A short note.", minilm.spans("A short note."), 200, 40) == ["A short note."]
    assert chunk_text("", [], 200, 40) == []


def test_a_word_longer_than_the_window_is_still_split(minilm):
    text = "x" * 5000
    chunks = chunk_text(text, minilm.spans(text), max_tokens=50, overlap=5)
    assert "".join(c for c in chunks).count("x") >= 5000
    assert all(len(minilm.spans(c)) <= 52 for c in chunks)


def test_bad_chunking_parameters_are_refused():
    with pytest.raises(ValueError):
        chunk_spans("abc", [(0, 3)], max_tokens=4, overlap=0)
    with pytest.raises(ValueError):
        chunk_spans("abc", [(0, 3)], max_tokens=40, overlap=20)


WORDS = ("harbour lantern keeper tide storm vessel rope signal shore beacon fog island cliff wave "
         "gull anchor").split()


def spoken(n: int, seconds_each: float, words_each: int = 8) -> list[Segment]:
    """`n` consecutive segments of `words_each` distinct words, `seconds_each` seconds long."""
    return [Segment(k * seconds_each, (k + 1) * seconds_each,
                    " ".join(f"{WORDS[(k + w) % len(WORDS)]}{k}" for w in range(words_each)) + ".")
            for k in range(n)]


def test_a_transcript_chunk_never_spans_more_than_the_maximum_seconds(minilm):
    segments = spoken(60, 4.0, words_each=4)
    token_only = chunk_segments(segments, minilm.spans, 200, 40)
    timed = chunk_segments(segments, minilm.spans, 200, 40, max_seconds=30)
    assert max(c.end_s - c.start_s for c in token_only) > 60, "the token budget alone allows long chunks"
    assert all(c.end_s - c.start_s <= 30 for c in timed)
    assert all(len(minilm.spans(c.text)) <= 200 for c in timed)
    assert [c.start_s for c in timed] == sorted({c.start_s for c in timed})
    assert timed[0].start_s == 0.0 and timed[-1].end_s == 240.0


def test_every_segment_is_in_a_timed_chunk_whose_times_bound_it(minilm):
    segments = spoken(40, 3.5)
    timed = chunk_segments(segments, minilm.spans, 200, 40, max_seconds=30)
    for seg in segments:
        holders = [c for c in timed if seg.text in c.text]
        assert holders, seg.text
        assert all(c.start_s <= seg.start_s and seg.end_s <= c.end_s for c in holders)


def test_consecutive_timed_chunks_share_a_short_segment(minilm):
    timed = chunk_segments(spoken(30, 4.0, words_each=3), minilm.spans, 200, 40, max_seconds=30)
    for before, after in zip(timed, timed[1:]):
        assert after.start_s < before.end_s, "no overlap between consecutive chunks"
        assert before.text.rsplit(". ", 1)[-1] == after.text.split(". ", 1)[0] + "."


def test_a_segment_longer_than_the_maximum_seconds_is_split_between_words_with_shared_out_times(minilm):
    text = " ".join(f"{WORDS[k % len(WORDS)]}{k}" for k in range(60))
    timed = chunk_segments([Segment(10.0, 105.0, text)], minilm.spans, 200, 40, max_seconds=30)
    assert len(timed) >= 4
    assert all(c.end_s - c.start_s <= 30 for c in timed)
    assert " ".join(c.text for c in timed) == text, "every word once, none cut"
    assert timed[0].start_s == 10.0 and abs(timed[-1].end_s - 105.0) < 1e-9
    assert all(a.end_s <= b.start_s for a, b in zip(timed, timed[1:]))


def test_a_short_segment_is_not_repeated_alone_when_the_next_one_does_not_fit_beside_it(minilm):
    segments = [Segment(0, 10, "alpha beta gamma."), Segment(10, 25, "delta epsilon zeta."),
                Segment(25, 28, "eta theta."), Segment(28, 57, "iota kappa lambda mu.")]
    timed = chunk_segments(segments, minilm.spans, 200, 40, max_seconds=30)
    assert [c.text for c in timed] == ["alpha beta gamma. delta epsilon zeta. eta theta.", "iota kappa lambda mu."]
    assert [(c.start_s, c.end_s) for c in timed] == [(0, 28), (28, 57)]


def test_without_a_maximum_duration_transcript_chunks_are_bounded_by_tokens_alone(minilm):
    timed = chunk_segments(spoken(20, 4.6, words_each=4), minilm.spans, 200, 40)
    assert len(timed) == 1 and (timed[0].start_s, timed[0].end_s) == (0.0, 92.0)
    with pytest.raises(ValueError):
        chunk_segments(spoken(2, 1.0), minilm.spans, 200, 40, max_seconds=0)


def test_cursors_round_trip_and_refuse_tampering():
    token = cursor.encode({"seq": 41})
    assert cursor.decode(token, "seq") == {"seq": 41}
    for bad in ("", "!!!", token[:-3] + "AAA", cursor.encode({"other": 1}), "x" * 600):
        with pytest.raises(InvalidInput):
            cursor.decode(bad, "seq")


@pytest.mark.parametrize("host", ["0", "00", "0x0", "127.1", "127.1.", "0177.0.0.1", "0x7f.1", "0X7F.1", "2130706433",
                                  "017700000001", "0xFFFFFFFF", "10.0.0.1", "1.2.3.4.5", "256.1", "1.16777216",
                                  "08.1.1.1", "0x", "1e1.0.0.1", "example.com", "0x+7f.1", "07_7.1", "+127.1",
                                  "0x7_f.1", "127. 1", "4294967296"])
def test_a_numeric_host_is_read_exactly_as_the_c_resolver_reads_it(host):
    import socket

    try:
        expected = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        expected = None
    got = ipv4_spelling(host)
    assert (str(got) if got else None) == expected


def test_fetch_size_limits_are_read_per_kind_with_units_and_bad_values_are_named():
    limits = load_settings({"MAX_BYTES_PDF": "5MiB", "MAX_BYTES_VIDEO": "2GiB", "MAX_BYTES_TEXT": "1000"}).size_limits
    assert (limits.pdf, limits.video, limits.text) == (5 * 1024 ** 2, 2 * 1024 ** 3, 1000)
    assert limits.html == SizeLimits().html and limits.ceiling == 2 * 1024 ** 3
    for bad in ("lots", "0", "-5", "5TB"):
        with pytest.raises(ValueError, match="MAX_BYTES_AUDIO"):
            load_settings({"MAX_BYTES_AUDIO": bad})


def test_a_processing_message_declares_its_kind_and_reads_back_as_the_same_task():
    from allthethings.domain.tasks import EmbedDocuments, ProcessAsset, from_message, to_message

    for task in (ProcessAsset("a" * 32, "https://api.test"), EmbedDocuments(("a" * 32, "b" * 32), None)):
        message = to_message(task)
        assert message["kind"] == task.kind
        assert from_message(json.loads(json.dumps(message))) == task


def test_a_message_queued_before_kinds_were_declared_is_still_understood():
    from allthethings.domain.tasks import EmbedDocuments, ProcessAsset, from_message

    assert from_message({"asset_id": "a" * 32, "webhook_base": "https://x"}) == ProcessAsset("a" * 32, "https://x")
    assert from_message({"asset_ids": ["a" * 32]}) == EmbedDocuments(("a" * 32,), None)


@pytest.mark.parametrize("message", [
    {"kind": "transcode", "asset_id": "a" * 32}, {"kind": "process_asset"}, {"kind": "embed_documents",
                                                                             "asset_ids": "a"}, ["a"]])
def test_a_processing_message_of_no_known_kind_or_shape_is_refused(message):
    from allthethings.domain.tasks import from_message

    with pytest.raises(ValueError):
        from_message(message)


@pytest.mark.parametrize("message, shown", [
    ("Invalid data found when processing input: /tmp/tmpab_12.wav", "Invalid data found when processing input: <file>"),
    ("cannot open '/var/task/models/m.bin'", "cannot open '<file>'"),
    ("the URL https://example.com/a/b.pdf answered HTTP 404", "the URL https://example.com/a/b.pdf answered HTTP 404"),
    ("one in 1/2 and and/or", "one in 1/2 and and/or"),
])
def test_a_message_for_the_user_keeps_urls_and_loses_server_file_paths(message, shown):
    from allthethings.domain.assets import without_paths

    assert without_paths(message) == shown


# -- where in a timed chunk the query's words are said (issue 14 item 3) ---------------------------

def test_a_recordings_result_starts_where_the_querys_words_are_said_not_at_the_chunks_start():
    from allthethings.domain.search import highlights, passage_start

    text = "the weather was fine that morning and then he said ask not what your country can do for you"
    spans = highlights(text, ["ask", "country"])
    at = passage_start(text, 100.0, 120.0, spans)
    said = 100.0 + 20.0 * text.index("ask") / len(text)
    assert said - 1.0 - 0.01 <= at <= said, "a second of lead-in before the first word of the cluster"
    assert passage_start(text, 100.0, 120.0, []) == 100.0, "a match by meaning alone keeps the chunk's start"
    assert passage_start("ask " + text, 100.0, 120.0, highlights("ask " + text, ["ask", "country"])) >= 100.0
    assert passage_start(text, 100.0, 100.0, spans) == 100.0


def _zip_head(first_entry: bytes, data: bytes = b"") -> bytes:
    """A ZIP's first local header: its entry stored, `data` its content (sizes at offsets 18 and 22)."""
    sizes = len(data).to_bytes(4, "little") * 2
    return (b"PK\x03\x04" + bytes(14) + sizes + len(first_entry).to_bytes(2, "little") + bytes(2) + first_entry
            + data + bytes(64))


@pytest.mark.parametrize("head, declared, url, content_type, kind", [
    (_zip_head(b"mimetype", b"application/vnd.oasis.opendocument.text"), None, "http://x/a",
     "application/vnd.oasis.opendocument.text", Kind.DOCUMENT),
    (_zip_head(b"mimetype", b"application/epub+zip"), "application/zip", "http://x/book", "application/epub+zip",
     Kind.EBOOK),
    (_zip_head(b"[Content_Types].xml", b"...ppt/presentation.xml"), None, "http://x/a",
     "application/vnd.openxmlformats-officedocument.presentationml.presentation", Kind.PRESENTATION),
    (_zip_head(b"[Content_Types].xml"), None, "http://x/a.xlsx",
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Kind.SPREADSHEET),
    (_zip_head(b"[Content_Types].xml"), None, "http://x/a", "application/vnd.openxmlformats-officedocument",
     Kind.DOCUMENT),
    (_zip_head(b"_rels/.rels"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "http://x/a",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document", Kind.DOCUMENT),
    (_zip_head(b"_rels/.rels"), None, "http://x/notes.odt", "application/vnd.oasis.opendocument.text", Kind.DOCUMENT),
    (b"{\\rtf1\\ansi Hello}", "text/plain", "http://x/a.txt", "application/rtf", Kind.DOCUMENT),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", None, "http://x/a", "image/webp", Kind.IMAGE),
    (b"II*\x00\x08\x00\x00\x00", None, "http://x/a", "image/tiff", Kind.IMAGE),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "video/mp4", "http://x/a.mp4", "image/heic", Kind.IMAGE),
    (b"BMW makes cars and motorcycles", None, "http://x/a", "text/plain", Kind.TEXT),
    (b"name,count\nwick,3\n", None, "http://x/stock.csv", "text/csv", Kind.TEXT),
    (b"Title\n=====\n\nText.", "text/prs.fallenstein.rst", "http://x/a", "text/x-rst", Kind.TEXT),
])
def test_documents_and_images_are_told_apart_by_their_bytes_first(head, declared, url, content_type, kind):
    assert decide(head, declared, url) == Decision(content_type, kind)


@pytest.mark.parametrize("head, url", [(_zip_head(b"notes.txt"), "http://x/a.zip"),
                                       (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "http://x/report.doc"),
                                       (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "http://x/budget.xls")])
def test_a_plain_zip_or_a_legacy_office_file_is_refused_naming_what_is_accepted(head, url):
    with pytest.raises(UnsupportedContentType) as refused:
        decide(head, None, url)
    assert "DOCX" in refused.value.message and "EPUB" in refused.value.message


# -- listing under a source (issue 17) -----------------------------------------------------------

def test_a_listing_filter_reads_a_checked_source_id_and_admits_only_that_sources_assets():
    from datetime import UTC, datetime

    from allthethings.domain.assets import Asset
    from allthethings.domain.listing import AssetFilter, parse_filter

    source = "src_" + "0123456789abcdef" * 2
    listing = parse_filter({"source": f" {source} ", "status": "searchable"})
    assert listing == AssetFilter(statuses=(Status.SEARCHABLE,), source=source) and not listing.is_empty
    assert parse_filter({"source": ""}).is_empty
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    mine = Asset(id="a" * 32, url="https://x.test/1", status=Status.SEARCHABLE, created_at=stamp, updated_at=stamp,
                 source_id=source)
    assert AssetFilter(source=source).admits(mine)
    assert not AssetFilter(source="src_" + "f" * 32).admits(mine)
    assert not AssetFilter(source=source).admits(Asset(id="b" * 32, url="https://x.test/2", status=Status.SEARCHABLE,
                                                       created_at=stamp, updated_at=stamp))


@pytest.mark.parametrize("raw", ["feed-1", "src_" + "A" * 32, "src_" + "a" * 31, "a" * 32])
def test_a_listing_source_that_is_not_a_source_id_is_refused_naming_the_parameter(raw):
    from allthethings.domain.listing import parse_filter

    with pytest.raises(InvalidInput) as refused:
        parse_filter({"source": raw})
    assert refused.value.message.startswith("source") and refused.value.param == "source"
