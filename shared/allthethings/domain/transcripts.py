"""Reading a publisher's transcript of a recording (a podcast's `<podcast:transcript>`) into
timed segments, so that an episode that has one is indexed from it instead of transcribed.

Three formats carry timings: SubRip (SRT), WebVTT, and the Podcasting 2.0 JSON transcript
(`{"version", "segments": [{"startTime", "endTime", "body", "speaker"?}]}`). The type the feed
declared picks the parser; when it names none of them (a `text/plain` label) or its parser finds
nothing (a VTT file labelled SRT), the text itself decides: a `WEBVTT` header, a JSON object, or
a cue timing line (commas before the milliseconds: SRT). Cue markup (italics, classes, karaoke
timestamps, SSA overrides such as `{\\an8}`) is dropped and HTML entities are read; a change of
speaker (a WebVTT `<v Name>`, a JSON `speaker`) is kept as `Name: ` before the words, so a search
for what someone said finds it. Cues are kept one segment each, however short: chunking joins
them. A transcript with no timed words raises ExtractionFailed, with the reason.
"""

from __future__ import annotations

import codecs
import dataclasses
import html
import json
import math
import re

from allthethings.domain.chunking import Segment
from allthethings.domain.errors import ExtractionFailed

SRT = "srt"
VTT = "vtt"
JSON = "json"

# The declared types (Podcasting 2.0 names the first, fourth and fifth; hosts use the others).
DECLARED_FORMATS = {"application/x-subrip": SRT, "application/srt": SRT, "text/srt": SRT, "application/x-srt": SRT,
                    "text/vtt": VTT, "application/json": JSON}

# hh:mm:ss.mmm, mm:ss.mmm, or with a comma (SRT); hours may run past two digits.
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?"
# A cue timing line; whatever follows the end time is cue settings (VTT) or coordinates (SRT).
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:[ \t].*)?$")
# A start tag that opens a voice span: `<v Name>`, `<v.loud Name>`.
_CLOCK = re.compile(rf"^\s*{_TIME}\s*$")  # a JSON time written as a timestamp
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?(?:[ \t]+([^>]*))?>")
# Any other markup: `<i>`, `</c>`, `<c.yellow>`, `<00:00:01.000>`, `<font color="#fff">` (not `x < y`).
_TAG = re.compile(r"</?[A-Za-z0-9][^<>\n]*>")
_SSA_OVERRIDE = re.compile(r"\{\\[^}]*\}")
_SNIFF_LINES = 200


@dataclasses.dataclass(frozen=True)
class _Cue:
    start_s: float
    end_s: float
    speaker: str | None
    text: str


def parse_transcript(body: bytes, declared_type: str | None = None, charset: str | None = None) -> list[Segment]:
    """The timed segments of a transcript file, in order of their start. `declared_type` is what
    the feed said the file is, `charset` what its server said (a byte-order mark outranks it)."""
    text = decode(body, charset)
    if not text.strip():
        raise ExtractionFailed("the transcript is empty")
    declared = DECLARED_FORMATS.get((declared_type or "").split(";", 1)[0].strip().lower())
    sniffed = sniff_format(text)
    formats = list(dict.fromkeys(f for f in (declared, sniffed) if f))
    if not formats:
        raise ExtractionFailed(f"the transcript ({declared_type or 'of no declared type'}) is neither WebVTT, "
                               "SubRip nor Podcasting 2.0 JSON, so it has no timings")
    first_problem = None
    for fmt in formats:
        try:
            return _PARSERS[fmt](text)
        except ExtractionFailed as exc:
            first_problem = first_problem or exc
    raise first_problem


def decode(body: bytes, charset: str | None = None) -> str:
    """The file's text: by its byte-order mark, else the server's charset, else UTF-8, else
    Windows-1252 (what older SRT files are written in)."""
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8):].decode("utf-8", "replace")
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", "replace")
    if b"\x00" in body[:1024]:
        raise ExtractionFailed("the transcript is binary, not text")
    if charset:
        try:
            return body.decode(charset, "replace")
        except LookupError:
            pass  # a charset Python does not know: guess as if none was given
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("cp1252", "replace")


def sniff_format(text: str) -> str | None:
    """What the text shows itself to be (SRT, VTT, JSON), or None."""
    lead = text.lstrip("\ufeff \t\r\n")
    if lead.startswith("WEBVTT"):
        return VTT
    if lead.startswith("{"):
        return JSON
    for line in lead.splitlines()[:_SNIFF_LINES]:
        if _TIMING.match(line):
            return SRT if "," in line.split("-->", 1)[0] else VTT
    return None


def parse_srt(text: str) -> list[Segment]:
    """SubRip: numbered cues, each a timing line and its text, separated by blank lines. A block
    without a timing line continues the cue before it (a blank line inside a cue's text)."""
    return _segments(_timed_cues(text, continues=True), "SubRip")


def parse_vtt(text: str) -> list[Segment]:
    """WebVTT: a header, then cues (an optional identifier, a timing line with optional settings,
    the text). Blocks without a timing line (the header, NOTE, STYLE, REGION) are not spoken."""
    return _segments(_timed_cues(text, continues=False), "WebVTT")


def parse_json(text: str) -> list[Segment]:
    """A Podcasting 2.0 JSON transcript; segments without numeric times or a text body are skipped."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ExtractionFailed("the transcript is not valid JSON") from None
    raw = data.get("segments") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ExtractionFailed("the JSON transcript has no list of segments")
    cues = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        start, end, body = _seconds(item.get("startTime")), _seconds(item.get("endTime")), item.get("body")
        if start is None or end is None or not isinstance(body, str):
            continue
        speaker = item.get("speaker")
        speaker = " ".join(speaker.split()) if isinstance(speaker, str) else None
        cues.append(_Cue(start, end, speaker or None, " ".join(body.split())))
    return _segments(cues, "Podcasting 2.0 JSON")


_PARSERS = {SRT: parse_srt, VTT: parse_vtt, JSON: parse_json}


def _timed_cues(text: str, *, continues: bool) -> list[_Cue]:
    cues: list[_Cue] = []
    for block in _blocks(text):
        current: tuple[float, float] | None = None
        payload: list[str] = []
        for line in block:
            match = _TIMING.match(line)
            if match:
                if current is not None:  # two cues with no blank line between them
                    cues.extend(_voiced(*current, payload))
                current, payload = _times(match), []
            elif current is not None:
                payload.append(line)
        if current is not None:
            cues.extend(_voiced(*current, payload))
        elif continues and cues and not all(line.strip().isdigit() for line in block):
            last = cues.pop()
            more = _clean("\n".join(block))
            cues.append(dataclasses.replace(last, text=f"{last.text} {more}".strip()))
    return cues


def _blocks(text: str) -> list[list[str]]:
    blocks, block = [], []
    for line in text.lstrip("\ufeff").splitlines():
        if line.strip():
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    return blocks


def _times(match: re.Match) -> tuple[float, float]:
    g = match.groups()
    return _timestamp(*g[:4]), _timestamp(*g[4:])


def _timestamp(hours: str | None, minutes: str, seconds: str, fraction: str | None) -> float:
    whole = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return whole + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _voiced(start_s: float, end_s: float, payload: list[str]) -> list[_Cue]:
    """The cue's text, one run per voice span (a cue may hold two speakers' lines)."""
    pieces = _VOICE.split("\n".join(payload))
    runs = [(None, pieces[0])] + [(pieces[i], pieces[i + 1]) for i in range(1, len(pieces), 2)]
    cues = []
    for speaker, words in runs:
        name = " ".join(speaker.split()) if speaker else None
        text = _clean(words)
        if text:
            cues.append(_Cue(start_s, end_s, name or None, text))
    return cues


def _clean(text: str) -> str:
    # Entities are read after the tags are gone, so an escaped `&lt;i&gt;` stays as words.
    return " ".join(html.unescape(_SSA_OVERRIDE.sub("", _TAG.sub("", text))).split())


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        match = _CLOCK.match(value)
        if match:
            return _timestamp(*match.groups())
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _segments(cues: list[_Cue], what: str) -> list[Segment]:
    # Sorted by start (stably), so that a chunk's first start and last end bound its words.
    ordered = sorted((c for c in cues if c.text), key=lambda c: c.start_s)
    segments, speaker = [], None
    for cue in ordered:
        text = cue.text
        if cue.speaker and cue.speaker != speaker:
            text, speaker = f"{cue.speaker}: {text}", cue.speaker
        segments.append(Segment(cue.start_s, max(cue.start_s, cue.end_s), text))
    if not segments:
        raise ExtractionFailed(f"the {what} transcript holds no timed text")
    return segments
