"""Recycle a worker whose model is stuck: gunicorn's heartbeat comes from the worker's main loop,
which a request thread stuck in a forward pass does not block, so gunicorn alone never notices."""

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# The exit status of a worker that the watchdog ended (gunicorn's master starts a new one).
STUCK_EXIT = 70


def exit_worker(seconds: float) -> None:
    """End this worker at once; threads stuck in native code cannot be stopped any other way."""
    log.error("a forward pass has run for %.0f s; ending this worker so gunicorn starts a fresh one", seconds)
    logging.shutdown()
    os._exit(STUCK_EXIT)


class Watchdog:
    """Calls `on_stuck(seconds)` once when `busy_for()` exceeds `limit` seconds.

    Args:
        busy_for: seconds the current forward pass has run (0 when idle), e.g. Batcher.busy_for.
        limit: seconds a pass may run.
        on_stuck: what to do (in a gunicorn worker: exit_worker).
        interval: seconds between checks.
    """

    def __init__(
        self, busy_for: Callable[[], float], limit: float, on_stuck: Callable[[float], None], interval: float = 1.0
    ):
        self.busy_for, self.limit, self.on_stuck, self.interval = busy_for, limit, on_stuck, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            seconds = self.busy_for()
            if seconds > self.limit:
                self.on_stuck(seconds)
                return
