"""The real server for tests: `python -m bertclf serve` (gunicorn) on a free loopback port, and what
tests read from it (answers, worker processes, memory)."""

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

JSON = {"Content-Type": "application/json"}
# Rows of the reliability table (tests/test_reliability.py adds them; conftest prints them).
REPORT: list[dict] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None, timeout=30):
    """(status, body bytes) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def predict(port, texts, timeout=30):
    """(status, parsed JSON answer) of POST /predict."""
    status, data = request(port, "POST", "/predict", json.dumps({"x": texts}), JSON, timeout)
    return status, json.loads(data)


@contextlib.contextmanager
def serving(models_dir, log_path, *options, ready_in_a_row=6, start_timeout=180, env=None, command=None, port=None):
    """Run `python -m bertclf serve --models_dir models_dir *options` on a free port until the
    block ends; yields (port, process) once /ready answered 200 `ready_in_a_row` times in a row
    (with two workers: both have loaded). The server's output goes to `log_path`; `env` replaces
    the environment. `command` and `port`: run that command instead, which listens on `port`."""
    if command is None:
        port = free_port()
        command = [sys.executable, "-m", "bertclf", "serve", "--port", str(port), "--models_dir", str(models_dir)]
    # A file, not a pipe: an unread pipe would block the workers.
    with open(log_path, "w+") as log:
        process = subprocess.Popen([*command, *options], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + start_timeout
            ready = 0
            while ready < ready_in_a_row:
                assert process.poll() is None, Path(log_path).read_text()
                assert time.monotonic() < deadline, "server did not become ready:\n" + Path(log_path).read_text()
                try:
                    ready = ready + 1 if request(port, "GET", "/ready", timeout=10)[0] == 200 else 0
                except OSError:  # not listening yet, or a worker still loading
                    ready = 0
                time.sleep(0.2)
            yield port, process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def workers_of(master: int) -> list[int]:
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


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def server_rss(master: int) -> int:
    """Resident memory of the master and all its workers."""
    return rss_bytes(master) + sum(rss_bytes(pid) for pid in workers_of(master))


def table(rows: list[dict]) -> str:
    """Rows of equal keys as a Markdown table."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)
