"""The one place that wires real adapters to the ports, once per container, on first use.

Tests swap in fakes with `use(deps)`; nothing is built at import time.
"""

from __future__ import annotations

import contextlib
import threading

from allthethings.config import Settings, load_settings, secret
from allthethings.services import Deps

_lock = threading.Lock()
_deps: Deps | None = None


def build(settings: Settings) -> Deps:
    """Real adapters for `settings`. Constructors are cheap: clients and models load on first use."""
    from allthethings.adapters.aws import S3BlobStore, SqsQueue
    from allthethings.adapters.extract import DocumentExtractor
    from allthethings.adapters.fetch import HttpFetcher
    from allthethings.adapters.models import packaged_tokenizer

    if settings.store == "atlas":
        from allthethings.adapters.atlas_store import AtlasStore

        def mongo_client():
            from pymongo import MongoClient

            uri = secret(settings.mongodb_uri, settings.mongodb_uri_param, "MONGODB_URI")
            return MongoClient(uri, appname="allthethings", serverSelectionTimeoutMS=5000, tz_aware=True)

        store = AtlasStore(mongo_client, settings.mongodb_database, settings.vector_index)
    else:
        from allthethings.adapters.sqlite_store import SqliteStore

        store = SqliteStore(settings.sqlite_path, settings.dimensions, settings.model)

    if settings.embedder == "replicate":
        from allthethings.adapters.replicate import ReplicateClient, ReplicateEmbedder

        client = ReplicateClient(settings.replicate_api_base, lambda: secret(
            settings.replicate_api_token, settings.replicate_api_token_param, "REPLICATE_API_TOKEN"))
        embedder = ReplicateEmbedder(client, settings.replicate_embedding_version)
    else:
        from allthethings.adapters.models import LocalEmbedder

        embedder = LocalEmbedder(settings.local_model, threads=settings.model_threads)

    return Deps(
        settings=settings,
        store=store,
        blobs=S3BlobStore(settings.staging_bucket),
        queue=SqsQueue(settings.process_queue_url or ""),
        fetcher=HttpFetcher(allow_private=settings.allow_private_urls, timeout_s=settings.fetch_timeout_s),
        extractor=DocumentExtractor(),
        tokenizer=packaged_tokenizer(settings.model),
        embedder=embedder,
    )


def deps() -> Deps:
    """The container's dependencies, built on the first call."""
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = build(load_settings())
    return _deps


@contextlib.contextmanager
def use(replacement: Deps):
    """Run with `replacement` as the container's dependencies (tests, local tools)."""
    global _deps
    previous, _deps = _deps, replacement
    try:
        yield replacement
    finally:
        _deps = previous


def webhook_secret() -> str | None:
    settings = deps().settings
    try:
        return secret(settings.replicate_webhook_secret, settings.replicate_webhook_secret_param,
                      "REPLICATE_WEBHOOK_SECRET")
    except ValueError:
        return None
