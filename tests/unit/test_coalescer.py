"""The local model's batcher: calls that arrive while the model runs a batch go together in the
next one, each caller gets its own vectors, a failure reaches every caller of its batch, and a lone
call is not held back waiting for company."""

from __future__ import annotations

import threading

from allthethings.adapters.models import _Coalescer


class BlockingModel:
    """Answers each text with [len(text)]; its first batch blocks until released."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.running, self.release = threading.Event(), threading.Event()
        self.fail_on: str | None = None

    def __call__(self, texts):
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            self.running.set()
            assert self.release.wait(timeout=5)
        if self.fail_on in texts:
            raise RuntimeError("the model failed")
        return [[float(len(t))] for t in texts]


def call_in_thread(coalescer, texts, results, key):
    def run():
        try:
            results[key] = coalescer(texts)
        except RuntimeError as exc:
            results[key] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_calls_arriving_while_the_model_is_busy_are_one_batch_and_each_gets_its_own_vectors():
    model = BlockingModel()
    coalescer = _Coalescer(model)
    results: dict = {}
    first = call_in_thread(coalescer, ["a"], results, "first")
    assert model.running.wait(timeout=5)
    waiting = [call_in_thread(coalescer, ["b" * n, "c" * (n + 10)], results, n) for n in range(1, 5)]
    while len(coalescer._pending) < 4:  # all four queued behind the running batch
        threading.Event().wait(0.001)
    model.release.set()
    for thread in [first, *waiting]:
        thread.join(timeout=5)
    assert model.batches[0] == ["a"], "a lone first call runs at once, without waiting for company"
    assert len(model.batches) == 2 and len(model.batches[1]) == 8
    assert results["first"] == [[1.0]]
    for n in range(1, 5):
        assert results[n] == [[float(n)], [float(n + 10)]]


def test_a_failure_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    model = BlockingModel()
    model.fail_on = "bad"
    coalescer = _Coalescer(model)
    results: dict = {}
    first = call_in_thread(coalescer, ["a"], results, "first")
    assert model.running.wait(timeout=5)
    others = [call_in_thread(coalescer, ["bad"], results, "bad"), call_in_thread(coalescer, ["ok"], results, "ok")]
    while len(coalescer._pending) < 2:
        threading.Event().wait(0.001)
    model.release.set()
    for thread in [first, *others]:
        thread.join(timeout=5)
    assert isinstance(results["bad"], RuntimeError) and isinstance(results["ok"], RuntimeError)
    model.fail_on = None
    assert coalescer(["again"]) == [[5.0]]


def test_a_lone_call_runs_in_its_own_thread_and_a_full_queue_is_cut_into_batches():
    seen = []

    def model(texts):
        seen.append((threading.current_thread().name, len(texts)))
        return [[1.0] for _ in texts]

    coalescer = _Coalescer(model, max_items=4)
    assert coalescer(["x", "y"]) == [[1.0], [1.0]]
    assert seen == [(threading.current_thread().name, 2)], "no hand-over to another thread"
    coalescer._pending.extend([(["a"] * 3, _done()), (["b"] * 3, _done())])  # queued meanwhile
    seen.clear()
    coalescer(["c"])
    assert [n for _, n in seen] == [3, 4], "each batch within max_items, oldest first"


def _done():
    import concurrent.futures

    return concurrent.futures.Future()
