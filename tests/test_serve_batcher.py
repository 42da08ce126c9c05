"""Concurrent requests share forward passes; each gets its own answer or its own failure."""

import contextlib
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import pytest

from bertclf.inference.abstain import decide
from bertclf.serve.batcher import Batcher, ClientGone, Overloaded


class CountingPredictor:
    """Stands in for a model: records each forward pass; optionally blocks until released."""

    name = "FAKE 2026-01-01 00:00:00 00000000"
    classes = ("a", "b")
    multi_label = False

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

    def decide(self, rows):
        return decide(rows, list(self.classes), 0.0)  # the top label, always answered


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


class Poisoned(CountingPredictor):
    """Fails any forward pass that holds the text "poison", as a text the tokenizer cannot take."""

    def predict_proba(self, texts):
        if "poison" in texts:
            self.calls.append(list(texts))
            raise ValueError("cannot encode this text")
        return super().predict_proba(texts)


def run_together(batcher, requests, gate):
    """Submit every request while a pass is busy, release it, and collect each outcome."""
    blocker = batcher.submit(["busy"])

    def lead():  # runs the model on "busy"; its own outcome is not what the tests look at
        with contextlib.suppress(Exception):
            blocker.result(timeout=10)

    leader = threading.Thread(target=lead)
    leader.start()
    time.sleep(0.2)
    futures = [batcher.submit(texts) for texts in requests]
    gate.set()
    leader.join(10)
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=10).labels)
        except Exception as err:
            outcomes.append(type(err).__name__)
    return outcomes


def test_one_bad_request_fails_alone_in_a_shared_pass():
    gate = threading.Event()
    predictor = Poisoned(gate)
    batcher = Batcher(lambda: predictor)
    outcomes = run_together(batcher, [["a"], ["poison", "b"], ["cccccccccc"]], gate)
    assert outcomes == [["a"], "ValueError", ["b"]]
    assert ["a", "poison", "b", "cccccccccc"] in predictor.calls, "they were first tried together"


def test_every_waiter_is_answered_when_the_answer_cannot_be_built():
    class FewerLabels(CountingPredictor):
        classes = ("a",)  # the model returns two columns: labels.json does not match the model

    gate = threading.Event()
    batcher = Batcher(lambda: FewerLabels(gate))
    started = time.monotonic()
    outcomes = run_together(batcher, [["x"], ["y"], ["z"]], gate)
    assert outcomes == ["RuntimeError"] * 3 and time.monotonic() - started < 5


def test_a_waiter_gives_up_at_its_deadline_even_when_nobody_computes():
    batcher = Batcher(lambda: CountingPredictor())
    future = batcher.submit(["late"])
    batcher._model.acquire()  # a pass that never ends (a stuck model)
    try:
        started = time.monotonic()
        with pytest.raises(FutureTimeout):
            future.result(timeout=0.3)
        assert time.monotonic() - started < 2
        assert batcher.waiting_texts == 0, "the dropped request is no longer waiting"
    finally:
        batcher._model.release()


def test_admission_is_bounded_by_waiting_texts_and_refused_at_once():
    gate = threading.Event()
    predictor = CountingPredictor(gate)
    batcher = Batcher(lambda: predictor, max_waiting_texts=3)
    blocker = batcher.submit(["busy"])
    leader = threading.Thread(target=blocker.result, kwargs={"timeout": 10})
    leader.start()
    time.sleep(0.2)
    admitted = batcher.submit(["a", "b", "c"])
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        batcher.submit(["d"])
    assert time.monotonic() - started < 0.1 and refused.value.retry_after >= 1
    gate.set()
    leader.join(10)
    assert admitted.result(timeout=10).labels == ["a", "a", "a"]
    assert batcher.submit(["d"]).result(timeout=10).labels == ["a"], "admitted again once the queue drained"


def test_work_of_a_client_that_went_away_is_dropped_unless_started():
    gate = threading.Event()
    predictor = CountingPredictor(gate)
    batcher = Batcher(lambda: predictor)
    leader = threading.Thread(target=batcher.submit(["busy"]).result, kwargs={"timeout": 10})
    leader.start()  # the model is busy; the next requests wait
    time.sleep(0.2)
    left = threading.Event()
    abandoned = batcher.submit(["abandoned"], gone=left.is_set)
    stays = batcher.submit(["stays"], gone=lambda: False)
    waiter = {}

    def wait():
        try:
            abandoned.result(timeout=10)
        except ClientGone:
            waiter["gone_after"] = time.monotonic() - started

    thread = threading.Thread(target=wait)
    thread.start()
    started = time.monotonic()
    left.set()  # the client closes its connection while its texts wait
    thread.join(5)
    assert waiter["gone_after"] < 1, "the waiting thread is freed at once, not at its deadline"
    assert batcher.waiting_texts == 1
    gate.set()
    leader.join(10)
    assert stays.result(timeout=10).labels == ["a"]
    assert ["abandoned"] not in predictor.calls and all("abandoned" not in call for call in predictor.calls)


def test_a_pass_skips_requests_whose_client_has_gone():
    predictor = CountingPredictor()
    batcher = Batcher(lambda: predictor)
    gone = batcher.submit(["gone"], gone=lambda: True)
    here = batcher.submit(["here"])
    assert here.result(timeout=10).labels == ["a"]
    with pytest.raises(ClientGone):
        gone.result(timeout=10)
    assert predictor.calls == [["here"]] and batcher.waiting_texts == 0


def test_a_client_with_one_text_is_neither_refused_nor_queued_behind_full_requests():
    gate = threading.Event()
    predictor = CountingPredictor(gate)
    batcher = Batcher(lambda: predictor, max_texts=8, max_waiting_texts=24)
    busy = batcher.submit(["busy"], client="heavy-0")
    leader = threading.Thread(target=busy.result, kwargs={"timeout": 10})
    leader.start()  # the model is now busy
    time.sleep(0.2)
    heavy = []
    for k in range(1, 6):  # five clients, a full request each: the queue (24 texts) fills
        with contextlib.suppress(Overloaded):
            heavy.append(batcher.submit(["h" * k] * 8, client=f"heavy-{k}"))
    assert len(heavy) == 3 and batcher.waiting_texts == 24
    light = batcher.submit(["light"], client="light")  # refused before: the queue was full
    with pytest.raises(Overloaded):
        batcher.submit(["x"] * 8, client="big")  # a full request gets no reserve
    gate.set()
    leader.join(10)
    assert len(light.result(timeout=10).labels) == 1
    for future in heavy:
        future.result(timeout=10)
    assert predictor.calls[1][0] == "light", "the one text went first in the next pass"


def test_one_client_cannot_fill_the_whole_queue():
    gate = threading.Event()
    predictor = CountingPredictor(gate)
    batcher = Batcher(lambda: predictor, max_texts=8, max_waiting_texts=32)
    busy = batcher.submit(["busy"], client="a")
    leader = threading.Thread(target=busy.result, kwargs={"timeout": 10})
    leader.start()
    time.sleep(0.2)
    admitted = []
    with pytest.raises(Overloaded):
        for _ in range(4):
            admitted.append(batcher.submit(["x"] * 8, client="a"))
    assert len(admitted) == 2, "half the queue (16 texts) for one client"
    others = batcher.submit(["y"] * 8, client="b")  # room is left for another client
    gate.set()
    leader.join(10)
    assert [len(f.result(timeout=10).labels) for f in [*admitted, others]] == [8, 8, 8]
    # Fair order: b's request (tagged from where the queue stood) ran before a's second.
    order = [call[0][0] for call in predictor.calls[1:]]
    assert order.index("y") < len(order) - 1, predictor.calls
