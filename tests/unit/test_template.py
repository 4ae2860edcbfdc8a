"""The SAM template is the source of truth; it must lint clean and hold what the code relies on."""

import shutil
import subprocess
import sys
from pathlib import Path

from devstack import template as templates

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "template.yaml"


def test_the_template_passes_cfn_lint():
    cfn_lint = shutil.which("cfn-lint") or str(Path(sys.executable).with_name("cfn-lint"))
    result = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_queue_has_a_dead_letter_queue_and_a_visibility_timeout_six_times_its_consumers():
    t = templates.load(TEMPLATE)
    timeouts = {fid: int(t.raw["Resources"][fid]["Properties"].get("Timeout", t.raw["Globals"]["Function"]["Timeout"]))
                for fid in t.functions}
    consumed = {trigger.queue: fid for fid, f in t.functions.items() for trigger in f.queue_triggers}
    assert consumed, "the template has SQS consumers"
    for queue_id, fid in consumed.items():
        queue = t.queues[queue_id]
        assert queue.dead_letter in t.queues and queue.max_receive_count
        assert queue.visibility_timeout >= 6 * timeouts[fid]
        assert all(tr.report_failures for tr in t.functions[fid].queue_triggers)


def test_the_deployed_configuration_refuses_private_urls_and_keeps_secrets_in_ssm():
    t = templates.load(TEMPLATE)
    env = t.raw["Globals"]["Function"]["Environment"]["Variables"]
    assert env["ALLOW_PRIVATE_URLS"] == "false"
    for secret in ("MONGODB_URI", "REPLICATE_API_TOKEN", "REPLICATE_WEBHOOK_SECRET"):
        assert secret not in env, f"{secret} must not be a plain variable"
        assert f"{secret}_PARAM" in env


def test_all_functions_share_the_layer_on_python_3_12():
    t = templates.load(TEMPLATE)
    assert t.raw["Globals"]["Function"]["Runtime"] == "python3.12"
    layer = t.raw["Resources"]["SharedLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert (REPO / "shared" / "requirements.txt").exists()


def test_sam_turns_the_auth_settings_into_an_uncached_authorizer_with_public_routes_left_open(monkeypatch):
    """What API Gateway will get, by SAM's own transform: an authorizer that sees every request
    (no identity source, no caching) on every route but the public ones."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    raw = yaml_parse(TEMPLATE.read_text())
    for resource in raw["Resources"].values():  # packaging is sam build's business, not this test's
        for prop in ("CodeUri", "ContentUri"):
            if prop in resource.get("Properties", {}):
                resource["Properties"][prop] = "s3://bucket/key"

    class NoManagedPolicies:
        def load(self):
            return {}

    resources = transform(raw, {}, NoManagedPolicies())["Resources"]
    (api,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    body = api["Properties"]["Body"]
    authorizer = body["components"]["securitySchemes"]["ApiKeyAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert authorizer["identitySource"] == [] and authorizer["authorizerResultTtlInSeconds"] == 0
    assert authorizer["enableSimpleResponses"] is True and authorizer["authorizerPayloadFormatVersion"] == "2.0"
    open_routes = {f"{m.upper()} {p}" for p, ops in body["paths"].items() for m, op in ops.items()
                   if op["security"] == [{"NONE": []}]}
    keyed = {f"{m.upper()} {p}" for p, ops in body["paths"].items() for m, op in ops.items()
             if op["security"] == [{"ApiKeyAuthorizer": []}]}
    assert open_routes == {"GET /api/health", "POST /webhooks/audio/{id}", "POST /webhooks/image/{id}",
                           "POST /webhooks/embedding/{id}", "GET /api/openapi.json", "GET /api/docs", "POST /session",
                           "POST /signout"}
    assert "POST /api/assets" in keyed and "GET /api/search" in keyed
    assert any(r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] ==
               {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]} for r in resources.values())
