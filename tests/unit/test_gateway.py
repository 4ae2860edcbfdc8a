"""The local gateway gives each concurrent request its own handler instance, as Lambda does."""

import threading
from pathlib import Path

from devstack.gateway import Containers
from devstack.template import Function

HANDLER = '''
import threading, time
state = {"current": None}
def handler(event, context):
    state["current"] = event["n"]
    time.sleep(0.05)
    return state["current"]
'''


def test_concurrent_requests_never_share_a_handler_instance(tmp_path: Path):
    (tmp_path / "app.py").write_text(HANDLER)
    fn = Function("RacyFunction", tmp_path, "app.handler", {}, [], [])
    containers = Containers()
    answers = {}

    def call(n):
        answers[n] = containers.invoke(fn, {"n": n}, None)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {n: n for n in range(8)}
    assert containers.invoke(fn, {"n": 99}, None) == 99


def test_a_private_file_is_written_for_its_owner_only_even_over_a_wider_one(tmp_path):
    import stat

    from devstack.stack import write_private

    path = tmp_path / "local-stack.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, '{"token": "t"}')
    assert path.read_text() == '{"token": "t"}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_greedy_path_parameter_takes_any_character_as_api_gateway_does():
    from devstack.gateway import _pattern

    match = _pattern("/v1/models/{model+}").match("/v1/models/owner/na\nme")
    assert match and match["model"] == "owner/na\nme"
    assert _pattern("/api/assets/{id}").match("/api/assets/a\nb")["id"] == "a\nb"
