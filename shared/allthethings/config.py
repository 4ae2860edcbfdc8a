"""Settings: declared once below, with their types, choices and environment variables, and read
from an environment only when `load_settings` is called (never at import time).

Values only: nothing here does I/O. Secrets are never plain settings in the cloud:
`X_PARAM` names an SSM SecureString parameter that holds X, which the secrets adapter
(behind the `Secrets` port) reads; locally, X itself may be set.

A pydantic model, not pydantic-settings: that library reads os.environ (and .env files) by
design, while `load_settings(env)` must read only the mapping it is given and `Settings(...)`
by field name nothing at all; without its sources it would add only import time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    model_validator,
)

from allthethings.domain.content import SizeLimits
from allthethings.domain.embedding import CATALOG


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _base_url(value: Any) -> Any:
    """A base URL that paths are appended to: without its trailing slash."""
    return (value.rstrip("/") or None) if isinstance(value, str) else value


def _comma_list(value: Any) -> Any:
    return tuple(filter(None, (item.strip() for item in value.split(",")))) if isinstance(value, str) else value


def _size(value: str | int, name: str) -> int:
    """Bytes, written plainly or with a binary unit: 500000, 20MiB, 2GiB."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{name} must be a positive size like 20MiB, not {value!r}")
    return int(number) * scale


def _size_limits(value: Any) -> Any:
    """SizeLimits from {kind: size}, one MAX_BYTES_<KIND> each; a kind not given keeps its default."""
    if not isinstance(value, Mapping):
        return value
    return SizeLimits(**{kind: _size(size, f"MAX_BYTES_{kind.upper()}") for kind, size in value.items()})


# Enum-like values are compared lower-cased: "Atlas" is atlas.
Store = Annotated[Literal["sqlite", "atlas"], BeforeValidator(_lower)]
RankFusion = Annotated[Literal["auto", "server", "client"], BeforeValidator(_lower)]
Embedder = Annotated[Literal["local", "replicate", "openai"], BeforeValidator(_lower)]
Metrics = Annotated[Literal["emf", "prometheus", "none"], BeforeValidator(_lower)]
WebhookSignature = Annotated[Literal["replicate", "hookdeck"], BeforeValidator(_lower)]
SearchAccess = Annotated[Literal["key", "public"], BeforeValidator(_lower)]
BaseUrl = Annotated[str, BeforeValidator(_base_url)]
Flag = Annotated[bool, BeforeValidator(_lower)]  # 1/true/yes/on or 0/false/no/off
Names = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]  # a comma list in the environment


class Settings(BaseModel):
    """Every setting, by field name in code (`Settings(chunk_tokens=20)`), by environment
    variable (the validation alias) in `load_settings`. Secrets, and MONGODB_URI (it may hold a
    password), are left out of the repr, which a log line may show."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", protected_namespaces=())

    store: Store = Field("sqlite", validation_alias="STORE_BACKEND")
    # Only the default of sqlite_path: $DATA_DIR/allthethings.db when SQLITE_PATH is not set.
    data_dir: str = Field(".data", validation_alias="DATA_DIR")
    sqlite_path: str = Field(".data/allthethings.db", validation_alias="SQLITE_PATH")
    mongodb_uri: str | None = Field(None, validation_alias="MONGODB_URI", repr=False)
    mongodb_uri_param: str | None = Field(None, validation_alias="MONGODB_URI_PARAM")
    mongodb_database: str = Field("allthethings", validation_alias="MONGODB_DATABASE")
    vector_index: str = Field("chunk_vectors", validation_alias="VECTOR_INDEX")
    text_index: str = Field("chunk_text", validation_alias="TEXT_INDEX")
    # auto (by server version) | server ($rankFusion) | client
    rank_fusion: RankFusion = Field("auto", validation_alias="RANK_FUSION")

    # The one embedding backend that indexing, search and /v1/embeddings all use: the embedded
    # models (local), Replicate, or any OpenAI-compatible upstream (OpenAI, a Text Embeddings
    # Inference server). Deployed: all-mpnet-base-v2 on Replicate; locally MiniLM is the light default.
    embedder: Embedder = Field("local", validation_alias="EMBEDDER_BACKEND")
    embedding_model: str = Field("all-MiniLM-L6-v2", validation_alias=AliasChoices("EMBEDDING_MODEL", "LOCAL_MODEL"))
    # What /v1/embeddings serves: the index's model, and (local backend) other embedded models.
    served_models: Names = Field((), validation_alias="SERVED_MODELS")
    model_threads: int | None = Field(None, validation_alias="MODEL_THREADS")
    # The upstream's base URL, the part before /embeddings.
    upstream_url: BaseUrl | None = Field(None, validation_alias="EMBEDDINGS_UPSTREAM_URL")
    upstream_api_key: str | None = Field(None, validation_alias="EMBEDDINGS_UPSTREAM_API_KEY", repr=False)
    upstream_api_key_param: str | None = Field(None, validation_alias="EMBEDDINGS_UPSTREAM_API_KEY_PARAM")
    # The upstream's name for the model; default embedding_model.
    upstream_model: str | None = Field(None, validation_alias="EMBEDDINGS_UPSTREAM_MODEL")
    upstream_timeout_s: float = Field(30.0, validation_alias="EMBEDDINGS_UPSTREAM_TIMEOUT_S")
    # Per /v1/embeddings call; Lambda answers are at most 6 MB.
    embeddings_max_inputs: int = Field(256, gt=0, validation_alias="EMBEDDINGS_MAX_INPUTS")
    documents_max_per_request: int = Field(100, gt=0, validation_alias="MAX_DOCUMENTS_PER_REQUEST")
    document_max_chars: int = Field(1_000_000, gt=0, validation_alias="MAX_DOCUMENT_CHARS")
    # emf (CloudWatch, in Lambda) | prometheus (the local stack's /metrics) | none
    metrics: Metrics = Field("none", validation_alias="METRICS_BACKEND")
    replicate_api_base: BaseUrl = Field("https://api.replicate.com/v1", validation_alias="REPLICATE_API_BASE")
    replicate_api_token: str | None = Field(None, validation_alias="REPLICATE_API_TOKEN", repr=False)
    # Per HTTP call; 429, 5xx and timeouts are retried with backoff.
    replicate_timeout_s: float = Field(10.0, validation_alias="REPLICATE_TIMEOUT_S")
    replicate_api_token_param: str | None = Field(None, validation_alias="REPLICATE_API_TOKEN_PARAM")
    replicate_embedding_version: str = Field("b6b7585c9640cd7a9572c6e129c9549d79c9c31f0d3fdce7baac7c67ca38f305",
                                             validation_alias="REPLICATE_EMBEDDING_VERSION")
    replicate_whisper_version: str = Field("4d50797290df275329f202e48c76360b3f22b08d28c196cbc54600319435f8d2",
                                           validation_alias="REPLICATE_WHISPER_VERSION")
    whisper_model: str = Field("large-v3", validation_alias="WHISPER_MODEL")
    replicate_webhook_secret: str | None = Field(None, validation_alias="REPLICATE_WEBHOOK_SECRET", repr=False)
    replicate_webhook_secret_param: str | None = Field(None, validation_alias="REPLICATE_WEBHOOK_SECRET_PARAM")
    public_base_url: str | None = Field(None, validation_alias="PUBLIC_BASE_URL")

    staging_bucket: str = Field("allthethings-staging", validation_alias="STAGING_BUCKET")
    process_queue_url: str | None = Field(None, validation_alias="PROCESS_QUEUE_URL")
    webhook_queue_url: str | None = Field(None, validation_alias="WEBHOOK_QUEUE_URL")
    # Which signature a webhook must carry: Replicate's own (Standard Webhooks), or Hookdeck's
    # when Replicate's deliveries are routed through a Hookdeck connection.
    webhook_signature: WebhookSignature = Field("replicate", validation_alias="WEBHOOK_SIGNATURE")
    hookdeck_signing_secret: str | None = Field(None, validation_alias="HOOKDECK_SIGNING_SECRET", repr=False)
    hookdeck_signing_secret_param: str | None = Field(None, validation_alias="HOOKDECK_SIGNING_SECRET_PARAM")
    # A Hookdeck source whose destination is Replicate's API: asynchronous predictions are
    # created through it (queued and retried by Hookdeck); synchronous calls go straight to Replicate.
    hookdeck_source_url: str | None = Field(None, validation_alias="HOOKDECK_SOURCE_URL")

    # API keys (`name=key,...`) for every route but health, webhooks, the API description and
    # sign-in; search too unless search_access is public.
    api_keys: str | None = Field(None, validation_alias="API_KEYS", repr=False)
    api_keys_param: str | None = Field(None, validation_alias="API_KEYS_PARAM")
    search_access: SearchAccess = Field("key", validation_alias="SEARCH_ACCESS")

    # The sweeper: an unfinished asset not updated for stuck_after_s is looked at; one still
    # unfinished after give_up_after_s is failed (retryable). api_url: the API's origin, for the
    # webhook URLs of the predictions it starts (it serves no request whose origin it could use).
    stuck_after_s: float = Field(900.0, validation_alias="STUCK_AFTER_S")
    give_up_after_s: float = Field(6 * 3600.0, validation_alias="GIVE_UP_AFTER_S")
    api_url: str | None = Field(None, validation_alias="API_URL")

    allow_private_urls: Flag = Field(False, validation_alias="ALLOW_PRIVATE_URLS")
    # One MAX_BYTES_<KIND> per field of SizeLimits (MAX_BYTES_PDF=50MiB), gathered by load_settings.
    size_limits: Annotated[InstanceOf[SizeLimits], BeforeValidator(_size_limits)] = SizeLimits()
    fetch_timeout_s: float = Field(20.0, validation_alias="FETCH_TIMEOUT_S")
    query_cache_ttl_s: float = Field(600.0, validation_alias="QUERY_CACHE_TTL_S")
    chunk_tokens: int = Field(200, validation_alias="CHUNK_TOKENS")
    chunk_overlap: int = Field(40, validation_alias="CHUNK_OVERLAP")

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

    @model_validator(mode="before")
    @classmethod
    def _sqlite_in_data_dir(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not (data.get("SQLITE_PATH") or data.get("sqlite_path")):
            data_dir = data.get("DATA_DIR") or data.get("data_dir") or ".data"
            data = {**data, "sqlite_path": os.path.join(data_dir, "allthethings.db")}
        return data

    @model_validator(mode="after")
    def _backends_that_can_work(self) -> Settings:
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
        return self


# Field name -> its environment variables, and back (the variables are the validation aliases).
_ENV = {name: tuple(field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices)
                    else [field.validation_alias])
        for name, field in Settings.model_fields.items() if field.validation_alias}
_FIELD = {variable: name for name, variables in _ENV.items() for variable in variables}
_SIZE_KINDS = tuple(f.name for f in dataclasses.fields(SizeLimits))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings in `env` (default os.environ) and nothing else; an empty value is an unset one.
    ValueError names each variable at fault and what it may be."""
    env = os.environ if env is None else env
    given: dict[str, Any] = {}
    for variables in _ENV.values():
        # The first of a field's variables that is set: EMBEDDING_MODEL before LOCAL_MODEL.
        variable = next((v for v in variables if env.get(v)), None)
        if variable is not None:
            given[variable] = env[variable]
    sizes = {kind: env[f"MAX_BYTES_{kind.upper()}"] for kind in _SIZE_KINDS if env.get(f"MAX_BYTES_{kind.upper()}")}
    if sizes:
        given["size_limits"] = sizes
    try:
        return Settings.model_validate(given)
    except ValidationError as exc:
        raise ValueError("; ".join(_explain(error) for error in exc.errors())) from None


def _explain(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence about the environment variable at fault."""
    if error["type"] == "value_error":  # our own validators' messages name their variables
        return str(error["ctx"]["error"])
    where = str(error["loc"][0]) if error["loc"] else "settings"
    field = _FIELD.get(where, where)
    variable = _ENV.get(field, (where,))[0]
    value = error.get("input")
    if error["type"] == "literal_error":
        choices = get_args(Settings.model_fields[field].annotation)
        return f"{variable} must be one of {', '.join(choices)}, not {value!r}"
    if error["type"] in ("greater_than", "greater_than_equal"):
        return f"{variable} must be a positive number, not {value!r}"
    if error["type"] in ("int_parsing", "int_from_float", "int_type"):
        return f"{variable} must be a whole number, not {value!r}"
    if error["type"] in ("float_parsing", "float_type"):
        return f"{variable} must be a number, not {value!r}"
    if error["type"] in ("bool_parsing", "bool_type"):
        return f"{variable} must be one of 1, true, yes, on, 0, false, no, off, not {value!r}"
    return f"{variable}: {error['msg']}, not {value!r}"
