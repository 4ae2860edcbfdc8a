"""The running system: `python -m devstack run` on free ports, as `make run` starts it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.stack import free_port

REPO = Path(__file__).resolve().parents[2]


_running: list[RunningStack] = []


class RunningStack:
    """The stack, started as `make run` starts it, with an API key of its own (`auth` carries it)."""

    def __init__(self, data_dir: Path, **env):
        _running.append(self)
        env.setdefault("API_KEYS", f"e2e={'e2e_' + secrets.token_urlsafe(24)}")
        self.api_key = env["API_KEYS"].split(",")[0].partition("=")[2]  # the first key given, or ours
        self.auth = {"x-api-key": self.api_key}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = data_dir / "stack.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, "PYTHONPATH": str(REPO / "shared"), "HF_HUB_OFFLINE": "1", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run", "--port", str(self.port), "--data-dir", str(data_dir)],
            cwd=REPO, env=environment, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.http = httpx.Client(base_url=self.url, timeout=60, headers=self.auth)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited: {self.log.read_text()[-3000:]}")
            try:
                if self.http.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the stack did not become healthy in 120 s")

    def wait_for(self, asset_id: str, timeout_s: float = 180, poll_s: float = 0.2) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            asset = self.http.get(f"/api/assets/{asset_id}").json()
            if asset["status"] in ("SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR"):
                return asset
            time.sleep(poll_s)
        raise AssertionError(f"asset {asset_id} did not finish: {asset}")

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        return self.process.returncode


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    running = RunningStack(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed end-to-end test shows the tail of every stack's log, so a CI failure can be read."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for running in _running:
            if running.log.exists():
                tail = running.log.read_text(errors="replace")[-4000:]
                report.sections.append((f"stack log {running.log}", tail))
