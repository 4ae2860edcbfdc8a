"""The sample events in events/ (for `sam local invoke`): one per HTTP route of the template, each
named for the function that owns its route, carrying the authorizer's answer exactly where the
template runs the authorizer, and byte for byte what events/generate.py writes."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from allthethings import bootstrap
from allthethings.config import Settings
from allthethings.domain.sources import check_source_id
from allthethings.domain.tasks import SourceTask, from_message
from devstack import template as templates
from devstack.gateway import LambdaContext, authorizer_event, load_handler
from tests.fakes import fake_deps

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
TEMPLATE = templates.load(REPO / "infra" / "template.yaml")
ROUTES = {r.key: r for f in TEMPLATE.functions.values() for r in f.routes}


def _generator():
    # events/ is a folder of data with a script in it, not a package: load the script by path.
    spec = importlib.util.spec_from_file_location("events_generate", EVENTS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()
SAMPLES = GENERATE.samples(now=False)
COMMITTED = {p.name: json.loads(p.read_text()) for p in sorted(EVENTS.glob("*.json"))}
# HTTP API events for a function; authorizer-request.json is the authorizer's own (type REQUEST).
HTTP_EVENTS = {name: e for name, e in COMMITTED.items() if "routeKey" in e and e.get("type") != "REQUEST"}
KEYED = {name: e for name, e in HTTP_EVENTS.items() if ROUTES[e["routeKey"]].authorizer is not None}
EXAMPLE_CONTEXT = {"lambda": {"key": GENERATE.EXAMPLE_KEY_NAME, "signin": ""}}


def _file_prefix(logical_id: str) -> str:
    """SearchFunction -> "search", WebhookEmbeddingFunction -> "webhook-embedding"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", logical_id.removesuffix("Function")).lower()


def _readme_table() -> dict[str, str]:
    text = (EVENTS / "README.md").read_text()
    return dict(re.findall(r"^\| `([\w.-]+\.json)` \| `(\w+)` \|", text, flags=re.MULTILINE))


def _without_authorizer(event: dict) -> dict:
    """The request as it reached API Gateway, before the authorizer's answer was added."""
    context = {k: v for k, v in event["requestContext"].items() if k != "authorizer"}
    return {**event, "requestContext": context}


def _invoke(logical_id: str, event: dict):
    fn = TEMPLATE.functions[logical_id]
    return load_handler(fn)(json.loads(json.dumps(event)), LambdaContext(fn))


@pytest.fixture
def example_keys():
    """Fake dependencies whose only API key is the example key the events carry."""
    settings = Settings(api_keys=f"{GENERATE.EXAMPLE_KEY_NAME}={GENERATE.EXAMPLE_API_KEY}")
    with bootstrap.use(fake_deps(settings=settings)) as deps:
        yield deps


def test_every_http_route_in_the_template_has_an_event_and_no_event_names_a_route_that_is_gone():
    assert sorted({e["routeKey"] for e in HTTP_EVENTS.values()}) == sorted(ROUTES)
    for name, event in HTTP_EVENTS.items():
        assert event["requestContext"]["routeKey"] == event["routeKey"], name


def test_each_event_is_for_the_function_that_owns_its_route_and_is_named_after_it():
    for name, event in HTTP_EVENTS.items():
        assert SAMPLES[name].function == TEMPLATE.routes[event["routeKey"]].logical_id, name
    for name, sample in SAMPLES.items():
        assert sample.function in TEMPLATE.functions, name
        assert name.startswith(_file_prefix(sample.function) + "-") or name == _file_prefix(sample.function) + ".json"


def test_the_readme_lists_exactly_the_event_files_with_the_functions_the_generator_names():
    assert _readme_table() == {name: sample.function for name, sample in SAMPLES.items()}
    assert sorted(COMMITTED) == sorted(SAMPLES), "a stale file, or one the generator no longer writes"


def test_keyed_routes_arrive_with_the_example_keys_context_and_public_routes_with_none():
    assert KEYED, "the template puts no route behind the authorizer"
    for name, event in HTTP_EVENTS.items():
        keyed = name in KEYED
        assert event["requestContext"].get("authorizer") == (EXAMPLE_CONTEXT if keyed else None), name
        assert event["headers"].get("x-api-key") == (GENERATE.EXAMPLE_API_KEY if keyed else None), name


def test_the_generator_rewrites_every_committed_file_byte_for_byte(tmp_path):
    # -S leaves site-packages out, so this also holds the generator to the standard library.
    subprocess.run([sys.executable, "-I", "-S", str(EVENTS / "generate.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    written = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    assert written == {p.name: p.read_bytes() for p in EVENTS.glob("*.json")}


def test_the_authorizer_request_is_what_the_gateway_sends_the_authorizer_for_the_create_request():
    create = _without_authorizer(COMMITTED["submit-create-asset.json"])
    expected, actual = authorizer_event(create), dict(COMMITTED["authorizer-request.json"])
    # The local gateway's ARN names a local API; the rest must be the same request.
    actual_arn, expected_arn = actual.pop("routeArn"), expected.pop("routeArn")
    assert actual == expected
    assert expected_arn.endswith("/$default/POST/api/assets")
    assert actual_arn == "arn:aws:execute-api:us-east-1:123456789012:example/$default/POST/api/assets"


def test_the_authorizer_admits_the_sample_request_as_the_example_key_and_refuses_it_without_the_header(
        example_keys):
    event = COMMITTED["authorizer-request.json"]
    assert _invoke("AuthorizerFunction", event) == {"isAuthorized": True,
                                                    "context": {"key": "example", "signin": ""}}
    anonymous = {**event, "headers": {k: v for k, v in event["headers"].items() if k != "x-api-key"}}
    assert _invoke("AuthorizerFunction", anonymous) == {"isAuthorized": False,
                                                        "context": {"key": "", "signin": "required"}}


def test_every_keyed_event_carries_the_context_the_real_authorizer_answers_for_its_request(example_keys):
    for name, event in KEYED.items():
        verdict = _invoke("AuthorizerFunction", authorizer_event(_without_authorizer(event)))
        assert verdict["isAuthorized"] is True, name
        assert event["requestContext"]["authorizer"] == {"lambda": verdict["context"]}, name


def test_the_home_page_event_is_served_signed_in_and_without_the_authorizers_context_asks_to_sign_in(
        example_keys):
    event = COMMITTED["pages-home.json"]
    signed_in = _invoke("PagesFunction", event)
    assert signed_in["statusCode"] == 200 and "Sign in</h2>" not in signed_in["body"]
    anonymous = _invoke("PagesFunction", _without_authorizer(event))
    assert anonymous["statusCode"] == 401 and "Sign in</h2>" in anonymous["body"]


def test_the_sign_in_event_signs_in_with_the_example_key(example_keys):
    answer = _invoke("PagesFunction", COMMITTED["pages-session.json"])
    assert answer["statusCode"] == 303 and answer["headers"]["Location"] == "/"
    assert answer["cookies"][0].startswith(f"allthethings_key={GENERATE.EXAMPLE_API_KEY};")


def test_the_source_events_name_one_valid_source_and_the_workers_events_carry_source_queue_tasks():
    assert check_source_id(GENERATE.SOURCE_ID)
    named = {e["pathParameters"]["id"] for name, e in HTTP_EVENTS.items()
             if name.startswith("sources-") and "pathParameters" in e}
    assert named == {GENERATE.SOURCE_ID}
    worker = {name: e for name, e in COMMITTED.items() if name.startswith("source-worker-")}
    assert worker
    for name, event in worker.items():
        (record,) = event["Records"]
        task = from_message(json.loads(record["body"]))
        assert isinstance(task, SourceTask) and task.source_id == GENERATE.SOURCE_ID, name
