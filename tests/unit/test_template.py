"""The SAM template is the source of truth; it must lint clean and hold what the code relies on."""

import shutil
import subprocess
import sys
from pathlib import Path

from allthethings.local import template as templates

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
