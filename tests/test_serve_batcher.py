"""Concurrent requests share forward passes; each gets its own answer or its own failure."""

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import pytest

from bertclf.serve.batcher import Batcher


class CountingPredictor:
    """Stands in for a model: records each forward pass; optionally blocks until released."""

    name = "FAKE 2026-01-01 00:00:00 00000000"
    classes = ("a", "b")

    def __init__(self, gate=None):
        self.calls = []
        self.gate = gate

    def predict_proba(self, texts):
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append(list(texts))
        # Probability of "b" grows with the text's length, so answers are easy to check.
        p = np.array([min(len(t) / 10, 1.0) for t in texts])
        return np.stack([1 - p, p], axis=1)


def test_concurrent_requests_share_one_batch_and_get_their_own_answers():
    gate = threading.Event()
    predictor = CountingPredictor(gate)
    batcher = Batcher(lambda: predictor, wait_seconds=0.05)
    futures = [batcher.submit(["x" * n, "y"]) for n in (1, 9, 4)]
    gate.set()
    answers = [f.result(timeout=10) for f in futures]
    assert [a.labels for a in answers] == [["a", "a"], ["b", "a"], ["a", "a"]]
    assert answers[1].probabilities[0] == pytest.approx(0.9)
    assert sum(len(call) for call in predictor.calls) == 6 and len(predictor.calls) <= 2


def test_waiting_requests_run_together_after_the_busy_pass():
    gate = threading.Event()
    predictor = CountingPredictor(gate)
    batcher = Batcher(lambda: predictor)
    first = batcher.submit(["busy"])
    leader = threading.Thread(target=first.result, kwargs={"timeout": 10})
    leader.start()  # runs the model on "busy", which then blocks
    time.sleep(0.2)
    waiting = [batcher.submit(["a"]), batcher.submit(["bbbbbbbbbb"])]
    gate.set()
    leader.join(10)
    assert first.result(timeout=10).labels == ["a"]
    assert [w.result(timeout=10).labels for w in waiting] == [["a"], ["b"]]
    assert predictor.calls == [["busy"], ["a", "bbbbbbbbbb"]], "the waiting requests shared one pass"


def test_a_waiter_times_out_while_another_pass_runs():
    gate = threading.Event()
    batcher = Batcher(lambda: CountingPredictor(gate))
    leader = threading.Thread(target=batcher.submit(["busy"]).result, kwargs={"timeout": 10})
    leader.start()
    time.sleep(0.2)
    with pytest.raises(FutureTimeout):
        batcher.submit(["late"]).result(timeout=0.2)
    gate.set()
    leader.join(10)


def test_failure_reaches_every_waiting_request_and_the_thread_survives():
    class Broken(CountingPredictor):
        def predict_proba(self, texts):
            raise RuntimeError("boom")

    current = [Broken()]
    batcher = Batcher(lambda: current[0])
    with pytest.raises(RuntimeError, match=r"boom"):
        batcher.submit(["x"]).result(timeout=10)
    current[0] = CountingPredictor()
    assert batcher.submit(["x"]).result(timeout=10).labels == ["a"]
