"""The local model's batcher: calls that arrive while the model runs a batch go together in the
next one, each caller gets its own vectors, a failure reaches every caller of its batch, and a lone
call is not held back waiting for company."""

from __future__ import annotations

import threading

import pytest

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
    while coalescer._queue.qsize() < 4:  # all four queued behind the running batch
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
    while coalescer._queue.qsize() < 2:
        threading.Event().wait(0.001)
    model.release.set()
    for thread in [first, *others]:
        thread.join(timeout=5)
    assert isinstance(results["bad"], RuntimeError) and isinstance(results["ok"], RuntimeError)
    model.fail_on = None
    assert coalescer(["again"]) == [[5.0]]


@pytest.mark.parametrize("quiet_s", [0.0, 0.05])
def test_a_lone_call_is_answered(quiet_s):
    assert _Coalescer(lambda texts: [[1.0] for _ in texts], quiet_s=quiet_s)(["x", "y"]) == [[1.0], [1.0]]
