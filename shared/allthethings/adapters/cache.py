"""A query-embedding cache: a repeated search query costs no model call (and no prediction)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from allthethings.ports import Embedder


class CachingEmbedder(Embedder):
    """Remembers single-text embeddings (search queries) for `ttl_s`, the newest `max_entries`
    of them; batches (an asset's chunks) pass straight through, as do webhook jobs."""

    def __init__(self, inner: Embedder, *, ttl_s: float = 600.0, max_entries: int = 2048,
                 clock: Callable[[], float] = time.monotonic):
        self.inner = inner
        self.model, self.dimensions, self.max_tokens = inner.model, inner.dimensions, inner.max_tokens
        self.asynchronous = inner.asynchronous
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, list[float], int | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_counted(texts)[0]

    def embed_counted(self, texts: Sequence[str]) -> tuple[list[list[float]], int | None]:
        if len(texts) != 1 or self.ttl_s <= 0:
            return self.inner.embed_counted(texts)
        key = texts[0]
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry and now - entry[0] < self.ttl_s:
                self._entries.move_to_end(key)
                self.hits += 1
                return [entry[1]], entry[2]
        vectors, tokens = self.inner.embed_counted([key])
        with self._lock:
            self.misses += 1
            self._entries[key] = (now, vectors[0], tokens)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return [vectors[0]], tokens

    def submit(self, texts, webhook_url):
        return self.inner.submit(texts, webhook_url)

    def vectors_from_output(self, output):
        return self.inner.vectors_from_output(output)

    def texts_of(self, prediction):
        return self.inner.texts_of(prediction)
