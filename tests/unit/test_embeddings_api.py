"""/v1/embeddings and /v1/models: every parameter's errors, OpenAI's shapes, and what the model sees.

The handler is called through the template's routes and the authorizer (`call`); the model is a
fake with a catalog model's name, and the tokenizer is the real one shipped in the layer.
"""

import base64
import math
import struct

import pytest

from allthethings import bootstrap
from allthethings.adapters.models import packaged_tokenizer
from allthethings.config import Settings
from allthethings.domain.embedding import CATALOG, check_dimensions, encode_base64, find_model, parse_request, shorten
from allthethings.domain.errors import InvalidInput
from allthethings.ports import ServedModel
from tests.fakes import FakeEmbedder, fake_deps, word_vector
from tests.unit.test_handlers import call

MINILM = "all-MiniLM-L6-v2"


class CatalogFake(FakeEmbedder):
    """The fake model under a catalog name, with that model's size; it counts tokens like an upstream would
    when `reports` is set."""

    def __init__(self, name=MINILM, reports=None):
        super().__init__()
        spec = CATALOG[name]
        self.model, self.dimensions, self.max_tokens = name, spec.dimensions, spec.max_tokens
        self.reports = reports

    def embed(self, texts):
        self.calls.append(list(texts))
        return [word_vector(t, self.dimensions) for t in texts]

    def embed_counted(self, texts):
        return self.embed(texts), self.reports


@pytest.fixture
def served():
    minilm = CatalogFake()
    upstream = CatalogFake("text-embedding-3-small", reports=42)
    deps = fake_deps(settings=Settings(api_keys="unit=unit_" + "k" * 24, embeddings_max_inputs=8),
                     embedder=minilm, tokenizer=packaged_tokenizer(MINILM),
                     served={MINILM: ServedModel(minilm, packaged_tokenizer(MINILM)),
                             "text-embedding-3-small": ServedModel(upstream, None)})
    with bootstrap.use(deps):
        yield deps


def embed(body):
    import json

    return call("POST", "/v1/embeddings", json.dumps(body), headers={"content-type": "application/json"})


def test_a_single_string_gets_one_unit_vector_with_its_real_token_count(served):
    status, body = embed({"input": "The lighthouse keeper trimmed the wick.", "model": MINILM})
    assert status == 200
    assert body["object"] == "list" and body["model"] == MINILM
    assert [d["object"] for d in body["data"]] == ["embedding"] and body["data"][0]["index"] == 0
    vector = body["data"][0]["embedding"]
    assert vector == pytest.approx(word_vector("The lighthouse keeper trimmed the wick.", 384))
    tokens = packaged_tokenizer(MINILM).count("The lighthouse keeper trimmed the wick.")
    assert tokens >= 9  # the words, the full stop, [CLS] and [SEP]
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_a_list_keeps_its_order_and_base64_decodes_to_the_same_floats(served):
    texts = ["first text", "second one", "third"]
    _, floats = embed({"input": texts, "model": MINILM, "encoding_format": "float"})
    status, packed = embed({"input": texts, "model": MINILM, "encoding_format": "base64"})
    assert status == 200 and [d["index"] for d in packed["data"]] == [0, 1, 2]
    for plain, coded, text in zip(floats["data"], packed["data"], texts, strict=True):
        raw = base64.b64decode(coded["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert decoded == pytest.approx(plain["embedding"], abs=1e-7)
        assert plain["embedding"] == pytest.approx(word_vector(text, 384))
    assert served.embedder.calls[-1] == texts, "one model call for the whole list"


def test_an_alias_and_the_native_size_are_accepted(served):
    status, body = embed({"input": "x y", "model": f"sentence-transformers/{MINILM}", "dimensions": 384,
                          "user": "someone"})
    assert status == 200 and body["model"] == MINILM and len(body["data"][0]["embedding"]) == 384


def test_a_shortenable_model_cuts_and_renormalises_and_passes_on_the_upstreams_usage(served):
    status, body = embed({"input": ["a b c"], "model": "text-embedding-3-small", "dimensions": 256})
    assert status == 200
    vector = body["data"][0]["embedding"]
    assert len(vector) == 256 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-9)
    assert vector == pytest.approx(shorten(word_vector("a b c", 1536), 256))
    assert body["usage"]["prompt_tokens"] == 42, "the upstream's count, not ours"


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"model": MINILM}, "input", "provide an input"),
    ({"input": None, "model": MINILM}, "input", "provide an input"),
    ({"input": "", "model": MINILM}, "input", "must not be empty"),
    ({"input": "   ", "model": MINILM}, "input", "must not be empty"),
    ({"input": [], "model": MINILM}, "input", "empty list"),
    ({"input": ["ok", ""], "model": MINILM}, "input", "input[1] must not be empty"),
    ({"input": ["ok", 3.5], "model": MINILM}, "input", "input[1] must be a string"),
    ({"input": {"text": "x"}, "model": MINILM}, "input", "string or a list of strings"),
    ({"input": [101, 2023], "model": MINILM}, "input", "token arrays"),
    ({"input": [[101, 2023]], "model": MINILM}, "input", "token arrays"),
    ({"input": ["t"] * 9, "model": MINILM}, "input", "at most 8"),
    ({"input": "word " * 300, "model": MINILM}, "input", "at most 256 tokens"),
    ({"input": ["fine", "word " * 300], "model": MINILM}, "input", "input[1] is 302 tokens"),
    ({"input": "x"}, "model", "provide a model"),
    ({"input": "x", "model": 7}, "model", "non-empty string"),
    ({"input": "x", "model": ""}, "model", "non-empty string"),
    ({"input": "x", "model": MINILM, "dimensions": 0}, "dimensions", "positive integer"),
    ({"input": "x", "model": MINILM, "dimensions": -3}, "dimensions", "positive integer"),
    ({"input": "x", "model": MINILM, "dimensions": "128"}, "dimensions", "positive integer"),
    ({"input": "x", "model": MINILM, "dimensions": 12.5}, "dimensions", "positive integer"),
    ({"input": "x", "model": MINILM, "dimensions": True}, "dimensions", "positive integer"),
    ({"input": "x", "model": MINILM, "dimensions": 128}, "dimensions", "does not support shortened vectors"),
    ({"input": "x", "model": MINILM, "dimensions": 385}, "dimensions", "at most 384"),
    ({"input": "x", "model": "text-embedding-3-small", "dimensions": 2000}, "dimensions", "at most 1536"),
    ({"input": "x", "model": MINILM, "encoding_format": "int8"}, "encoding_format", "float, base64"),
    ({"input": "x", "model": MINILM, "encoding_format": 1}, "encoding_format", "float, base64"),
    ({"input": "x", "model": MINILM, "user": 5}, "user", "must be a string"),
    ({"input": "x", "model": MINILM, "truncate": True}, "truncate", "Unrecognized request argument"),
])
def test_each_bad_parameter_is_a_400_naming_it_in_openais_error_shape(served, body, param, words):
    status, answer = embed(body)
    assert status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]
    assert served.embedder.calls == [], "the model never ran"


def test_a_body_that_is_not_a_json_object_is_a_400(served):
    assert call("POST", "/v1/embeddings", "{not json")[1]["error"]["type"] == "invalid_request_error"
    status, answer = call("POST", "/v1/embeddings", "[1, 2]")
    assert status == 400 and "JSON object" in answer["error"]["message"]


def test_an_unknown_model_is_a_404_model_not_found(served):
    status, answer = embed({"input": "x", "model": "text-embedding-ada-002"})
    assert status == 404
    assert answer["error"]["code"] == "model_not_found" and answer["error"]["param"] == "model"
    assert "text-embedding-ada-002" in answer["error"]["message"]
    assert call("GET", "/v1/models/nope")[0] == 404


def test_the_models_listing_gives_each_served_models_size_and_input_limit(served):
    status, listing = call("GET", "/v1/models")
    assert status == 200 and listing["object"] == "list"
    by_id = {m["id"]: m for m in listing["data"]}
    assert list(by_id) == [MINILM, "text-embedding-3-small"]
    assert by_id[MINILM] | {"created": 0} == {"id": MINILM, "object": "model", "created": 0,
                                              "owned_by": "sentence-transformers", "dimensions": 384,
                                              "max_input_tokens": 256, "shortenable": False}
    assert call("GET", f"/v1/models/{MINILM}") == (200, by_id[MINILM])
    assert call("GET", f"/v1/models/sentence-transformers/{MINILM}") == (200, by_id[MINILM]), "as /v1/embeddings"
    assert call("GET", f"/v1/models/nobody/{MINILM}")[0] == 404


def test_without_a_key_the_embeddings_api_is_refused_before_the_model_runs(served):
    import json

    for key in (None, "wrong_" + "w" * 24):
        status, body = call("POST", "/v1/embeddings", json.dumps({"input": "x", "model": MINILM}), key=key)
        assert status == 401 and served.embedder.calls == []
        assert body["error"]["code"] == "invalid_api_key" and "Authorization: Bearer" in body["error"]["message"]
        assert call("GET", "/v1/models", key=key)[0] == 401
        assert call("GET", f"/v1/models/{MINILM}", key=key)[0] == 401


def test_the_request_rules_hold_without_the_http_layer():
    with pytest.raises(InvalidInput) as caught:
        parse_request({"input": "x", "model": "m", "extra": 1}, 10)
    assert caught.value.param == "extra"
    assert parse_request({"input": "x", "model": "m", "encoding_format": None}, 10).encoding_format == "float"
    assert find_model("BAAI/bge-small-en-v1.5", ["bge-small-en-v1.5"]) == "bge-small-en-v1.5"
    assert find_model("bge-small-en-v1.5", [MINILM]) is None, "only served models are found"
    assert check_dimensions(CATALOG["nomic-embed-text-v1.5"], 256) == 256
    assert check_dimensions(CATALOG[MINILM], None) is None
    assert encode_base64([1.0, -0.5]) == base64.b64encode(struct.pack("<2f", 1.0, -0.5)).decode()


def test_the_query_cache_keeps_the_backends_nature_and_its_token_counts():
    from allthethings.adapters.cache import CachingEmbedder

    upstream = CatalogFake("text-embedding-3-small", reports=7)
    upstream.asynchronous = True
    cached = CachingEmbedder(upstream)
    assert cached.asynchronous is True, "documents must still go by webhook behind the cache"
    assert cached.embed_counted(["one query"])[1] == 7
    assert cached.embed_counted(["one query"]) == ([word_vector("one query", 1536)], 7)
    assert len(upstream.calls) == 1, "the second came from the cache, with its count"
    assert cached.embed_counted(["a", "b"])[1] == 7, "batches pass through"


@pytest.mark.parametrize(("env", "words"), [
    ({"EMBEDDER_BACKEND": "replicate", "EMBEDDING_MODEL": "text-embedding-3-small"}, "not a sentence-transformers"),
    ({"EMBEDDER_BACKEND": "openai", "EMBEDDING_MODEL": "bge-small-en-v1.5"}, "EMBEDDINGS_UPSTREAM_URL"),
    ({"EMBEDDER_BACKEND": "openai", "EMBEDDINGS_UPSTREAM_URL": "http://tei/v1",
      "SERVED_MODELS": "all-MiniLM-L6-v2,all-mpnet-base-v2"}, "only with EMBEDDER_BACKEND=local"),
    ({"SERVED_MODELS": "all-MiniLM-L6-v2,text-embedding-3-large"}, "not a sentence-transformers"),
    ({"SERVED_MODELS": "gpt-4"}, "must be among"),
    ({"EMBEDDINGS_MAX_INPUTS": "0"}, "EMBEDDINGS_MAX_INPUTS must be a positive number"),
    ({"METRICS_BACKEND": "statsd"}, "METRICS_BACKEND must be"),
])
def test_backend_settings_that_cannot_work_are_refused_at_start(env, words):
    from allthethings.config import load_settings

    with pytest.raises(ValueError, match=words):
        load_settings(env)


def test_an_upstream_backend_serves_its_catalog_model():
    from allthethings.config import load_settings

    settings = load_settings({"EMBEDDER_BACKEND": "openai", "EMBEDDINGS_UPSTREAM_URL": "http://tei:8080/v1/",
                              "EMBEDDING_MODEL": "bge-small-en-v1.5"})
    assert settings.upstream_url == "http://tei:8080/v1" and settings.dimensions == 384
    assert settings.models_served == ("bge-small-en-v1.5",)
