"""A forward pass stuck past its limit ends the worker (gunicorn starts a fresh one)."""

import time

from bertclf.serve.watchdog import Watchdog


def test_fires_once_when_a_pass_runs_past_the_limit():
    fired = []
    busy = {"for": 0.0}
    watchdog = Watchdog(lambda: busy["for"], limit=5, on_stuck=fired.append, interval=0.02).start()
    time.sleep(0.2)
    assert fired == [], "idle or quick passes are fine"
    busy["for"] = 7.0
    time.sleep(0.2)
    busy["for"] = 9.0
    time.sleep(0.2)
    watchdog.stop()
    assert fired == [7.0]
