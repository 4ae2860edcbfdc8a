"""Token-aware chunking: split text into overlapping windows that fit the embedding model.

Works on the token spans the model's own tokenizer produces, so every chunk is
known to fit the model's maximum sequence length: nothing is silently truncated.
Windows end at a sentence or paragraph boundary when one lies in the window's
second half, otherwise at a word boundary, and the next window starts `overlap`
tokens earlier (snapped to a word start) so that no sentence is cut off from its
context.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

Span = tuple[int, int]

_SENTENCE_END = ".!?;:。！？"


def chunk_spans(text: str, tokens: Sequence[Span], max_tokens: int, overlap: int) -> list[Span]:
    """Character spans of `text`, each covering at most `max_tokens` of `tokens`."""
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    if not 0 <= overlap < max_tokens // 2:
        raise ValueError("overlap must be at least 0 and under half of max_tokens")
    n = len(tokens)
    spans: list[Span] = []
    start = 0
    while start < n:
        end = min(start + max_tokens, n)
        if end < n:
            end = _best_break(text, tokens, start + max_tokens // 2, end)
        spans.append((tokens[start][0], tokens[end - 1][1]))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        while nxt < end and not _starts_word(tokens, nxt):
            nxt += 1
        start = nxt
    return spans


def _starts_word(tokens: Sequence[Span], k: int) -> bool:
    return k == 0 or tokens[k][0] > tokens[k - 1][1]


def _best_break(text: str, tokens: Sequence[Span], lowest: int, highest: int) -> int:
    """The exclusive token index to end a window at, searching back from `highest`."""
    word_break = None
    for k in range(highest, lowest, -1):
        gap = text[tokens[k - 1][1]:tokens[k][0]]
        if not gap:
            continue
        if "\n" in gap or text[tokens[k - 1][1] - 1] in _SENTENCE_END:
            return k
        if word_break is None:
            word_break = k
    return word_break or highest


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of a recording's transcript, with its start and end in seconds."""

    start_s: float
    end_s: float
    text: str


@dataclasses.dataclass(frozen=True)
class TimedText:
    text: str
    start_s: float
    end_s: float


def chunk_segments(segments: Sequence[Segment], spans: Callable[[str], Sequence[Span]], max_tokens: int,
                   overlap: int, max_seconds: float | None = None) -> list[TimedText]:
    """Consecutive transcript segments joined into chunks of at most `max_tokens` tokens and, when
    `max_seconds` is given, spanning at most that many seconds from first start to last end.

    A chunk's times are its first segment's start and its last segment's end; the next chunk
    repeats the previous chunk's last segment when it fits in `overlap` tokens and, together with
    the segment after it, in both budgets, so a sentence cut between segments is found from
    either side. A segment longer than a whole chunk, in tokens or in seconds, is split by tokens
    and then between words, its times shared out in proportion to the characters: so a chunk's
    `start_s` is never more than `max_seconds` before the speech it holds.
    """
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    pieces: list[tuple[Segment, int]] = []
    for seg in segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        tokens = spans(text)
        if len(tokens) <= max_tokens and (max_seconds is None or seg.end_s - seg.start_s <= max_seconds):
            pieces.append((Segment(seg.start_s, seg.end_s, text), len(tokens)))
            continue
        share = (seg.end_s - seg.start_s) / max(1, len(text))
        by_tokens = [(0, len(text))] if len(tokens) <= max_tokens else \
            chunk_spans(text, tokens, max_tokens, min(overlap, max_tokens // 2 - 1))
        for a, b in by_tokens:
            for c, d in _split_by_time(text, a, b, share, max_seconds):
                piece = Segment(seg.start_s + c * share, seg.start_s + d * share, text[c:d])
                pieces.append((piece, len(spans(piece.text))))

    def fits(first: int, last: int, used: int) -> bool:
        """Whether pieces[last] can join a chunk that starts at pieces[first] and holds `used` tokens."""
        within_time = max_seconds is None or pieces[last][0].end_s - pieces[first][0].start_s <= max_seconds
        return used + pieces[last][1] <= max_tokens and within_time

    chunks: list[TimedText] = []
    i = 0
    while i < len(pieces):
        j, used = i, 0
        while j < len(pieces) and (j == i or fits(i, j, used)):
            used += pieces[j][1]
            j += 1
        group = [p for p, _ in pieces[i:j]]
        chunks.append(TimedText(" ".join(p.text for p in group), group[0].start_s, group[-1].end_s))
        if j >= len(pieces):
            break
        # Start the next chunk on the last segment again if it is short enough to be context and
        # leaves room for the segment after it (else the next chunk would repeat it and no more).
        back = j - 1
        i = back if back > i and pieces[back][1] <= overlap and fits(back, j, pieces[back][1]) else j
    return chunks


def _split_by_time(text: str, a: int, b: int, share: float, max_seconds: float | None) -> list[Span]:
    """`text[a:b]` cut between words into pieces of at most `max_seconds` (at `share` seconds a
    character); a single word longer than that stays whole."""
    words = [(a + m.start(), a + m.end()) for m in re.finditer(r"\S+", text[a:b])]
    if max_seconds is None or not words or (words[-1][1] - words[0][0]) * share <= max_seconds:
        return [(words[0][0], words[-1][1])] if words else []
    out: list[Span] = []
    start, end = words[0]
    for c, d in words[1:]:
        if (d - start) * share > max_seconds:
            out.append((start, end))
            start = c
        end = d
    out.append((start, end))
    return out


def chunk_text(text: str, tokens: Sequence[Span], max_tokens: int, overlap: int) -> list[str]:
    """The chunks' texts, stripped, with empty ones dropped."""
    out = []
    for a, b in chunk_spans(text, tokens, max_tokens, overlap):
        piece = text[a:b].strip()
        if piece:
            out.append(piece)
    return out
