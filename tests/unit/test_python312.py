"""`make build` finds a Python 3.12 that runs, or says why not, and never hangs on a dead shim."""

import os
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "python312.sh"


def fake(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def find(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    shims = tmp_path / "shims"
    fake(shims / "python3.12", "sleep 60")  # a pyenv shim for a version that is not active
    fake(shims / "pyenv", f"echo {tmp_path / 'pyenv'}")
    environment = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)


def test_an_installed_interpreter_is_preferred_to_a_shim_on_path(tmp_path):
    real = fake(tmp_path / "pyenv" / "versions" / "3.12.4" / "bin" / "python3.12", "exit 0")
    result = find(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(real)


def test_a_shim_that_hangs_is_given_up_on_with_a_message(tmp_path):
    if os.path.exists("/usr/bin/python3.12") or os.path.exists("/usr/local/bin/python3.12"):
        import pytest

        pytest.skip("this machine has a system Python 3.12, which the search would rightly find")
    started = time.monotonic()
    result = find(tmp_path)
    assert result.returncode == 1
    assert "no working Python 3.12" in result.stderr and "PYTHON312" in result.stderr
    assert time.monotonic() - started < 30, "the hanging shim was cut off by the timeout"


def test_a_given_interpreter_that_does_not_run_is_refused(tmp_path):
    broken = fake(tmp_path / "py" / "python3.12", "echo 'pyenv: python3.12: command not found' >&2; exit 127")
    result = find(tmp_path, PYTHON312=str(broken))
    assert result.returncode == 1 and f"{broken} does not run" in result.stderr
