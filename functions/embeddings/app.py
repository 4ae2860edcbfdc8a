"""Embeddings function: an OpenAI-compatible embeddings API. Trigger: HTTP API.

Routes: POST /v1/embeddings {"input": str | [str], "model", "dimensions"?, "encoding_format"?:
"float" | "base64", "user"?} -> {"object": "list", "data": [{"object": "embedding", "index",
"embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}; GET /v1/models; GET
/v1/models/{model}. The key goes in `Authorization: Bearer`, as OpenAI's clients send it.
Errors take OpenAI's shape {"error": {"message", "type", "param", "code"}}: 400 for a bad
parameter (named in `param`), 404 model_not_found for a model not served here, 401
invalid_api_key without a valid key (the authorizer lets these routes through marked, so that
OpenAI's clients get the answer they know, and every route checks the mark before anything else).
"""

from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.domain.errors import Unauthorized
from allthethings.entrypoints import logs
from allthethings.entrypoints.resolver import api, json_body, needs_signin
from allthethings.services.embeddings_api import create_embeddings, get_model, list_models

logger = logs.logger()
app = api(logger, openai_errors=True)


def _require_key() -> None:
    if needs_signin(app):
        raise Unauthorized("no valid API key: send one of this deployment's keys as `Authorization: Bearer KEY`")


@app.post("/v1/embeddings")
def embeddings() -> dict:
    _require_key()
    return create_embeddings(json_body(app), bootstrap.deps())


@app.get("/v1/models")
def models() -> dict:
    _require_key()
    return list_models(bootstrap.deps())


@app.get("/v1/models/<model>")
def model(model: str) -> dict:
    _require_key()
    return get_model(model, bootstrap.deps())


@app.get("/v1/models/<owner>/<name>")  # the template's {model+}: a Hugging Face name holds a slash
def owned_model(owner: str, name: str) -> dict:
    return model(f"{owner}/{name}")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
