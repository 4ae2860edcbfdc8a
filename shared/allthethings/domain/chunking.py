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
                   overlap: int) -> list[TimedText]:
    """Consecutive transcript segments joined into chunks of at most `max_tokens` tokens.

    A chunk's times are its first segment's start and its last segment's end; the next chunk
    repeats the previous chunk's last segment when it fits in `overlap` tokens, so a sentence
    cut between segments is found from either side. A segment longer than a whole chunk is
    split by tokens, its times shared out in proportion to the characters.
    """
    pieces: list[tuple[Segment, int]] = []
    for seg in segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        tokens = spans(text)
        if len(tokens) <= max_tokens:
            pieces.append((Segment(seg.start_s, seg.end_s, text), len(tokens)))
            continue
        length = max(1, len(text))
        for a, b in chunk_spans(text, tokens, max_tokens, min(overlap, max_tokens // 2 - 1)):
            share = (seg.end_s - seg.start_s) / length
            piece = Segment(seg.start_s + a * share, seg.start_s + b * share, text[a:b].strip())
            pieces.append((piece, len(spans(piece.text))))
    chunks: list[TimedText] = []
    i = 0
    while i < len(pieces):
        j, used = i, 0
        while j < len(pieces) and (j == i or used + pieces[j][1] <= max_tokens):
            used += pieces[j][1]
            j += 1
        group = [p for p, _ in pieces[i:j]]
        chunks.append(TimedText(" ".join(p.text for p in group), group[0].start_s, group[-1].end_s))
        if j >= len(pieces):
            break
        # Start the next chunk on the last segment again if it is short enough to be context.
        i = j - 1 if j - 1 > i and pieces[j - 1][1] <= overlap else j
    return chunks


def chunk_text(text: str, tokens: Sequence[Span], max_tokens: int, overlap: int) -> list[str]:
    """The chunks' texts, stripped, with empty ones dropped."""
    out = []
    for a, b in chunk_spans(text, tokens, max_tokens, overlap):
        piece = text[a:b].strip()
        if piece:
            out.append(piece)
    return out
