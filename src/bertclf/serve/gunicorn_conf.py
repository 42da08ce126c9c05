"""gunicorn settings that belong to the code rather than the command line."""

# Never preload: TensorFlow state created in the master does not survive fork (gunicorn#2369).
preload_app = False
# gthread (threads feed the worker's batcher; the model runs on one thread), telling the app when
# each request was queued, so its deadline counts the wait for a free thread too.
worker_class = "bertclf.serve.worker.ThreadWorker"
# Connections one worker holds; past it, a new one closes the oldest request still arriving
# (worker.py). An idle connection costs a file descriptor, not a thread: 1,000 idle connections
# and 100 that trickle their headers leave /health answering (make test-reliability).
worker_connections = 4096
# No control socket (gunicorn 25+ opens one under $HOME or $XDG_RUNTIME_DIR by default): nothing
# should reach the master but signals, and the api image's root file system is read-only.
control_socket_disable = True
# Request lines come from the app as JSON; gunicorn's own access log would duplicate them.
accesslog = None


def post_worker_init(worker):
    """Before a worker takes requests from the socket: wait until its model is loaded (a worker
    that gunicorn restarts must not answer 503 "loading" while its sibling could serve), then
    watch for a stuck forward pass."""
    import time

    from bertclf.serve.watchdog import Watchdog, exit_worker

    state = worker.wsgi.extensions["bertclf"]
    # Loading fails for good (last_error) or ends; heartbeats keep gunicorn from killing a slow load.
    # Ten minutes at most: past that the worker serves its 503s and /ready says why.
    deadline = time.monotonic() + 600
    while not state.manager.ready and state.manager.last_error is None and time.monotonic() < deadline:
        worker.notify()
        time.sleep(0.1)
    Watchdog(state.batcher.busy_for, state.config.timeout, exit_worker).start()


def child_exit(server, worker):
    """Drop a finished worker's live gauges from the shared metrics folder."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder `python -m bertclf serve` made for this server."""
    import os
    import shutil

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.environ.get("BERTCLF_REMOVE_METRICS_DIR") == "1":
        shutil.rmtree(folder, ignore_errors=True)
