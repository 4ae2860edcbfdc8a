"""The service layer: one module per use case, each taking its dependencies as a `Deps`."""

from __future__ import annotations

import dataclasses

from allthethings.config import Settings
from allthethings.ports import (
    AssetStore,
    BlobStore,
    Embedder,
    Extractor,
    Fetcher,
    ImageReader,
    Metrics,
    NoMetrics,
    PageOcr,
    Pictures,
    Predictions,
    Secrets,
    ServedModel,
    SourceReader,
    SourceStore,
    TaskQueue,
    Tokenizer,
    Transcriber,
    WebhookVerifier,
)


@dataclasses.dataclass
class Deps:
    """Everything a use case may touch. Built once per container by bootstrap; faked in unit tests."""

    settings: Settings
    store: AssetStore
    blobs: BlobStore
    queue: TaskQueue
    fetcher: Fetcher
    extractor: Extractor
    tokenizer: Tokenizer
    embedder: Embedder
    transcriber: Transcriber
    webhooks: TaskQueue
    verifier: WebhookVerifier
    predictions: Predictions
    secrets: Secrets
    fetches: TaskQueue  # the fetch queue: bodies too large or too slow to fetch inside a request
    metrics: Metrics = dataclasses.field(default_factory=NoMetrics)
    image_reader: ImageReader | None = None  # the vision model; None: images cannot be read
    pictures: Pictures | None = None  # checks images and makes their thumbnails
    page_ocr: PageOcr | None = None  # text detection on scanned pages; None: a page without text stays unread
    sources: SourceStore | None = None  # feeds and sitemaps (services/sources.py); None: no sources
    source_reader: SourceReader | None = None
    source_queue: TaskQueue | None = None  # the source queue: reads of sources, submissions of their items
    # The models /v1/embeddings serves, by name; empty: just the index's (embedder, tokenizer).
    served: dict[str, ServedModel] = dataclasses.field(default_factory=dict)

    def served_models(self) -> dict[str, ServedModel]:
        return self.served or {self.embedder.model: ServedModel(self.embedder, self.tokenizer)}
