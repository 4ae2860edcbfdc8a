"""Shared by the benchmarks: the STS-derived corpus, a loopback file server, timing helpers."""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import platform
import signal
import statistics
import subprocess
import sys
import threading
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def sts_rows() -> list[dict]:
    """STS Benchmark dev rows (tab-separated, no quoting; some lines carry extra columns)."""
    rows = []
    with open(DATA / "sts-dev.csv", encoding="utf-8") as fh:
        for line in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(line) >= 7:
                rows.append({"score": float(line[4]), "s1": line[5], "s2": line[6]})
    return rows


def corpus(n_docs: int, sentences_per_doc: int = 3) -> tuple[list[str], list[tuple[str, int]]]:
    """`n_docs` short documents of consecutive STS first sentences, and (second sentence, doc index) queries."""
    rows = sts_rows()
    docs, queries = [], []
    i = 0
    while len(docs) < n_docs:
        group = [rows[(i + k) % len(rows)] for k in range(sentences_per_doc)]
        lap = i // len(rows)
        prefix = f"(Series {lap + 1}.) " if lap else ""
        docs.append(prefix + " ".join(r["s1"] for r in group))
        if lap == 0:
            queries.extend((r["s2"], len(docs) - 1) for r in group if r["score"] >= 4.0)
        i += sentences_per_doc
    return docs, queries


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    return {"p50_ms": round(percentile(values, 50) * 1000, 1), "p95_ms": round(percentile(values, 95) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1), "n": len(values)}


def machine() -> str:
    import os

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, {platform.system()}"


def sts_sentences() -> list[str]:
    """Every STS Benchmark dev sentence, first and second of each pair in turn (3,000, some repeated)."""
    return [s for row in sts_rows() for s in (row["s1"], row["s2"])]


def start_stack(data_dir: Path, **env):
    """The local stack as `make run` starts it (tests/e2e's RunningStack), with an API key of the
    benchmark's own (`API_KEYS=bench=...`) sent as `Authorization: Bearer`, as OpenAI's clients send it."""
    import secrets

    from tests.e2e.conftest import RunningStack

    key = "bench_" + secrets.token_urlsafe(24)
    stack = RunningStack(data_dir, API_KEYS=f"bench={key}", **env)
    stack.api_key = key
    stack.auth = {"Authorization": f"Bearer {key}"}
    stack.http.headers.pop("x-api-key", None)
    stack.http.headers.update(stack.auth)
    return stack


def scrape(url: str, client=None) -> dict[str, float]:
    """The samples of a Prometheus text exposition (`GET /metrics`), by name with any labels."""
    import httpx

    samples = {}
    for line in (client or httpx).get(url, timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def load_average() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    import os

    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> dict[int, str]:
    """The processes `pid` started (the stack's model process, its AWS emulator), by what each runs."""
    import os

    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) != pid:
                    continue
            command = open(f"/proc/{entry}/cmdline").read().replace("\0", " ")
        except (OSError, ValueError):
            continue
        found[int(entry)] = ("model process" if "serve_model" in command else
                             "aws_emulator" if "moto" in command else f"child {entry}")
    return found


def process_tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process and each of its children (the stack and its AWS emulator), by command."""
    found = {"stack": cpu_seconds(pid)}
    for child, name in children(pid).items():
        with contextlib.suppress(OSError, ValueError):
            found[name] = cpu_seconds(child)
    return found


def peak_rss_mb(pid: int) -> dict[str, float]:
    """The peak resident memory (VmHWM) of a process and of each child it started, in MB."""

    def peak(of: int) -> float:
        with open(f"/proc/{of}/status") as fh:
            return round(next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024, 1)

    found = {"stack": peak(pid)}
    for child, name in children(pid).items():
        with contextlib.suppress(OSError, ValueError, StopIteration):
            found[name] = peak(child)
    return found


@contextlib.contextmanager
def profiled(stack, folder: Path | None, phase: str, idle: bool = False):
    """Sample the stack's process with py-spy (if a folder is given) while the block runs: the
    collapsed stacks go to `folder/phase.txt` (`python -m bench.profile_summary` reads them).
    `idle`: sample waiting threads too, to see what they wait on."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{phase}.txt"
    command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(stack.process.pid),
               "--format", "raw", "--rate", "200", "--output", str(out), "--nonblocking"]
    spy = subprocess.Popen(command + (["--idle"] if idle else []), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print(f"profile of {phase}: {out}", file=sys.stderr)
