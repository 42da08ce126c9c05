"""One JSON line per request, in the seed's format, to stdout and optionally a file."""

import fcntl
import json
import logging
import logging.handlers
import os
import sys
import time
from typing import IO

from flask import g, request

log = logging.getLogger("bertclf.requests")


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A log file that several processes (gunicorn's workers) append to and that is rotated by
    size: `file` -> `file.1` -> ... -> `file.<backups>`, the oldest dropped.

    The standard RotatingFileHandler assumes one process: two workers would each rotate on their
    own count and write into files the other has renamed. Here every line is written under an
    exclusive lock (a sidecar `.lock` file), the size is the file's own, and a process whose file
    another has rotated reopens the new one. A line is never split across files."""

    def __init__(self, filename: str, max_bytes: int, backups: int):
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
        self._lock_file: IO[bytes] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._lock_file is None:
            self._lock_file = open(self.baseFilename + ".lock", "ab")  # noqa: SIM115 (held for the process)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            self._follow_rotation()
            super().emit(record)
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _follow_rotation(self) -> None:
        if self.stream is None:
            return
        try:
            current = os.stat(self.baseFilename).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(self.stream.fileno()).st_ino:  # another process rotated it
            self.stream.close()
            self.stream = None  # the base class reopens it (delay=True)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:
            self.stream = self._open()
        size = os.fstat(self.stream.fileno()).st_size  # the file's, whoever wrote it
        return bool(self.maxBytes) and size > 0 and size + len(self.format(record)) + 1 > self.maxBytes


def configure(log_file=None, max_bytes: int = 0, backups: int = 0):
    """Send request lines, bare JSON with no prefix, to stdout (and `log_file`, rotated past
    `max_bytes` keeping `backups` old files; 0: never rotated)."""
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
        if log_file:
            handlers.append(SharedRotatingFileHandler(log_file, max_bytes, backups))
        for handler in handlers:
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)


def client_ip(trusted: frozenset[str]) -> str | None:
    """The client's address: the peer's, or, when the peer is a proxy the operator trusts
    (forwarded_allow_ips), the address that proxy appended to X-Forwarded-For. Anyone can send
    that header; only a trusted proxy's word is taken."""
    peer = request.remote_addr
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and ("*" in trusted or peer in trusted):
        return forwarded.split(",")[-1].strip() or peer
    return peer


def install(app, metrics, trusted_proxies: frozenset[str] = frozenset()):
    """Time every request; log it and count it once its response is ready."""

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _log(response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        # The matched route, never the raw path: /docs/<path:path> matches any path, and one label
        # per path a client makes up grew /metrics (and each worker) without bound.
        endpoint = request.url_rule.rule if request.url_rule is not None else "unknown"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(elapsed)
        if endpoint != "/metrics":  # scrapes every few seconds would drown the log
            body = response.get_json(silent=True) if response.is_json else None
            if isinstance(body, dict) and isinstance(body.get("embeddings"), list):  # not 256 x 384 numbers a line
                body = {**body, "embeddings": f"{len(body['embeddings'])} vectors"}
            log.info(
                json.dumps(
                    {
                        "endpoint": request.path,
                        "response": body,
                        "status_code": response.status_code,
                        "response_time": elapsed,
                        "user_ip": client_ip(trusted_proxies),
                        "user_agent": request.headers.get("User-Agent"),
                    },
                    # Escaped: U+2028, U+0085 and friends would split the line for some readers.
                    ensure_ascii=True,
                )
            )
        return response
