"""Publisher transcripts (SRT, WebVTT, Podcasting 2.0 JSON) read into timed segments."""

import json

import pytest

from allthethings.domain.chunking import Segment
from allthethings.domain.errors import ExtractionFailed
from allthethings.domain.transcripts import parse_transcript, sniff_format

# As Descript or a Windows tool writes it: a UTF-8 byte-order mark, CRLF line ends, SubRip tags.
SRT = ("\ufeff1\r\n"
       "00:00:00,000 --> 00:00:03,120\r\n"
       "Welcome back to <i>The Lighthouse Hour</i>.\r\n"
       "\r\n"
       "2\r\n"
       "00:00:03,120 --> 00:00:07,480\r\n"
       "Today: how keepers trimmed the wicks\r\n"
       "through the night.\r\n"
       "\r\n"
       "3\r\n"
       "00:00:07,480 --> 00:00:09,000 X1:100 X2:600 Y1:50 Y2:90\r\n"
       "{\\an8}Storms &amp; <font color=\"#ffff00\">rock towers</font>\r\n"
       "\r\n").encode("utf-8")

# What a podcast host publishes: a header with metadata, a NOTE, a STYLE block, identifiers,
# cue settings, voice spans with classes, a class span, a karaoke timestamp and entities.
VTT = """WEBVTT - The Lighthouse Hour, episode 12
Kind: captions
Language: en

NOTE
This transcript was edited by hand. 00:00:01.000 is when the music stops.

STYLE
::cue(v[voice="Ada"]) { color: teal }

intro
00:01.000 --> 00:04.250 align:start position:10% line:0
<v Ada>Keepers trimmed the wicks</v>

00:04.250 --> 00:06.500 size:80%
<v Ada>every four hours.

1:02:03.500 --> 1:02:05.000
<v.loud Grace Hopper>Storms cut them off &ndash; for weeks.</v>
<c.yellow>Literally</c> <00:01:02.750>weeks &lt;i&gt; &nbsp;on end.

NOTE a comment between cues

1:02:05.000 --> 1:02:06.000
<v Ada>Yes.</v>
<v Grace Hopper>Really.</v>
"""

PODCAST_JSON = {
    "version": "1.0.0",
    "segments": [
        {"speaker": "Ada", "startTime": 0.5, "endTime": 1.75, "body": "Keepers"},
        {"speaker": "Ada", "startTime": 1.75, "endTime": 2.5, "body": "trimmed"},
        {"speaker": "Grace", "startTime": "2.5", "endTime": "00:00:04.000", "body": "the wicks."},
        {"startTime": 4.0, "endTime": 6.0, "body": "  Music  plays. "},
    ],
}


def test_an_srt_with_a_bom_and_crlf_becomes_timed_segments_without_markup():
    segments = parse_transcript(SRT, "application/x-subrip")
    assert segments == [
        Segment(0.0, 3.12, "Welcome back to The Lighthouse Hour."),
        Segment(3.12, 7.48, "Today: how keepers trimmed the wicks through the night."),
        Segment(7.48, 9.0, "Storms & rock towers"),
    ]


def test_a_vtt_reads_cue_settings_voices_and_entities_and_skips_notes_and_styles():
    segments = parse_transcript(VTT.encode(), "text/vtt")
    assert [s.text for s in segments] == [
        "Ada: Keepers trimmed the wicks",
        "every four hours.",
        "Grace Hopper: Storms cut them off \u2013 for weeks. Literally weeks <i> on end.",
        "Ada: Yes.",
        "Grace Hopper: Really.",
    ]
    assert [(s.start_s, s.end_s) for s in segments] == [(1.0, 4.25), (4.25, 6.5), (3723.5, 3725.0),
                                                        (3725.0, 3726.0), (3725.0, 3726.0)]
    assert not any("music stops" in s.text or "color" in s.text for s in segments)


def test_a_podcasting_json_transcript_keeps_each_segment_and_names_a_new_speaker():
    segments = parse_transcript(json.dumps(PODCAST_JSON).encode(), "application/json")
    assert segments == [
        Segment(0.5, 1.75, "Ada: Keepers"),
        Segment(1.75, 2.5, "trimmed"),
        Segment(2.5, 4.0, "Grace: the wicks."),
        Segment(4.0, 6.0, "Music plays."),
    ]


def test_json_segments_without_times_or_text_are_skipped():
    body = {"version": "1.0.0", "segments": [
        {"startTime": 1, "endTime": 2, "body": "kept"}, {"startTime": None, "endTime": 2, "body": "no start"},
        {"startTime": True, "endTime": 2, "body": "a boolean"}, {"startTime": -1, "endTime": 2, "body": "negative"},
        {"startTime": 1, "endTime": 2}, "not an object", {"startTime": 1, "endTime": 2, "body": "   "}]}
    assert parse_transcript(json.dumps(body).encode(), "application/json") == [Segment(1.0, 2.0, "kept")]


@pytest.mark.parametrize("declared", [None, "text/plain", "application/octet-stream", "text/html"])
@pytest.mark.parametrize("body, first", [
    (SRT, "Welcome back to The Lighthouse Hour."),
    (VTT.encode(), "Ada: Keepers trimmed the wicks"),
    (json.dumps(PODCAST_JSON).encode(), "Ada: Keepers"),
])
def test_a_transcript_of_no_or_another_type_is_read_by_what_its_text_shows(declared, body, first):
    assert parse_transcript(body, declared)[0].text == first


def test_a_transcript_labelled_with_the_wrong_timed_type_is_still_read():
    assert parse_transcript(VTT.encode(), "application/x-subrip")[0].start_s == 1.0
    assert parse_transcript(SRT, "text/vtt")[-1].end_s == 9.0


def test_a_vtt_without_a_header_is_sniffed_by_its_dotted_timings():
    body = b"00:00:01.000 --> 00:00:02.000\nhello\n"
    assert sniff_format(body.decode()) == "vtt"
    assert parse_transcript(body) == [Segment(1.0, 2.0, "hello")]


def test_cues_out_of_order_are_sorted_and_an_end_before_its_start_is_clamped():
    body = b"2\n00:00:05,000 --> 00:00:06,000\nlater\n\n1\n00:00:01,000 --> 00:00:00,500\nearlier\n"
    assert parse_transcript(body, "application/srt") == [Segment(1.0, 1.0, "earlier"), Segment(5.0, 6.0, "later")]


def test_a_blank_line_inside_an_srt_cue_keeps_its_text_with_the_cue():
    body = b"1\n00:00:01,000 --> 00:00:04,000\nfirst line\n\nsecond line\n\n2\n00:00:04,000 --> 00:00:05,000\nnext\n"
    assert [s.text for s in parse_transcript(body, "application/x-subrip")] == ["first line second line", "next"]


def test_a_windows_1252_srt_without_a_charset_is_read():
    body = "1\n00:00:01,000 --> 00:00:02,000\nCaf\u00e9 cr\u00e8me\n".encode("cp1252")
    assert parse_transcript(body, "application/x-subrip")[0].text == "Caf\u00e9 cr\u00e8me"


def test_a_utf16_vtt_is_read_by_its_byte_order_mark():
    body = "WEBVTT\n\n00:01.000 --> 00:02.000\nna\u00efve\n".encode("utf-16")
    assert parse_transcript(body, "text/vtt") == [Segment(1.0, 2.0, "na\u00efve")]


@pytest.mark.parametrize("body, declared, reason", [
    (b"", "text/vtt", "empty"),
    (b"   \r\n", "application/x-subrip", "empty"),
    (b"WEBVTT\n\nNOTE only a comment\n", "text/vtt", "no timed text"),
    (b"WEBVTT\n\n00:01.000 --> 00:02.000\n<i></i>\n", "text/vtt", "no timed text"),
    (b"1\nhello there\n", "application/x-subrip", "no timed text"),
    (b"{not json", "application/json", "not valid JSON"),
    (b'{"version": "1.0.0"}', "application/json", "no list of segments"),
    (b'[{"startTime": 1}]', "application/json", "no list of segments"),
    (b"[" * 100_000, "application/json", "not valid JSON"),
    (b'{"segments": [{"startTime": "soon", "endTime": 2, "body": "x"}]}', "application/json", "no timed text"),
    (b"<html><body>Our transcript</body></html>", "text/html", "neither WebVTT"),
    (b"Just the words of the episode, no timings.", "text/plain", "neither WebVTT"),
    (b"ID3\x03\x00\x00\x00\x00\x00\x00", "text/vtt", "binary"),
])
def test_garbage_raises_extraction_failed_with_a_reason(body, declared, reason):
    with pytest.raises(ExtractionFailed, match=reason):
        parse_transcript(body, declared)
