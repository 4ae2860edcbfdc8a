"""The one place that wires real adapters to the ports, once per container, on first use.

Tests swap in fakes with `use(deps)`; nothing is built at import time.
"""

from __future__ import annotations

import contextlib
import functools
import threading

from allthethings.config import Settings, load_settings
from allthethings.ports import Embedder, Metrics, NoMetrics, Secrets, ServedModel
from allthethings.services import Deps

_lock = threading.Lock()
_deps: Deps | None = None


def build(settings: Settings) -> Deps:
    """Real adapters for `settings`. Constructors are cheap: clients and models load on first use."""
    from allthethings.adapters.cache import CachingEmbedder
    from allthethings.adapters.extract import DocumentExtractor
    from allthethings.adapters.feeds import FeedReader
    from allthethings.adapters.fetch import HttpFetcher
    from allthethings.adapters.models import packaged_tokenizer, tokenizer_of
    from allthethings.adapters.secrets import ParameterStoreSecrets

    secrets = ParameterStoreSecrets()
    secret = secrets.get

    if settings.store == "atlas":
        from allthethings.adapters.atlas_store import AtlasStore
        from allthethings.adapters.source_store import MongoSourceStore

        @functools.cache  # one client (one connection pool) for assets and sources
        def mongo_client():
            from pymongo import MongoClient

            uri = secret(settings.mongodb_uri, settings.mongodb_uri_param, "MONGODB_URI")
            return MongoClient(uri, appname="allthethings", serverSelectionTimeoutMS=5000, tz_aware=True)

        store = AtlasStore(mongo_client, settings.mongodb_database, settings.vector_index,
                           text_index=settings.text_index, rank_fusion=settings.rank_fusion)
        sources = MongoSourceStore(lambda: mongo_client()[settings.mongodb_database])
    else:
        from allthethings.adapters.source_store import SqliteSourceStore
        from allthethings.adapters.sqlite_store import SqliteStore

        store = SqliteStore(settings.sqlite_path, settings.dimensions, settings.model)
        sources = SqliteSourceStore(settings.sqlite_path)

    from allthethings.adapters.images import ImageLimits, PillowPictures
    from allthethings.adapters.replicate import (
        ReplicateClient,
        ReplicateEmbedder,
        ReplicateImageReader,
        ReplicatePredictions,
        ReplicateTranscriber,
    )

    replicate = ReplicateClient(settings.replicate_api_base, lambda: secret(
        settings.replicate_api_token, settings.replicate_api_token_param, "REPLICATE_API_TOKEN"),
        queue_url=settings.hookdeck_source_url, timeout_s=settings.replicate_timeout_s)
    transcriber = ReplicateTranscriber(replicate, settings.replicate_whisper_version, model=settings.whisper_model)

    def backend(model: str) -> Embedder:
        if settings.embedder == "replicate":
            return ReplicateEmbedder(replicate, settings.replicate_embedding_version, model=model)
        if settings.embedder == "openai":
            from allthethings.adapters.openai_upstream import OpenAICompatibleEmbedder

            def key():
                from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

                try:
                    return secret(settings.upstream_api_key, settings.upstream_api_key_param,
                                  "EMBEDDINGS_UPSTREAM_API_KEY")
                except (ValueError, GetParameterError):
                    return None  # a server on a private network (TEI) usually takes no key

            return OpenAICompatibleEmbedder(settings.upstream_url, model, api_key=key,
                                            upstream_model=settings.upstream_model,
                                            timeout_s=settings.upstream_timeout_s)
        from allthethings.adapters.models import LocalEmbedder

        return LocalEmbedder(model, threads=settings.model_threads)

    # The index, search and /v1/embeddings share one embedder per model: one set of weights in memory.
    embedder = CachingEmbedder(backend(settings.model), ttl_s=settings.query_cache_ttl_s)
    served = {settings.model: ServedModel(embedder, tokenizer_of(settings.model))}
    for model in settings.models_served[1:]:
        served[model] = ServedModel(backend(model), tokenizer_of(model))

    blobs, queue = _staging(settings)
    return Deps(
        settings=settings,
        store=store,
        blobs=blobs,
        queue=queue(settings.process_queue_url, "the processing queue"),
        fetches=queue(settings.fetch_queue_url, "the fetch queue"),
        sources=sources,
        source_reader=FeedReader(),
        source_queue=queue(settings.source_queue_url, "the source queue"),
        fetcher=HttpFetcher(allow_private=settings.allow_private_urls, timeout_s=settings.fetch_timeout_s),
        extractor=DocumentExtractor(ocr_min_page_chars=settings.ocr_min_page_chars),
        tokenizer=packaged_tokenizer(settings.model),
        embedder=embedder,
        transcriber=transcriber,
        webhooks=queue(settings.webhook_queue_url, "the webhook queue"),
        verifier=_verifier(settings, secrets),
        predictions=ReplicatePredictions(replicate),
        image_reader=ReplicateImageReader(replicate, settings.replicate_vision_version),
        pictures=PillowPictures(ImageLimits(max_pixels=settings.image_max_pixels,
                                            max_frames=settings.image_max_frames)),
        page_ocr=_page_ocr(settings),
        metrics=_metrics(settings),
        served=served,
        secrets=secrets,
    )


def _page_ocr(settings: Settings):
    """Amazon Textract (or the local stand-in at TEXTRACT_ENDPOINT_URL) when an OCR topic is set."""
    if not settings.ocr_topic_arn or not settings.ocr_role_arn:
        return None
    from allthethings.adapters.textract import TextractPageOcr

    return TextractPageOcr(settings.staging_bucket, settings.ocr_topic_arn, settings.ocr_role_arn,
                           endpoint_url=settings.textract_endpoint_url)


def _staging(settings: Settings):
    """The blob store, and how to build a queue: S3 and SQS, or the embedded folder's (the local
    stack's default), whose queues all live in one file shared by every handler of the process."""
    if not settings.embedded_aws_dir:
        from allthethings.adapters.aws import S3BlobStore, SqsQueue

        return S3BlobStore(settings.staging_bucket), lambda url, label: SqsQueue(url or "", label)
    import os

    from allthethings.adapters.embedded_blobs import EmbeddedBlobs
    from allthethings.adapters.embedded_queue import EmbeddedQueue, shared_queues

    if not settings.embedded_blob_url or not settings.embedded_blob_secret:
        raise ValueError("EMBEDDED_AWS_DIR needs EMBEDDED_BLOB_URL and EMBEDDED_BLOB_SECRET")
    queues = shared_queues(os.path.join(settings.embedded_aws_dir, "queues.db"))
    blobs = EmbeddedBlobs(os.path.join(settings.embedded_aws_dir, "blobs"), settings.embedded_blob_url,
                          settings.embedded_blob_secret.encode())
    return blobs, lambda name, label: EmbeddedQueue(queues, name or "", label)


def _metrics(settings: Settings) -> Metrics:
    if settings.metrics == "emf":
        from allthethings.adapters.metrics import EmfMetrics

        return EmfMetrics()
    if settings.metrics == "prometheus":
        from allthethings.adapters.metrics import PrometheusMetrics

        return PrometheusMetrics()
    return NoMetrics()


def _verifier(settings: Settings, secrets: Secrets):
    """The configured webhook signature check; its secret is read on first use, not at start."""
    from allthethings.adapters.signatures import HookdeckVerifier, ReplicateVerifier
    from allthethings.ports import WebhookVerifier

    def optional(value, param, what):
        try:
            return secrets.get(value, param, what)
        except ValueError:
            return None  # verification then refuses every delivery, with a clear message

    class Lazy(WebhookVerifier):
        _real = None

        def verify(self, body, headers):
            if self._real is None:
                if settings.webhook_signature == "hookdeck":
                    self._real = HookdeckVerifier(optional(settings.hookdeck_signing_secret,
                                                           settings.hookdeck_signing_secret_param,
                                                           "HOOKDECK_SIGNING_SECRET"))
                else:
                    self._real = ReplicateVerifier(optional(settings.replicate_webhook_secret,
                                                            settings.replicate_webhook_secret_param,
                                                            "REPLICATE_WEBHOOK_SECRET"))
            return self._real.verify(body, headers)

    return Lazy()


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



def metrics_flushed(handler):
    """Publish the metrics an invocation recorded when it ends, however it ends (a handler decorator)."""

    @functools.wraps(handler)
    def wrapper(event, context):
        try:
            return handler(event, context)
        finally:
            if _deps is not None:
                _deps.metrics.flush()

    return wrapper
