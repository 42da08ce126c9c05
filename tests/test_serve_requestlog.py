"""One JSON line per request, in the seed's format."""

import contextlib
import json
import logging
import multiprocessing

from conftest import make_app


@contextlib.contextmanager
def request_lines():
    """The request log's lines, as written, while the block runs."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("bertclf.requests")
    logger.addHandler(handler)
    lines = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        lines.extend(record.getMessage() for record in records)


def test_one_json_log_line_per_request_in_the_seed_format(client):
    with request_lines() as raw:
        client.post("/predict", json={"x": ["apple"]}, headers={"User-Agent": "curl/7.58.0"})
        client.post("/predict", json={"x": []})
    lines = [json.loads(line) for line in raw]
    assert [line["status_code"] for line in lines] == [200, 400]
    first = lines[0]
    assert list(first) == ["endpoint", "response", "status_code", "response_time", "user_ip", "user_agent"]
    assert first["endpoint"] == "/predict" and first["user_agent"] == "curl/7.58.0"
    assert first["response"]["predictions"] and first["response_time"] > 0
    assert "error" in lines[1]["response"]


def test_every_record_is_one_line_whatever_the_request_holds(client):
    with request_lines() as raw:
        client.get("/a\u2028b\u0085c\u2029d%0Ae", headers={"User-Agent": "x\u00e9"})
    assert len(raw) == 1 and raw[0].isascii()
    record = json.loads(raw[0])
    assert record["endpoint"] == "/a\u2028b\u0085c\u2029d\ne" and record["status_code"] == 404
    assert len(raw[0].splitlines()) == 1


def test_user_ip_is_the_peer_unless_a_trusted_proxy_says_otherwise(models):
    spoofed = {"X-Forwarded-For": "6.6.6.6"}
    with request_lines() as raw:
        make_app(models[0]).test_client().get("/health", headers=spoofed)
        trusting = make_app(models[0], forwarded_allow_ips="127.0.0.1, 10.0.0.1")
        trusting.test_client().get("/health", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
        trusting.test_client().get("/health", headers=spoofed, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert [json.loads(line)["user_ip"] for line in raw] == ["127.0.0.1", "203.0.113.9", "192.0.2.1"]


def _log_lines(path, count, worker):
    from bertclf.serve.requestlog import SharedRotatingFileHandler

    logger = logging.getLogger(f"rotation-test-{worker}")
    logger.propagate = False
    logger.addHandler(SharedRotatingFileHandler(str(path), 4000, 50))
    for i in range(count):
        logger.warning(json.dumps({"worker": worker, "line": i, "pad": "x" * 60}))


def test_the_log_file_rotates_by_size_with_several_workers_writing(tmp_path):
    path = tmp_path / "requests.log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_log_lines, args=(path, 300, k)) for k in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    files = [path, *sorted(tmp_path.glob("requests.log.*[0-9]"))]
    assert 10 < len(files) <= 51
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]  # no line split or mixed
    assert sorted((r["worker"], r["line"]) for r in lines) == [(k, i) for k in range(3) for i in range(300)]
    assert all(f.stat().st_size <= 4000 for f in files)
