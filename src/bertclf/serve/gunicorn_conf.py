"""gunicorn settings that belong to the code rather than the command line."""

# Never preload: TensorFlow state created in the master does not survive fork (gunicorn#2369).
preload_app = False
worker_class = "gthread"  # threads feed the worker's batcher; the model runs on one thread
# Request lines come from the app as JSON; gunicorn's own access log would duplicate them.
accesslog = None


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
