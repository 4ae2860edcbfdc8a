"""Settings, read from the environment when asked for (never at import time).

Values only: nothing here does I/O. Secrets are never plain settings in the cloud:
`X_PARAM` names an SSM SecureString parameter that holds X, which the secrets adapter
(behind the `Secrets` port) reads; locally, X itself may be set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from allthethings.domain.content import SizeLimits
from allthethings.domain.embedding import CATALOG


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _size(value: str | int, name: str) -> int:
    """Bytes, written plainly or with a binary unit: 500000, 20MiB, 2GiB."""
    if isinstance(value, int):
        return value
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{name} must be a positive size like 20MiB, not {value!r}")
    return int(number) * scale


@dataclasses.dataclass(frozen=True)
class Settings:
    store: str = "sqlite"  # sqlite | atlas
    sqlite_path: str = ".data/allthethings.db"
    mongodb_uri: str | None = None
    mongodb_uri_param: str | None = None
    mongodb_database: str = "allthethings"
    vector_index: str = "chunk_vectors"
    text_index: str = "chunk_text"
    rank_fusion: str = "auto"  # auto (by server version) | server ($rankFusion) | client

    # The one embedding backend that indexing, search and /v1/embeddings all use: the embedded
    # models (local), Replicate, or any OpenAI-compatible upstream (OpenAI, a Text Embeddings
    # Inference server). Deployed: all-mpnet-base-v2 on Replicate; locally MiniLM is the light default.
    embedder: str = "local"  # local | replicate | openai
    embedding_model: str = "all-MiniLM-L6-v2"
    # What /v1/embeddings serves: the index's model, and (local backend) other embedded models.
    served_models: tuple[str, ...] = ()
    model_threads: int | None = None
    upstream_url: str | None = None  # the upstream's base URL, the part before /embeddings
    upstream_api_key: str | None = None
    upstream_api_key_param: str | None = None
    upstream_model: str | None = None  # the upstream's name for the model; default embedding_model
    upstream_timeout_s: float = 30.0
    embeddings_max_inputs: int = 256  # per /v1/embeddings call; Lambda answers are at most 6 MB
    documents_max_per_request: int = 100
    document_max_chars: int = 1_000_000
    metrics: str = "none"  # emf (CloudWatch, in Lambda) | prometheus (the local stack's /metrics) | none
    replicate_api_base: str = "https://api.replicate.com/v1"
    replicate_api_token: str | None = None
    replicate_timeout_s: float = 10.0  # per HTTP call; 429, 5xx and timeouts are retried with backoff
    replicate_api_token_param: str | None = None
    replicate_embedding_version: str = "b6b7585c9640cd7a9572c6e129c9549d79c9c31f0d3fdce7baac7c67ca38f305"
    replicate_whisper_version: str = "4d50797290df275329f202e48c76360b3f22b08d28c196cbc54600319435f8d2"
    whisper_model: str = "large-v3"
    replicate_webhook_secret: str | None = None
    replicate_webhook_secret_param: str | None = None
    public_base_url: str | None = None

    staging_bucket: str = "allthethings-staging"
    process_queue_url: str | None = None
    webhook_queue_url: str | None = None
    # Which signature a webhook must carry: Replicate's own (Standard Webhooks), or Hookdeck's
    # when Replicate's deliveries are routed through a Hookdeck connection.
    webhook_signature: str = "replicate"  # replicate | hookdeck
    hookdeck_signing_secret: str | None = None
    hookdeck_signing_secret_param: str | None = None
    # A Hookdeck source whose destination is Replicate's API: asynchronous predictions are
    # created through it (queued and retried by Hookdeck); synchronous calls go straight to Replicate.
    hookdeck_source_url: str | None = None

    # API keys (`name=key,...`) for every route but health, webhooks, the API description and
    # sign-in; search too unless search_access is public.
    api_keys: str | None = None
    api_keys_param: str | None = None
    search_access: str = "key"  # key | public

    # The sweeper: an unfinished asset not updated for stuck_after_s is looked at; one still
    # unfinished after give_up_after_s is failed (retryable). api_url: the API's origin, for the
    # webhook URLs of the predictions it starts (it serves no request whose origin it could use).
    stuck_after_s: float = 900.0
    give_up_after_s: float = 6 * 3600.0
    api_url: str | None = None

    allow_private_urls: bool = False
    size_limits: SizeLimits = SizeLimits()
    fetch_timeout_s: float = 20.0
    query_cache_ttl_s: float = 600.0
    chunk_tokens: int = 200
    chunk_overlap: int = 40

    @property
    def model(self) -> str:
        return self.embedding_model

    @property
    def dimensions(self) -> int:
        return CATALOG[self.model].dimensions

    @property
    def models_served(self) -> tuple[str, ...]:
        """The index's model first, then any others served, once each."""
        return tuple(dict.fromkeys((self.embedding_model, *self.served_models)))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    d = Settings()

    def get(name: str, default):
        value = env.get(name)
        return default if value is None or value == "" else value

    settings = Settings(
        store=get("STORE_BACKEND", d.store).lower(),
        sqlite_path=get("SQLITE_PATH", os.path.join(get("DATA_DIR", ".data"), "allthethings.db")),
        mongodb_uri=get("MONGODB_URI", None),
        mongodb_uri_param=get("MONGODB_URI_PARAM", None),
        mongodb_database=get("MONGODB_DATABASE", d.mongodb_database),
        vector_index=get("VECTOR_INDEX", d.vector_index),
        text_index=get("TEXT_INDEX", d.text_index),
        rank_fusion=get("RANK_FUSION", d.rank_fusion).lower(),
        embedder=get("EMBEDDER_BACKEND", d.embedder).lower(),
        embedding_model=get("EMBEDDING_MODEL", get("LOCAL_MODEL", d.embedding_model)),
        served_models=tuple(filter(None, (m.strip() for m in get("SERVED_MODELS", "").split(",")))),
        model_threads=int(env["MODEL_THREADS"]) if env.get("MODEL_THREADS") else None,
        upstream_url=(get("EMBEDDINGS_UPSTREAM_URL", "") or "").rstrip("/") or None,
        upstream_api_key=get("EMBEDDINGS_UPSTREAM_API_KEY", None),
        upstream_api_key_param=get("EMBEDDINGS_UPSTREAM_API_KEY_PARAM", None),
        upstream_model=get("EMBEDDINGS_UPSTREAM_MODEL", None),
        upstream_timeout_s=float(get("EMBEDDINGS_UPSTREAM_TIMEOUT_S", d.upstream_timeout_s)),
        embeddings_max_inputs=int(get("EMBEDDINGS_MAX_INPUTS", d.embeddings_max_inputs)),
        documents_max_per_request=int(get("MAX_DOCUMENTS_PER_REQUEST", d.documents_max_per_request)),
        document_max_chars=int(get("MAX_DOCUMENT_CHARS", d.document_max_chars)),
        metrics=get("METRICS_BACKEND", d.metrics).lower(),
        replicate_api_base=get("REPLICATE_API_BASE", d.replicate_api_base).rstrip("/"),
        replicate_api_token=get("REPLICATE_API_TOKEN", None),
        replicate_timeout_s=float(get("REPLICATE_TIMEOUT_S", d.replicate_timeout_s)),
        replicate_api_token_param=get("REPLICATE_API_TOKEN_PARAM", None),
        replicate_embedding_version=get("REPLICATE_EMBEDDING_VERSION", d.replicate_embedding_version),
        replicate_whisper_version=get("REPLICATE_WHISPER_VERSION", d.replicate_whisper_version),
        whisper_model=get("WHISPER_MODEL", d.whisper_model),
        replicate_webhook_secret=get("REPLICATE_WEBHOOK_SECRET", None),
        replicate_webhook_secret_param=get("REPLICATE_WEBHOOK_SECRET_PARAM", None),
        public_base_url=get("PUBLIC_BASE_URL", None),
        staging_bucket=get("STAGING_BUCKET", d.staging_bucket),
        process_queue_url=get("PROCESS_QUEUE_URL", None),
        webhook_queue_url=get("WEBHOOK_QUEUE_URL", None),
        webhook_signature=get("WEBHOOK_SIGNATURE", d.webhook_signature).lower(),
        hookdeck_signing_secret=get("HOOKDECK_SIGNING_SECRET", None),
        hookdeck_signing_secret_param=get("HOOKDECK_SIGNING_SECRET_PARAM", None),
        hookdeck_source_url=get("HOOKDECK_SOURCE_URL", None),
        api_keys=get("API_KEYS", None),
        api_keys_param=get("API_KEYS_PARAM", None),
        search_access=get("SEARCH_ACCESS", d.search_access).lower(),
        stuck_after_s=float(get("STUCK_AFTER_S", d.stuck_after_s)),
        give_up_after_s=float(get("GIVE_UP_AFTER_S", d.give_up_after_s)),
        api_url=get("API_URL", None),
        allow_private_urls=_bool(env.get("ALLOW_PRIVATE_URLS"), d.allow_private_urls),
        size_limits=SizeLimits(**{f.name: _size(get(f"MAX_BYTES_{f.name.upper()}", getattr(d.size_limits, f.name)),
                                                f"MAX_BYTES_{f.name.upper()}")
                                   for f in dataclasses.fields(SizeLimits)}),
        fetch_timeout_s=float(get("FETCH_TIMEOUT_S", d.fetch_timeout_s)),
        query_cache_ttl_s=float(get("QUERY_CACHE_TTL_S", d.query_cache_ttl_s)),
        chunk_tokens=int(get("CHUNK_TOKENS", d.chunk_tokens)),
        chunk_overlap=int(get("CHUNK_OVERLAP", d.chunk_overlap)),
    )
    if settings.store not in ("sqlite", "atlas"):
        raise ValueError(f"STORE_BACKEND must be sqlite or atlas, not {settings.store!r}")
    if settings.embedder not in ("local", "replicate", "openai"):
        raise ValueError(f"EMBEDDER_BACKEND must be local, replicate or openai, not {settings.embedder!r}")
    for model in settings.models_served:
        if model not in CATALOG:
            raise ValueError(f"EMBEDDING_MODEL and SERVED_MODELS must be among {sorted(CATALOG)}, not {model!r}")
        if settings.embedder in ("local", "replicate") and not CATALOG[model].local:
            local = sorted(name for name, spec in CATALOG.items() if spec.local)
            raise ValueError(f"{model} is not a sentence-transformers model: with EMBEDDER_BACKEND={settings.embedder} "
                             f"use one of {local}, or EMBEDDER_BACKEND=openai with an upstream that serves it")
    if settings.embedder != "local" and settings.served_models not in ((), (settings.embedding_model,)):
        raise ValueError("SERVED_MODELS can add models only with EMBEDDER_BACKEND=local; a remote backend "
                         "serves EMBEDDING_MODEL")
    if settings.embedder == "openai" and not settings.upstream_url:
        raise ValueError("EMBEDDER_BACKEND=openai needs EMBEDDINGS_UPSTREAM_URL (for example http://tei:8080/v1)")
    for name, value in (("EMBEDDINGS_MAX_INPUTS", settings.embeddings_max_inputs),
                        ("MAX_DOCUMENTS_PER_REQUEST", settings.documents_max_per_request),
                        ("MAX_DOCUMENT_CHARS", settings.document_max_chars)):
        if value < 1:
            raise ValueError(f"{name} must be a positive number, not {value}")
    if settings.metrics not in ("emf", "prometheus", "none"):
        raise ValueError(f"METRICS_BACKEND must be emf, prometheus or none, not {settings.metrics!r}")
    if settings.webhook_signature not in ("replicate", "hookdeck"):
        raise ValueError(f"WEBHOOK_SIGNATURE must be replicate or hookdeck, not {settings.webhook_signature!r}")
    if settings.search_access not in ("key", "public"):
        raise ValueError(f"SEARCH_ACCESS must be key or public, not {settings.search_access!r}")
    return settings

