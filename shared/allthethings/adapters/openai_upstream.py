"""An OpenAI-compatible embeddings upstream: OpenAI itself, a Text Embeddings Inference server,
vLLM, another allthethings: anything that answers POST {base}/embeddings in OpenAI's shape.

Every call is synchronous (there are no webhooks), so indexing embeds an asset's chunks in the
processing step. Vectors are re-normalised to unit length: the index compares by cosine and
expects them so, and not every server normalises. The upstream's `usage` is passed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from allthethings.adapters.retrying import send
from allthethings.domain.embedding import CATALOG, normalise
from allthethings.domain.errors import InvalidInput, UpstreamUnavailable
from allthethings.ports import Embedder


class OpenAICompatibleEmbedder(Embedder):
    def __init__(self, base_url: str, model: str, *, api_key: Callable[[], str | None] = lambda: None,
                 upstream_model: str | None = None, timeout_s: float = 30.0, attempts: int = 4,
                 backoff_s: float = 0.5, batch_size: int = 128, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.upstream_model = upstream_model or model
        spec = CATALOG[model]
        self.dimensions, self.max_tokens = spec.dimensions, spec.max_tokens
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._batch_size = batch_size  # inputs per upstream call (servers cap them: TEI at 32 by default)
        self._sleep = sleep
        self._http = None

    def _client(self):
        if self._http is None:
            import httpx

            key = self._api_key()
            headers = {"User-Agent": "allthethings", **({"Authorization": f"Bearer {key}"} if key else {})}
            self._http = httpx.Client(base_url=self.base_url, timeout=self._timeout_s, headers=headers)
        return self._http

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_counted(texts)[0]

    def embed_counted(self, texts: Sequence[str]) -> tuple[list[list[float]], int | None]:
        vectors: list[list[float]] = []
        tokens: int | None = 0
        for start in range(0, len(texts), self._batch_size):
            batch, used = self._call(list(texts[start:start + self._batch_size]))
            vectors.extend(batch)
            tokens = None if tokens is None or used is None else tokens + used
        return vectors, tokens

    def _call(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
        response = send(self._client(), "POST", "/embeddings", service="the embeddings upstream",
                        attempts=self._attempts, backoff_s=self._backoff_s, timeout_s=self._timeout_s,
                        sleep=self._sleep, json={"input": texts, "model": self.upstream_model,
                                                 "encoding_format": "float"})
        if response.status_code in (400, 413, 422):
            raise InvalidInput(f"the embeddings upstream refused the input: {_message(response)}", param="input")
        if response.status_code >= 400:
            raise UpstreamUnavailable(f"the embeddings upstream answered HTTP {response.status_code}: "
                                      f"{_message(response)}")
        try:
            body = response.json()
            items = sorted(body["data"], key=lambda item: item["index"])
            vectors = [normalise([float(x) for x in item["embedding"]]) for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamUnavailable(f"the embeddings upstream's answer is not OpenAI's shape ({exc!r})") from None
        if len(vectors) != len(texts) or any(len(v) != self.dimensions for v in vectors):
            raise UpstreamUnavailable(f"the embeddings upstream returned {len(vectors)} vectors of "
                                      f"{len(vectors[0]) if vectors else 0} dimensions for {len(texts)} inputs; "
                                      f"{self.model} has {self.dimensions}")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        return vectors, tokens if isinstance(tokens, int) else None


def _message(response) -> str:
    try:
        error = response.json().get("error")
        text = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        text = None
    return str(text or response.text)[:300]
