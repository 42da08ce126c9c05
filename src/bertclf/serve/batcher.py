"""Gather concurrent requests into shared model batches, one forward pass at a time per worker."""

import collections
import itertools
import math
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    """One request's result, all from the same model."""

    model: str
    labels: list  # None where the model abstains (top probability below its min_confidence); a list if multi-label
    probabilities: list  # max probability per text
    scores: list  # full probability rows, in the model's class order
    classes: list
    multi_label: bool = False  # labels and probabilities are then lists per text
    embeddings: Any = None  # float32 array, one row per text, for a request that asked (POST /embed)


class Overloaded(Exception):
    """More texts are waiting than this worker admits; answer 503 at once, not after a wait."""

    def __init__(self, retry_after: int):
        super().__init__(f"{retry_after} s")
        self.retry_after = retry_after


class ModelNotLoaded(RuntimeError):
    """No model is loaded (yet)."""


class ClientGone(Exception):
    """The client closed its connection before its texts were taken into a pass; they never were."""


# How often a waiting request asks whether its client is still there.
GONE_CHECK_SECONDS = 0.2


class Batcher:
    """Requests that queue up while the model is busy share the next forward pass.

    No inference thread: the request thread that finds the model idle runs it (the leader), on
    its own request plus every request queued by then, so a lone request pays no thread hand-off
    (measured ~2 ms a request on 2 cores) and no fixed wait. Requests that arrive meanwhile wait;
    when the pass ends one of them leads the next pass for all of them. One pass at a time, so
    the model is never called from two threads at once, and every pass takes the current
    predictor once: a hot swap never splits a batch.

    A request's failure is its own: when a shared pass fails, its requests are run again one by
    one, so only the one that cannot be computed fails. Every request taken into a pass is
    answered on every path, and a waiter gives up at its deadline whoever holds the model. A
    request whose client has gone away is dropped if no pass has taken it yet.

    Clients are served fairly (a client: an API token, else an address; the route says which).
    A pass takes requests by fair queuing: each request is tagged with its client's running total
    of texts at its end (counted from where the queue stands now), and the smallest tags go
    first, so a client sending one text is not queued behind another's five full requests. No client may
    have more than `client_share` texts waiting, and a client with nothing waiting may always
    bring one small request (up to `small_texts`) even when the queue is full, within a reserve
    of `max_texts` beyond max_waiting_texts: clients that fill the queue cannot refuse others.

    Args:
        current: callable returning the Predictor to use now (None while loading).
        max_texts: most texts in one gathered batch (a single larger request still runs whole).
        max_waiting_texts: most texts allowed to wait for a pass; `submit` raises Overloaded
            beyond it (None: no bound). A request alone is always admitted.
        wait_seconds: how long a leader waits for company before its pass (default 0).
        on_batch: called with the number of texts of each forward pass (for metrics).
    """

    def __init__(self, current, max_texts=256, max_waiting_texts=None, wait_seconds=0.0, on_batch=None):
        self.current = current
        self.on_batch = on_batch or (lambda size: None)
        self.max_texts = max_texts
        self.max_waiting_texts = max_waiting_texts
        self.wait_seconds = wait_seconds
        # Half the queue, but room for one full request: a client alone still sends max_texts.
        self.client_share = None if max_waiting_texts is None else max(max_texts, max_waiting_texts // 2)
        self.small_texts = max(1, max_texts // 16)
        self._pending: list[_Request] = []  # not yet in a pass, in arrival order
        self._waiting_texts = 0  # texts in _pending
        self._by_client: collections.Counter[str] = collections.Counter()  # texts waiting, per client
        self._finish: dict[str, float] = {}  # each client's last tag (fair queuing)
        self._virtual = 0.0  # the tag of the last request taken into a pass
        self._arrivals = itertools.count()
        self._rate = 0.0  # texts per second of recent passes, for Retry-After
        self._changed = threading.Condition()  # guards _pending; notified when a pass ends
        self._model = threading.Lock()  # held by the leader for the length of a pass
        self._pass_started: float | None = None  # monotonic start of the pass running now

    def busy_for(self) -> float:
        """Seconds the forward pass running now has taken (0 when idle): a stuck model shows here."""
        started = self._pass_started
        return 0.0 if started is None else time.monotonic() - started

    @property
    def waiting_texts(self) -> int:
        """Texts admitted and not yet taken into a pass."""
        return self._waiting_texts

    def retry_after(self) -> int:
        """Seconds until the texts waiting now are likely computed (at least 1), for Retry-After."""
        if self._rate <= 0:
            return 1
        return max(1, math.ceil(self._waiting_texts / self._rate))

    def submit(self, texts, gone=None, embed=False, client: str = "") -> "_Request":
        """Queue texts for prediction; `.result(timeout)` of the returned Future gives an Answer.

        Args:
            texts: the request's texts.
            gone: callable returning True once the client has closed its connection (None: never
                asked); `.result` then raises ClientGone if the texts were not taken into a pass.
            embed: also give the texts' embeddings (from the same pass: a batch that holds such a
                request computes both outputs for all its texts, which costs next to nothing).
            client: who sent it (API token id or address), for fair shares and order.

        Raises:
            Overloaded: the queue is full (max_waiting_texts), or this client has its share waiting.
        """
        texts = list(texts)
        future = _Request(self, gone, embed, texts, client)
        with self._changed:
            limit = self.max_waiting_texts
            if limit is not None and self._waiting_texts:
                mine = self._by_client[client]
                fits = self._waiting_texts + len(texts) <= limit
                small = not mine and len(texts) <= self.small_texts
                if mine + len(texts) > (self.client_share or limit) or not (
                    fits or (small and self._waiting_texts + len(texts) <= limit + self.max_texts)
                ):
                    raise Overloaded(self.retry_after())
            # Fair queuing: a client's texts are counted from where the queue stands now, and a
            # request goes by the count at its end (a short request of a quiet client comes first).
            start = max(self._virtual, self._finish.get(client, 0.0))
            self._finish[client] = start + len(texts)
            future.tag = (start + len(texts), next(self._arrivals))
            future.start = start
            self._pending.append(future)
            self._waiting_texts += len(texts)
            self._by_client[client] += len(texts)
        return future

    def _unqueue(self, future: "_Request") -> None:
        """Account for `future` leaving the queue (called under the condition)."""
        self._waiting_texts -= len(future.texts)
        self._by_client[future.client] -= len(future.texts)
        if self._by_client[future.client] <= 0:
            del self._by_client[future.client]
        if not self._pending:  # idle: forget the clients' totals, so memory stays bounded
            self._finish.clear()
            self._virtual = 0.0

    def _serve(self, future, timeout):
        """Lead passes until `future` is answered, or wait while another thread leads; give up at
        the deadline (a request not yet taken into a pass is dropped, never computed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._drop(future)
                raise FutureTimeout
            if future.gone is not None and future.gone() and self._drop(future):
                raise ClientGone
            if self._model.acquire(blocking=False):
                try:
                    self._pass()
                finally:
                    self._model.release()
                    with self._changed:
                        self._changed.notify_all()
                continue
            with self._changed:
                # Checked under the condition: the leader releases the model before notifying.
                if future.done() or not self._model.locked():
                    continue
                if future.gone is not None:
                    left = GONE_CHECK_SECONDS if left is None else min(left, GONE_CHECK_SECONDS)
                self._changed.wait(left)

    def _drop(self, future) -> bool:
        """Take `future` out of the queue; False if a pass has already taken it."""
        with self._changed:
            if future not in self._pending:
                return False
            self._pending.remove(future)
            self._unqueue(future)
            return True

    def _take(self):
        """The next pass's requests: by fair-queuing tag, as many as fit in max_texts (the first
        always: a request larger than max_texts runs whole, and the oldest tag is never passed over)."""
        with self._changed:
            batch: list[tuple[list[str], _Request]] = []
            count = 0
            for future in sorted(self._pending, key=lambda f: f.tag):
                if batch and count + len(future.texts) > self.max_texts:
                    continue  # a smaller one further on may still fit
                self._pending.remove(future)
                if future.gone is not None and future.gone():
                    future.set_exception(ClientGone())  # nobody would read the answer
                    self._unqueue(future)
                    continue
                self._virtual = max(self._virtual, future.start)
                self._unqueue(future)
                batch.append((future.texts, future))
                count += len(future.texts)
                if count >= self.max_texts:
                    break
            return batch

    def _pass(self):
        if self.wait_seconds:
            time.sleep(self.wait_seconds)
        batch = self._take()
        if not batch:
            return
        started = time.perf_counter()
        self._pass_started = time.monotonic()
        failure: BaseException = RuntimeError("the forward pass ended without an answer")
        try:
            predictor = self.current()
            if predictor is None:
                raise ModelNotLoaded("no model is loaded yet")
            self._answer(predictor, batch)
        except Exception as err:
            failure = err
        finally:  # every path, interrupts included: no waiter is left without an answer
            self._pass_started = None
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
        texts = sum(len(item) for item, _ in batch)
        rate = texts / max(time.perf_counter() - started, 1e-6)
        self._rate = rate if self._rate <= 0 else 0.8 * self._rate + 0.2 * rate

    def _answer(self, predictor, batch):
        """Answer every request of `batch`; if the shared pass fails, run them one by one so only
        the failing one fails."""
        try:
            answers = self._compute(predictor, batch)
        except Exception:
            if len(batch) == 1:
                raise
            for item in batch:
                try:
                    self._answer(predictor, [item])
                except Exception as err:
                    item[1].set_exception(err)  # this request's failure, handed to it alone
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)

    def _compute(self, predictor, batch) -> list[Answer]:
        texts = [text for item, _ in batch for text in item]
        vectors = None
        if any(future.embed for _, future in batch):
            rows, vectors = predictor.compute(texts, embed=True)
        else:
            rows = predictor.predict_proba(texts)
        classes = predictor.classes
        if rows.shape != (len(texts), len(classes)):
            raise RuntimeError(f"the model gave {rows.shape} scores for {len(texts)} texts and {len(classes)} labels")
        self.on_batch(len(texts))
        answers, start = [], 0
        for texts_of_one, future in batch:
            part = rows[start : start + len(texts_of_one)]
            embeddings = vectors[start : start + len(texts_of_one)] if future.embed and vectors is not None else None
            start += len(texts_of_one)
            labels, probabilities = predictor.decide(part)
            answers.append(
                Answer(
                    model=predictor.name,
                    labels=labels,
                    probabilities=probabilities,
                    scores=part.tolist(),
                    classes=list(classes),
                    multi_label=predictor.multi_label,
                    embeddings=embeddings,
                )
            )
        return answers


class _Request(Future):
    """A queued request; waiting on it runs the model when nobody else is."""

    def __init__(self, batcher, gone=None, embed=False, texts=(), client=""):
        super().__init__()
        self._batcher = batcher
        self.gone = gone
        self.embed = embed
        self.texts = list(texts)
        self.client = client
        self.tag: tuple[float, int] = (0.0, 0)  # fair-queuing order, set by submit
        self.start = 0.0  # where its client's count stood when it arrived

    def result(self, timeout=None):
        self._batcher._serve(self, timeout)
        return super().result(timeout=0)
