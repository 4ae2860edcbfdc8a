"""Settings: declared once below, each with its type, its choices and its environment variable,
and read from an environment only when `load_settings` is called (never at import time).

Values only: nothing here does I/O. Secrets are never plain settings in the cloud:
`X_PARAM` names an SSM SecureString parameter that holds X, which the secrets adapter
(behind the `Secrets` port) reads; locally, X itself may be set.

A frozen dataclass whose field types drive the parsing (a `Literal` is a set of choices), not
pydantic-settings: that library reads os.environ (and .env files) by design, while
`load_settings(env)` must read only the mapping it is given and `Settings(...)` nothing at all;
and importing pydantic costs every function that does not already load it ~200 ms of cold start
(the process, consumer, sweeper and authorizer functions), for what a few lines do here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from allthethings.domain.content import SizeLimits
from allthethings.domain.embedding import CATALOG

Store = Literal["sqlite", "atlas"]
RankFusion = Literal["auto", "server", "client"]  # auto: by the server's version
Backend = Literal["local", "replicate", "openai"]
MetricsBackend = Literal["emf", "prometheus", "none"]
WebhookSignature = Literal["replicate", "hookdeck"]
SearchAccess = Literal["key", "public"]

_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _base_url(value: str) -> str:
    """A base URL that paths are appended to: without its trailing slash."""
    return value.rstrip("/")


def _setting(default: Any, *variables: str, secret: bool = False, positive: bool = False,
             parse: Callable[[str], Any] | None = None) -> Any:
    """A field read from `variables` (the first one set wins); a secret is left out of the repr,
    which a log line may show."""
    return dataclasses.field(default=default, repr=not secret,
                             metadata={"env": variables, "positive": positive, "parse": parse})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting, by field name in code (`Settings(chunk_tokens=20)`), by environment
    variable in `load_settings`. Invalid combinations are refused however it is built."""

    store: Store = _setting("sqlite", "STORE_BACKEND")
    data_dir: str = _setting(".data", "DATA_DIR")  # only where sqlite_path goes when not set
    sqlite_path: str | None = _setting(None, "SQLITE_PATH")  # None: $DATA_DIR/allthethings.db
    mongodb_uri: str | None = _setting(None, "MONGODB_URI", secret=True)  # it may hold a password
    mongodb_uri_param: str | None = _setting(None, "MONGODB_URI_PARAM")
    mongodb_database: str = _setting("allthethings", "MONGODB_DATABASE")
    vector_index: str = _setting("chunk_vectors", "VECTOR_INDEX")
    text_index: str = _setting("chunk_text", "TEXT_INDEX")
    rank_fusion: RankFusion = _setting("auto", "RANK_FUSION")

    # The one embedding backend that indexing, search and /v1/embeddings all use: the embedded
    # models (local), Replicate, or any OpenAI-compatible upstream (OpenAI, a Text Embeddings
    # Inference server). Deployed: all-mpnet-base-v2 on Replicate; locally MiniLM is the light default.
    embedder: Backend = _setting("local", "EMBEDDER_BACKEND")
    embedding_model: str = _setting("all-MiniLM-L6-v2", "EMBEDDING_MODEL", "LOCAL_MODEL")
    # What /v1/embeddings serves: the index's model, and (local backend) other embedded models.
    served_models: tuple[str, ...] = _setting((), "SERVED_MODELS")
    model_threads: int | None = _setting(None, "MODEL_THREADS", positive=True)
    upstream_url: str | None = _setting(None, "EMBEDDINGS_UPSTREAM_URL", parse=_base_url)  # before /embeddings
    upstream_api_key: str | None = _setting(None, "EMBEDDINGS_UPSTREAM_API_KEY", secret=True)
    upstream_api_key_param: str | None = _setting(None, "EMBEDDINGS_UPSTREAM_API_KEY_PARAM")
    upstream_model: str | None = _setting(None, "EMBEDDINGS_UPSTREAM_MODEL")  # default: embedding_model
    upstream_timeout_s: float = _setting(30.0, "EMBEDDINGS_UPSTREAM_TIMEOUT_S")
    embeddings_max_inputs: int = _setting(256, "EMBEDDINGS_MAX_INPUTS", positive=True)  # Lambda answers ≤ 6 MB
    documents_max_per_request: int = _setting(100, "MAX_DOCUMENTS_PER_REQUEST", positive=True)
    document_max_chars: int = _setting(1_000_000, "MAX_DOCUMENT_CHARS", positive=True)
    # emf (CloudWatch, in Lambda) | prometheus (the local stack's /metrics) | none
    metrics: MetricsBackend = _setting("none", "METRICS_BACKEND")
    replicate_api_base: str = _setting("https://api.replicate.com/v1", "REPLICATE_API_BASE", parse=_base_url)
    replicate_api_token: str | None = _setting(None, "REPLICATE_API_TOKEN", secret=True)
    replicate_timeout_s: float = _setting(10.0, "REPLICATE_TIMEOUT_S")  # per call; 429/5xx/timeouts retried
    replicate_api_token_param: str | None = _setting(None, "REPLICATE_API_TOKEN_PARAM")
    replicate_embedding_version: str = _setting("b6b7585c9640cd7a9572c6e129c9549d79c9c31f0d3fdce7baac7c67ca38f305",
                                                "REPLICATE_EMBEDDING_VERSION")
    replicate_whisper_version: str = _setting("4d50797290df275329f202e48c76360b3f22b08d28c196cbc54600319435f8d2",
                                              "REPLICATE_WHISPER_VERSION")
    whisper_model: str = _setting("large-v3", "WHISPER_MODEL")
    # The vision model that reads images (lucataco/qwen2-vl-7b-instruct; docs/decisions.md).
    replicate_vision_version: str = _setting("bf57361c75677fc33d480d0c5f02926e621b2caa2000347cb74aeae9d2ca07ee",
                                             "REPLICATE_VISION_VERSION")
    # Text detection on scanned pages (Amazon Textract's asynchronous API, or the local stand-in at
    # textract_endpoint_url): the SNS topic that feeds the webhook queue and the role Textract
    # publishes with. Unset topic: a PDF page without a text layer is left unread.
    ocr_topic_arn: str | None = _setting(None, "OCR_TOPIC_ARN")
    ocr_role_arn: str | None = _setting(None, "OCR_ROLE_ARN")
    textract_endpoint_url: str | None = _setting(None, "TEXTRACT_ENDPOINT_URL")
    # A PDF page with fewer characters of text than this is read by OCR (a scan, or a scan
    # with a stray header line).
    ocr_min_page_chars: int = _setting(20, "OCR_MIN_PAGE_CHARS")
    # Images: more pixels than this is a decompression bomb (a 100,000 x 100,000 PNG header);
    # a TIFF of more pages than image_max_frames is refused (its first page is what is read).
    image_max_pixels: int = _setting(50_000_000, "IMAGE_MAX_PIXELS", positive=True)
    image_max_frames: int = _setting(20, "IMAGE_MAX_FRAMES", positive=True)
    replicate_webhook_secret: str | None = _setting(None, "REPLICATE_WEBHOOK_SECRET", secret=True)
    replicate_webhook_secret_param: str | None = _setting(None, "REPLICATE_WEBHOOK_SECRET_PARAM")
    public_base_url: str | None = _setting(None, "PUBLIC_BASE_URL", parse=_base_url)

    staging_bucket: str = _setting("allthethings-staging", "STAGING_BUCKET")
    process_queue_url: str | None = _setting(None, "PROCESS_QUEUE_URL")
    fetch_queue_url: str | None = _setting(None, "FETCH_QUEUE_URL")
    # The embedded parts of the local stack (LOCAL_AWS=embedded): queues and staged bodies in this
    # folder instead of SQS and S3 (the *_QUEUE_URL settings then name queues), presigned URLs served
    # at embedded_blob_url and signed with embedded_blob_secret. Unset: SQS and S3 through boto3.
    embedded_aws_dir: str | None = _setting(None, "EMBEDDED_AWS_DIR")
    embedded_blob_url: str | None = _setting(None, "EMBEDDED_BLOB_URL", parse=_base_url)
    embedded_blob_secret: str | None = _setting(None, "EMBEDDED_BLOB_SECRET", secret=True)
    webhook_queue_url: str | None = _setting(None, "WEBHOOK_QUEUE_URL")
    # Which signature a webhook must carry: Replicate's own (Standard Webhooks), or Hookdeck's
    # when Replicate's deliveries are routed through a Hookdeck connection.
    webhook_signature: WebhookSignature = _setting("replicate", "WEBHOOK_SIGNATURE")
    hookdeck_signing_secret: str | None = _setting(None, "HOOKDECK_SIGNING_SECRET", secret=True)
    hookdeck_signing_secret_param: str | None = _setting(None, "HOOKDECK_SIGNING_SECRET_PARAM")
    # A Hookdeck source whose destination is Replicate's API: asynchronous predictions are
    # created through it (queued and retried by Hookdeck); synchronous calls go straight to Replicate.
    hookdeck_source_url: str | None = _setting(None, "HOOKDECK_SOURCE_URL")

    # API keys (`name=key,...`) for every route but health, webhooks, the API description and
    # sign-in; search too unless search_access is public.
    api_keys: str | None = _setting(None, "API_KEYS", secret=True)
    api_keys_param: str | None = _setting(None, "API_KEYS_PARAM")
    search_access: SearchAccess = _setting("key", "SEARCH_ACCESS")

    # The sweeper: an unfinished asset not updated for stuck_after_s is looked at; one still
    # unfinished after give_up_after_s is failed (retryable). api_url: the API's origin, for the
    # webhook URLs of the predictions it starts (it serves no request whose origin it could use).
    stuck_after_s: float = _setting(900.0, "STUCK_AFTER_S")
    give_up_after_s: float = _setting(6 * 3600.0, "GIVE_UP_AFTER_S")
    api_url: str | None = _setting(None, "API_URL")

    allow_private_urls: bool = _setting(False, "ALLOW_PRIVATE_URLS")
    # One MAX_BYTES_<KIND> per field of SizeLimits (MAX_BYTES_PDF=50MiB), sizes like 20MiB.
    size_limits: SizeLimits = _setting(SizeLimits())
    fetch_timeout_s: float = _setting(20.0, "FETCH_TIMEOUT_S")
    # Submission reads a body whole, and stages it at once, only while it takes under
    # inline_fetch_s and inline_fetch_bytes; anything larger or slower is fetched behind the
    # fetch queue, in multipart parts of fetch_part_bytes, for up to fetch_slice_s per
    # invocation, then continued with an HTTP Range request in the next.
    inline_fetch_s: float = _setting(1.0, "INLINE_FETCH_S")
    inline_fetch_bytes: int = _setting(8 * 1024 * 1024, "INLINE_FETCH_BYTES", positive=True)
    fetch_part_bytes: int = _setting(8 * 1024 * 1024, "FETCH_PART_BYTES", positive=True)
    fetch_slice_s: float = _setting(840.0, "FETCH_SLICE_S", positive=True)
    # Sources (feeds and sitemaps): at most source_max_items items taken from one read; items are
    # submitted by the source worker with at most source_host_concurrency requests at once to
    # one host and source_host_delay_s between the starts of two requests to it; a source is
    # read again every source_refresh_s unless it says otherwise; a worker invocation submits
    # for up to source_slice_s, then queues the rest.
    source_queue_url: str | None = _setting(None, "SOURCE_QUEUE_URL")
    source_max_items: int = _setting(1_000, "SOURCE_MAX_ITEMS", positive=True)
    source_host_concurrency: int = _setting(2, "SOURCE_HOST_CONCURRENCY", positive=True)
    source_host_delay_s: float = _setting(0.5, "SOURCE_HOST_DELAY_S")
    source_refresh_s: int = _setting(3600, "SOURCE_REFRESH_S", positive=True)
    source_slice_s: float = _setting(600.0, "SOURCE_SLICE_S", positive=True)
    source_max_bytes: int = _setting(50 * 1024 * 1024, "SOURCE_MAX_BYTES", positive=True, parse=lambda v: _size(
        v, "SOURCE_MAX_BYTES"))
    # A queued message or webhook delivery larger than this travels by claim check: its body is
    # stored in the staging bucket and the message carries a pointer (SQS takes at most 1 MiB,
    # and a Lambda batch of ten at most 6 MB).
    claim_check_bytes: int = _setting(192 * 1024, "CLAIM_CHECK_BYTES", positive=True)
    # At most this many chunks per embedding prediction, so that no webhook body (about 16.6 KB
    # of JSON per 768-d vector) comes near API Gateway's 6 MB or SQS's 1 MiB.
    embedding_group_chunks: int = _setting(48, "EMBEDDING_GROUP_CHUNKS", positive=True)
    query_cache_ttl_s: float = _setting(600.0, "QUERY_CACHE_TTL_S")
    # A vector hit less similar to the query (cosine) than this is no match; None: the model's
    # calibrated floor (domain/embedding.py's catalog, bench/similarity_floor.py), -1: no floor.
    search_min_similarity: float | None = _setting(None, "SEARCH_MIN_SIMILARITY")
    chunk_tokens: int = _setting(200, "CHUNK_TOKENS", positive=True)
    chunk_overlap: int = _setting(40, "CHUNK_OVERLAP")
    # A chunk of a transcript spans at most this many seconds of speech, whatever its tokens,
    # so a result's start_s/end_s bound where the words are said (BENCHMARKS.md: 20 s puts the
    # median error of start_s under 10 s by chunks alone; 30 s does not).
    chunk_max_seconds: float = _setting(20.0, "CHUNK_MAX_SECONDS", positive=True)

    def __post_init__(self) -> None:
        if self.sqlite_path is None:
            object.__setattr__(self, "sqlite_path", os.path.join(self.data_dir, "allthethings.db"))
        problems = [problem for field in dataclasses.fields(self)
                    if (problem := _out_of_range(field, getattr(self, field.name)))]
        if problems:
            raise ValueError("; ".join(problems))
        self._check_backends()

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

    def _check_backends(self) -> None:
        for model in self.models_served:
            if model not in CATALOG:
                raise ValueError(f"EMBEDDING_MODEL and SERVED_MODELS must be among {sorted(CATALOG)}, not {model!r}")
            if self.embedder in ("local", "replicate") and not CATALOG[model].local:
                local = sorted(name for name, spec in CATALOG.items() if spec.local)
                raise ValueError(f"{model} is not a sentence-transformers model: with EMBEDDER_BACKEND={self.embedder} "
                                 f"use one of {local}, or EMBEDDER_BACKEND=openai with an upstream that serves it")
        if self.embedder != "local" and self.served_models not in ((), (self.embedding_model,)):
            raise ValueError("SERVED_MODELS can add models only with EMBEDDER_BACKEND=local; a remote backend "
                             "serves EMBEDDING_MODEL")
        if self.embedder == "openai" and not self.upstream_url:
            raise ValueError("EMBEDDER_BACKEND=openai needs EMBEDDINGS_UPSTREAM_URL (for example http://tei:8080/v1)")


@functools.cache
def _types() -> dict[str, Any]:
    """Each field's type, resolved once (the annotations are strings until asked)."""
    return typing.get_type_hints(Settings)


def _variable(field: dataclasses.Field) -> str:
    return (field.metadata.get("env") or (field.name,))[0]


def _out_of_range(field: dataclasses.Field, value: Any) -> str | None:
    """Why a value cannot be this field's (its choices, or a positive number), else None."""
    kind = _types()[field.name]
    if typing.get_origin(kind) is Literal and value not in typing.get_args(kind):
        return f"{_variable(field)} must be one of {', '.join(typing.get_args(kind))}, not {value!r}"
    if field.metadata.get("positive") and value is not None and value <= 0:
        return f"{_variable(field)} must be a positive number, not {str(value)!r}"
    if field.name == "search_min_similarity" and value is not None and not -1.0 <= value <= 1.0:
        return f"{_variable(field)} must be a cosine similarity between -1 and 1, not {str(value)!r}"
    return None


def _parse(field: dataclasses.Field, raw: str) -> Any:
    """The value an environment variable's text stands for, by the field's type; ValueError
    names the variable and what it may be."""
    kind, variable = _types()[field.name], _variable(field)
    if isinstance(kind, types.UnionType):  # `X | None`: a set variable is an X
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if field.metadata.get("parse"):
        return field.metadata["parse"](raw)
    if typing.get_origin(kind) is Literal:
        return raw.strip().lower()  # checked against the choices when the settings are made
    if kind is bool:
        if raw.strip().lower() not in _FLAGS:
            raise ValueError(f"{variable} must be one of {', '.join(_FLAGS)}, not {raw!r}")
        return _FLAGS[raw.strip().lower()]
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{variable} must be a whole number, not {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{variable} must be a number, not {raw!r}") from None
    if typing.get_origin(kind) is tuple:  # a comma list
        return tuple(filter(None, (item.strip() for item in raw.split(","))))
    return raw


def _size(value: str, name: str) -> int:
    """Bytes, written plainly or with a binary unit: 500000, 20MiB, 2GiB."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    if not (number.isascii() and number.isdigit()) or int(number) <= 0:
        raise ValueError(f"{name} must be a positive size like 20MiB, not {value!r}")
    return int(number) * scale


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings in `env` (default os.environ) and nothing else; an empty value is an unset one.
    ValueError names each variable at fault and what it may be."""
    env = os.environ if env is None else env
    given: dict[str, Any] = {}
    problems = []
    for field in dataclasses.fields(Settings):
        variable = next((v for v in field.metadata.get("env", ()) if env.get(v)), None)
        if variable is None:
            continue
        try:
            given[field.name] = _parse(field, env[variable])
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if problem := _out_of_range(field, given[field.name]):
            problems.append(problem)
    sizes = {}
    for kind in (f.name for f in dataclasses.fields(SizeLimits)):
        name = f"MAX_BYTES_{kind.upper()}"
        if env.get(name):
            try:
                sizes[kind] = _size(env[name], name)
            except ValueError as exc:
                problems.append(str(exc))
    if sizes:
        given["size_limits"] = SizeLimits(**sizes)
    if problems:
        raise ValueError("; ".join(problems))
    return Settings(**given)
