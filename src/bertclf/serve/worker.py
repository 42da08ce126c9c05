"""gunicorn's threaded worker, telling the app when each request was queued for a thread.

A gthread worker hands connections to a fixed pool of threads; when all are busy, a request waits
in the pool's queue, where nothing in the app can see it. Its deadline (request_timeout) must
count that wait too, or a burst could keep a client waiting far longer than promised.
"""

import threading
import time

from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

_thread = threading.local()


def queue_wait() -> float:
    """Seconds the request on this thread waited for a free thread (0 when the app runs without this
    worker, as in tests with Flask's client). Time the client takes to send it is not counted."""
    return getattr(_thread, "queue_wait", 0.0)


class ThreadWorker(GunicornThreadWorker):
    """gunicorn's gthread worker; tells the app how long each request waited for a thread."""

    def enqueue_req(self, conn):
        conn.bertclf_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        _thread.queue_wait = time.monotonic() - getattr(conn, "bertclf_queued_at", time.monotonic())
        try:
            return super().handle(conn)
        finally:
            _thread.queue_wait = 0.0
