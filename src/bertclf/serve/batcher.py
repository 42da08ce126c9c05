"""Gather concurrent requests into shared model batches on one inference thread per worker."""

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass


class QueueFull(Exception):
    """More requests are waiting than the queue holds; the caller should answer 503 at once."""


@dataclass
class Answer:
    """One request's result, all from the same model."""

    model: str
    labels: list
    probabilities: list  # max probability per text
    scores: list  # full probability rows, in the model's class order
    classes: list


class Batcher:
    """Requests that arrive within `wait_seconds` of each other share one forward pass.

    A single thread runs the model, so the model is never called from two threads at once, and
    every batch takes the current predictor once: a hot swap never splits a batch.

    Args:
        current: callable returning the Predictor to use now (None while loading).
        max_texts: most texts in one gathered batch (a single larger request still runs whole).
        wait_seconds: how long the first request of a batch waits for company.
        max_queue: requests allowed to wait; beyond it `submit` raises QueueFull.
        on_batch: called with the number of texts of each forward pass (for metrics).
    """

    def __init__(self, current, max_texts=256, wait_seconds=0.003, max_queue=64, on_batch=None):
        self.current = current
        self.on_batch = on_batch or (lambda size: None)
        self.max_texts = max_texts
        self.wait_seconds = wait_seconds
        self.requests = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, texts) -> Future:
        """Queue texts for prediction; the Future resolves to an Answer."""
        future = Future()
        try:
            self.requests.put_nowait((list(texts), future))
        except queue.Full:
            raise QueueFull from None
        return future

    def _gather(self):
        first = self.requests.get()
        batch, count = [first], len(first[0])
        while count < self.max_texts:
            try:
                item = self.requests.get(timeout=self.wait_seconds)
            except queue.Empty:
                break
            batch.append(item)
            count += len(item[0])
        return batch

    def _run(self):
        while True:
            batch = self._gather()
            predictor = self.current()
            try:
                if predictor is None:
                    raise RuntimeError("no model is loaded yet")
                texts = [text for item, _ in batch for text in item]
                rows = predictor.predict_proba(texts)
                self.on_batch(len(texts))
            except Exception as err:  # noqa: BLE001 - hand the failure to every waiting request
                for _, future in batch:
                    future.set_exception(err)
                continue
            start = 0
            for texts_of_one, future in batch:
                part = rows[start : start + len(texts_of_one)]
                start += len(texts_of_one)
                best = part.argmax(axis=1)
                future.set_result(Answer(
                    model=predictor.name,
                    labels=[predictor.classes[i] for i in best],
                    probabilities=[float(part[i, j]) for i, j in enumerate(best)],
                    scores=part.tolist(),
                    classes=predictor.classes,
                ))
