"""gunicorn's threaded worker, with two things the app needs from it.

- How long a request waited for a thread. A gthread worker hands connections to a fixed pool of
  threads; when all are busy, a request waits in the pool's queue, where nothing in the app can
  see it. Its deadline (request_timeout) must count that wait too.
- A deadline for a client to send its request. Once a request's first bytes arrive, a thread
  reads the rest with blocking calls and no time limit: a client that stalls halfway (a broken
  client, or one on purpose) would hold that thread for good, and a few of them would hold them
  all. After client_timeout seconds the connection's reading side is shut: the blocked read
  returns at once and the thread is free (gunicorn closes a connection whose headers are cut
  short; a body cut short is answered 408).
"""

import contextlib
import itertools
import socket
import threading
import time

from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

from bertclf.config import ServeConfig

_thread = threading.local()


def queue_wait() -> float:
    """Seconds the request on this thread waited for a free thread (0 when the app runs without this
    worker, as in tests with Flask's client). Time the client takes to send it is not counted."""
    return getattr(_thread, "queue_wait", 0.0)


def request_read() -> None:
    """The request on this thread has arrived whole: its read deadline no longer applies."""
    deadlines, key = getattr(_thread, "read_deadline", (None, None))
    if deadlines is not None:
        deadlines.done(key)


class ReadDeadlines:
    """Shut the reading side of connections whose request has not arrived by its deadline."""

    def __init__(self, seconds: float, tick: float = 0.25):
        self.seconds = seconds
        self.tick = tick
        self._open: dict[int, tuple[float, socket.socket]] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="read-deadlines", daemon=True).start()

    def watch(self, sock: socket.socket) -> int:
        key = next(self._keys)
        with self._lock:
            self._open[key] = (time.monotonic() + self.seconds, sock)
        return key

    def done(self, key: int) -> None:
        with self._lock:
            self._open.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                late = [key for key, (deadline, _) in self._open.items() if deadline <= now]
                socks = [self._open.pop(key)[1] for key in late]
            for sock in socks:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RD)  # a read blocked on it returns b"" at once


class ThreadWorker(GunicornThreadWorker):
    """gunicorn's gthread worker; tells the app how long each request waited for a thread, and
    bounds the time a client may take to send a request."""

    def init_process(self):
        self.read_deadlines = ReadDeadlines(ServeConfig.from_env().client_timeout)
        super().init_process()

    def enqueue_req(self, conn):
        conn.bertclf_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        _thread.queue_wait = time.monotonic() - getattr(conn, "bertclf_queued_at", time.monotonic())
        key = self.read_deadlines.watch(conn.sock)
        _thread.read_deadline = (self.read_deadlines, key)
        try:
            return super().handle(conn)
        finally:
            self.read_deadlines.done(key)
            _thread.queue_wait = 0.0
            _thread.read_deadline = (None, None)
