"""The OpenAI-compatible embeddings service: the models served, and embeddings on request.

The same backend the index uses answers (one setting moves both), so a vector from
/v1/embeddings is exactly the vector a search would compare against the index. Each
input is counted with the model's own tokenizer before the model runs: an input over the
model's window is refused (naming the limit) rather than silently cut short, and `usage`
reports the tokens the model read.
"""

from __future__ import annotations

import time

from allthethings.domain.embedding import (
    CATALOG,
    EmbeddingRequest,
    check_dimensions,
    encode_base64,
    find_model,
    parse_request,
    shorten,
)
from allthethings.domain.errors import InvalidInput, NotFound
from allthethings.services import Deps

# A fixed creation time for the listing (OpenAI's field; our models have no meaningful one).
_CREATED = 1_700_000_000


def _describe(name: str) -> dict:
    spec = CATALOG[name]
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": spec.owned_by,
            "dimensions": spec.dimensions, "max_input_tokens": spec.max_tokens,
            "shortenable": spec.shortenable}


def list_models(deps: Deps) -> dict:
    return {"object": "list", "data": [_describe(name) for name in deps.served_models()]}


def get_model(name: str, deps: Deps) -> dict:
    return _describe(_served(name, deps))


def _served(name: str, deps: Deps) -> str:
    found = find_model(name, list(deps.served_models()))
    if found is None:
        raise NotFound(f"The model `{name}` does not exist or is not served here; GET /v1/models lists those that are",
                       param="model")
    return found


def create_embeddings(body: object, deps: Deps) -> dict:
    """Answer a /v1/embeddings request body with OpenAI's response shape."""
    request = parse_request(body, deps.settings.embeddings_max_inputs)
    name = _served(request.model, deps)
    spec, served = CATALOG[name], deps.served_models()[name]
    cut = check_dimensions(spec, request.dimensions)
    tokens = _count_tokens(request, served.tokenizer, spec.max_tokens, name)

    started = time.perf_counter()
    vectors, reported = served.embedder.embed_counted(list(request.inputs))
    deps.metrics.latency("embeddings_latency", time.perf_counter() - started)
    deps.metrics.count("embedding_inputs", len(vectors))
    if cut is not None:
        vectors = [shorten(v, cut) for v in vectors]
    used = reported if reported is not None else tokens
    encode = encode_base64 if request.encoding_format == "base64" else list
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "model": name,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }


def _count_tokens(request: EmbeddingRequest, tokenizer, max_tokens: int, model: str) -> int | None:
    if tokenizer is None:
        return None  # the upstream counts, and refuses what is too long
    total = 0
    for i, text in enumerate(request.inputs):
        count = tokenizer.count(text)
        if count > max_tokens:
            where = "input" if len(request.inputs) == 1 else f"input[{i}]"
            raise InvalidInput(f"{where} is {count} tokens; {model} reads at most {max_tokens} tokens per input",
                               param="input")
        total += count
    return total
