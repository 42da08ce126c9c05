"""One JSON line per request, in the seed's format, to stdout and optionally a file."""

import json
import logging
import sys
import time

from flask import g, request

log = logging.getLogger("bertclf.requests")


def configure(log_file=None):
    """Send request lines, bare JSON with no prefix, to stdout (and `log_file`)."""
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
        if log_file:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
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
