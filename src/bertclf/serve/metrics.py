"""Prometheus metrics, correct with several gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (`python -m bertclf serve` sets it), every worker writes its
samples to files there and /metrics adds them up, whichever worker answers.
"""

import os
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def multiprocess_dir():
    # prometheus_client still honours the lower-case name of its older releases; so do we.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112


class Metrics:
    """The server's counters. In one process they live in a private registry (so tests can build
    many apps); in multiprocess mode they are written to PROMETHEUS_MULTIPROC_DIR."""

    def __init__(self):
        shared = multiprocess_dir() is not None
        self.registry = None if shared else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "bertclf_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "bertclf_request_seconds",
            "request latency in seconds",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_texts = Histogram(
            "bertclf_batch_texts", "texts per model forward pass", buckets=BATCH_BUCKETS, registry=registry
        )
        self.abstained = Counter(
            "bertclf_abstained_texts",
            "texts answered with prediction null (top probability below the model's min_confidence)",
            registry=registry,
        )
        self.truncated = Counter(
            "bertclf_truncated_texts",
            "texts longer than the model's max_seq_len tokens, cut to it before the model saw them",
            registry=registry,
        )
        # By label: the model's labels, and "(new label)" for any other (a client must not be able to
        # grow the metrics without bound).
        self.feedback = Counter(
            "bertclf_feedback", "corrections stored by POST /feedback, by label", ["label"], registry=registry
        )
        self.reload_failures = Counter("bertclf_model_reload_failures", "failed model (re)loads", registry=registry)
        # Gauges of live workers only: a dead worker's "ready" must not count.
        mode: Literal["liveall", "all"] = "liveall" if shared else "all"
        self.model_info = Gauge(
            "bertclf_model_info",
            "the model a worker serves (value 1), the precision (fp32, int8, bf16) and runtime it runs in, and why "
            "(asked, kept_accuracy, lost_accuracy, not_measured, golden_check_failed, openvino_failed, "
            "no_serving_graph)",
            ["model", "id", "precision", "runtime", "why"],
            registry=registry,
            multiprocess_mode=mode,
        )
        self.ready = Gauge(
            "bertclf_ready", "1 when a worker has a warmed model", registry=registry, multiprocess_mode=mode
        )

    def set_model(self, served: tuple[str, ...], previous: tuple[str, ...] | None = None):
        """Mark the served model (name, id, precision, runtime, why) as served (and unmark the previous one)."""
        if previous is not None and tuple(previous) != tuple(served):
            # Set to 0, not removed: multiprocess gauges cannot remove a label; render() drops zeros.
            self.model_info.labels(*previous).set(0)
        self.model_info.labels(*served).set(1)
        self.ready.set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition of every worker's metrics; model_info only for the models
        being served now."""
        if self.registry is not None:
            return generate_latest(_ServedModelsOnly(self.registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(_ServedModelsOnly(registry))


class _ServedModelsOnly:
    """A registry view without the model_info samples of models no longer served (value 0)."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        for metric in self.source.collect():
            if metric.name == "bertclf_model_info":
                metric.samples = [sample for sample in metric.samples if sample.value != 0]
            yield metric
