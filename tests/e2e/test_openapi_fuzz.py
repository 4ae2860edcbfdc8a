"""End to end: schemathesis fuzzes every operation of the OpenAPI document the stack serves, with
requests that fit the document and requests that do not. No request gets a server error, and every
answer is one the document describes: a documented status, content type and body shape, and a
refusal (4xx) for what does not fit.

Not checked: that every schema-valid request is accepted. The document is looser than the handlers
on purpose (cursors are opaque, `kind` and `host` are checked by the search service, a URL must
also be fetchable), so a valid-looking request may rightly get a 400 or 422.

The stack runs with ALLOW_PRIVATE_URLS=false, and every submitted URL that the service would
fetch is first pointed at loopback, which that setting refuses before connecting: fuzzing makes
no connection off this machine, and not even a DNS lookup.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from allthethings.domain.assets import normalise_url
from allthethings.domain.errors import InvalidInput
from allthethings.entrypoints.openapi import document
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

# Per operation and generation mode: the whole file takes about 20 s on two cores.
EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# The operations that fetch the URL in their body: an asset's, or a source's feed or sitemap.
FETCHES_THE_BODYS_URL = {("POST", "/api/assets"), ("POST", "/api/sources")}
# schemathesis never fuzzes the operation that serves the document it was loaded from.
SERVES_THE_DOCUMENT = ("GET", "/api/openapi.json")


def _operations() -> list[tuple[str, str, bool, bool]]:
    """(method, path, has inputs to break, needs an API key) for each operation in the document."""
    spec = document()
    out = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) != SERVES_THE_DOCUMENT:
                inputs = bool(operation.get("parameters") or operation.get("requestBody"))
                out.append((method.upper(), path, inputs, operation.get("security", spec["security"]) != []))
    return out


OPERATIONS = _operations()
CASES = [pytest.param(method, path, mode, inputs, keyed, id=f"{method} {path} {mode.value}")
         for method, path, inputs, keyed in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if inputs or mode is GenerationMode.POSITIVE]  # nothing to break: no negative case exists


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory):
    running = RunningStack(tmp_path_factory.mktemp("fuzz"), ALLOW_PRIVATE_URLS="false")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(fuzzed_stack):
    schema = schemathesis.openapi.from_url(f"{fuzzed_stack.url}/api/openapi.json", timeout=30)
    # Every request carries the test's own API key (x-api-key). Security parameters generated
    # beside it (a malformed `Authorization: Bearer` in a negative case) would make a request
    # "invalid" that the valid key rightly authenticates: the document offers the two schemes as
    # alternatives. Which requests came through in the suite's order depended on that.
    schema.config.generation.update(with_security_parameters=False)
    return schema


def _fetches_nothing_off_this_machine(case) -> None:
    """A submitted URL the service would go on to fetch is replaced by one on loopback (refused)."""
    body = case.body
    if not (isinstance(body, dict) and isinstance(body.get("url"), str)):
        return
    try:
        normalise_url(body["url"])
    except InvalidInput:
        return  # refused before any fetch: sent as generated
    case.body = {**body, "url": f"http://127.0.0.1:9/{quote(body['url'], safe='')}"}


def test_the_fuzzed_operations_are_every_operation_the_stack_serves(api):
    served = {(result.ok().method.upper(), result.ok().path) for result in api.get_all_operations()}
    assert served == {(method, path) for method, path, _, _ in OPERATIONS}


@pytest.mark.parametrize("method, path, mode, inputs, keyed", CASES)
def test_no_fuzzed_request_gets_a_server_error_or_an_undocumented_answer(api, fuzzed_stack, method, path, mode,
                                                                         inputs, keyed):
    answered: Counter[int] = Counter()

    @FUZZ
    @given(case=api[path][method].as_strategy(mode))
    def fuzz(case):
        if (method, path) in FETCHES_THE_BODYS_URL:
            _fetches_nothing_off_this_machine(case)
        response = case.call(headers=fuzzed_stack.auth, timeout=30)
        answered[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    try:
        fuzz()
    except Unsatisfiable:
        # No input of this operation can be broken (a path parameter any string fits): its only
        # negative cases were malformed security parameters, which are not generated.
        assert mode is GenerationMode.NEGATIVE and not answered, answered
        return
    # Hypothesis stops early only when it has run out of distinct inputs: one, for an operation without any.
    assert answered.total() >= (EXAMPLES // 2 if inputs else 1), f"too few requests were sent: {answered}"
    if keyed:
        refused = 401 if path.startswith("/v1/") else 403  # /v1 refuses in OpenAI's words, the rest at the gateway
        assert refused not in answered, f"the API key was refused, so the handler was not fuzzed: {answered}"
