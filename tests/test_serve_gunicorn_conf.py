"""The real server: gunicorn with two workers, as `make start_api` runs it, under concurrent clients."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


@pytest.fixture
def server(tmp_path, trained_models):
    source, _ = trained_models
    models = tmp_path / "models"
    shutil.copytree(source, models)
    port = free_port()
    options = f"--port {port} --models_dir {models} --workers 2 --threads 4 --max_body_bytes 4096 --graceful_timeout 10"
    # A file, not a pipe: an unread pipe would block the workers.
    with open(tmp_path / "server.log", "w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bertclf", "serve", *options.split()], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 180
        ready = 0
        while ready < 6:  # several answers in a row: both workers have loaded
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                ready = ready + 1 if request(port, "GET", "/ready")[0] == 200 else 0
            except OSError:  # not listening yet
                ready = 0
            time.sleep(0.2)
        yield port, process, tmp_path / "server.log"
        if process.poll() is None:
            process.kill()
            process.wait()


def test_gunicorn_serves_the_readme_example(server):
    port, process, log = server
    body = json.dumps(
        {
            "x": [
                "Should i use public or private when declaring a variable in a class?",
                "I get an ImportError everytime i try to import a module in my main.py script",
            ]
        }
    )
    status, data = request(port, "POST", "/predict", body, {"Content-Type": "application/json"})
    answer = json.loads(data)
    assert status == 200 and list(answer) == ["model", "predictions", "probabilities"]
    assert len(answer["predictions"]) == 2 and answer["model"].startswith("BERT ")

    # A chunked body over the limit is refused, and the server carries on.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/predict",
        body=iter([b'{"x": ["', b"a" * 8000, b'"]}']),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    assert connection.getresponse().status == 413
    connection.close()

    for _ in range(4):
        request(port, "GET", "/health")
    status, data = request(port, "GET", "/metrics")
    text = data.decode()
    assert status == 200
    health = [line for line in text.splitlines() if line.startswith('bertclf_requests_total{endpoint="/health"')]
    assert health and float(health[0].split()[-1]) == 4.0  # summed over both workers

    # 8 concurrent clients: every request answered, each as it is answered alone (requests that
    # meet in a worker share forward passes; padding to a batch's width must not change results).
    texts = [[f"apple cat {'saw ' * k}", "drill", f"{'mango ' * (k % 5)}tiger"] for k in range(24)]

    def predict(x):
        return request(port, "POST", "/predict", json.dumps({"x": x}), {"Content-Type": "application/json"})

    alone = [json.loads(predict(x)[1]) for x in texts]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(predict, texts))
    assert [status for status, _ in together] == [200] * len(texts)
    for single, (_, data) in zip(alone, together, strict=True):
        answer = json.loads(data)
        assert answer["predictions"] == single["predictions"]
        assert answer["probabilities"] == pytest.approx(single["probabilities"], abs=1e-4)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log_lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["endpoint"] == "/predict" and line["status_code"] == 200 for line in log_lines)


def workers_of(master):
    """The pids of the master's worker processes."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def test_a_killed_worker_is_replaced_and_takes_no_request_before_its_model_is_loaded(server):
    port, process, _ = server
    before = workers_of(process.pid)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 60
    body = json.dumps({"x": ["apple cat"]})
    # Until the replacement is up and has served for a while: every request goes to a worker
    # with a model (the sibling, then both), none is answered "still loading".
    replaced_at = None
    while time.monotonic() < deadline:
        statuses.append(request(port, "POST", "/predict", body, {"Content-Type": "application/json"})[0])
        now = workers_of(process.pid)
        if replaced_at is None and len(now) == 2 and now != before:
            replaced_at = time.monotonic()
        if replaced_at is not None and time.monotonic() - replaced_at > 15:
            break
    assert replaced_at is not None, "gunicorn started a new worker"
    assert statuses and set(statuses) == {200}, [s for s in statuses if s != 200][:5]
