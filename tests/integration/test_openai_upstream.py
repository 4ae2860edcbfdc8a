"""The OpenAI-compatible upstream adapter against a real HTTP server that misbehaves on cue:
retries, error mapping, normalisation and the upstream's token counts."""

import http.server
import json
import threading

import pytest

from allthethings.adapters.openai_upstream import OpenAICompatibleEmbedder
from allthethings.domain.errors import InvalidInput, UpstreamUnavailable


class Upstream(http.server.BaseHTTPRequestHandler):
    script: list = []  # (status, body) answers in order; the last one repeats
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append((self.path, self.headers.get("authorization"), request))
        status, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if callable(body):
            body = body(request)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        if status == 429:
            self.send_header("retry-after", "0")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def answer(request):
    """Unnormalised 384-d vectors, in reverse order (the index field must put them right)."""
    data = [{"object": "embedding", "index": i, "embedding": [float(i + 1)] * 2 + [0.0] * 382}
            for i, _ in enumerate(request["input"])]
    return {"object": "list", "data": data[::-1], "model": request["model"],
            "usage": {"prompt_tokens": 5 * len(data), "total_tokens": 5 * len(data)}}


@pytest.fixture
def upstream():
    Upstream.script, Upstream.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def embedder(url, **kwargs):
    return OpenAICompatibleEmbedder(url, "bge-small-en-v1.5", api_key=lambda: "sk-upstream", sleep=lambda s: None,
                                    **kwargs)


def test_vectors_come_back_in_input_order_unit_length_with_the_upstreams_usage(upstream):
    Upstream.script = [(200, answer)]
    vectors, tokens = embedder(upstream, upstream_model="BAAI/bge-small-en-v1.5").embed_counted(["a", "b", "c"])
    assert [round(v[0] * 2 ** 0.5, 6) for v in vectors] == [1.0, 1.0, 1.0]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-9 for v in vectors)
    assert tokens == 15
    path, auth, request = Upstream.seen[0]
    assert path == "/v1/embeddings" and auth == "Bearer sk-upstream"
    assert request == {"input": ["a", "b", "c"], "model": "BAAI/bge-small-en-v1.5", "encoding_format": "float"}


def test_large_calls_are_split_into_the_upstreams_batch_size(upstream):
    Upstream.script = [(200, answer)]
    vectors, tokens = embedder(upstream, batch_size=2).embed_counted(["a", "b", "c", "d", "e"])
    assert len(vectors) == 5 and tokens == 25
    assert [len(r["input"]) for _, _, r in Upstream.seen] == [2, 2, 1]


def test_rate_limits_and_server_errors_are_retried(upstream):
    Upstream.script = [(429, {"error": {"message": "slow down"}}), (503, {}), (200, answer)]
    assert len(embedder(upstream).embed(["a"])) == 1
    assert len(Upstream.seen) == 3


def test_an_upstream_that_stays_down_is_unavailable_not_a_crash(upstream):
    Upstream.script = [(500, {"error": "boom"})]
    with pytest.raises(UpstreamUnavailable, match="after 4 tries"):
        embedder(upstream).embed(["a"])


def test_an_input_the_upstream_refuses_is_invalid_input_with_its_reason(upstream):
    Upstream.script = [(413, {"error": {"message": "Input validation error: inputs must have less than 512 tokens"}})]
    with pytest.raises(InvalidInput, match="less than 512 tokens") as caught:
        embedder(upstream).embed(["long"])
    assert caught.value.param == "input" and len(Upstream.seen) == 1, "not retried"


@pytest.mark.parametrize("body", [
    {"data": "nope"},
    {"object": "list"},
    {"data": [{"index": 0, "embedding": [0.1] * 10}]},
    {"data": []},
])
def test_an_answer_not_in_openais_shape_or_size_is_unavailable(upstream, body):
    Upstream.script = [(200, body)]
    with pytest.raises(UpstreamUnavailable):
        embedder(upstream).embed(["a"])


def test_a_refused_key_is_unavailable_and_says_so(upstream):
    Upstream.script = [(401, {"error": {"message": "Incorrect API key provided"}})]
    with pytest.raises(UpstreamUnavailable, match="401: Incorrect API key"):
        embedder(upstream).embed(["a"])
