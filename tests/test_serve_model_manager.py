"""Which model a worker serves: loaded after start-up, warmed before it is ready, pinned or
hot-swapped, and the old model kept when a new one is broken."""

import json
import os
import shutil
import threading
import time
import weakref

import pytest

from bertclf.config import ServeConfig
from bertclf.registry import update_latest
from bertclf.serve.app import load_predictor
from conftest import copy_model, make_app, wait_until


def test_health_at_once_ready_only_after_load_and_warmup(models):
    release = threading.Event()

    def slow_load(folder):
        release.wait(30)
        return load_predictor(folder, ServeConfig())

    app = make_app(models[0], load=slow_load)
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    response = client.post("/predict", json={"x": ["apple"]})
    assert response.status_code == 503 and "still loading" in response.get_json()["error"]
    release.set()
    wait_until(lambda: client.get("/ready").status_code == 200)
    assert client.post("/predict", json={"x": ["apple"]}).status_code == 200


# === Pinning and hot swap ===
def test_hot_swap_to_a_new_latest_model(app, client, models):
    manager = app.extensions["bertclf"].manager
    other, config = copy_model(models[1], "20260101-000000_copy-abcdef12")
    update_latest(models[0], other, config)
    assert manager.check_once() is True
    assert client.post("/predict", json={"x": ["apple"]}).get_json()["model"] == config["name"]
    assert client.get("/model").get_json()["model_dir"] == f"trained/{other.name}"
    info = [
        line
        for line in client.get("/metrics").get_data(as_text=True).splitlines()
        if line.startswith("bertclf_model_info{")
    ]
    assert len(info) == 1 and config["id"] in info[0], "/metrics shows only the model being served"
    assert manager.check_once() is False  # unchanged pointer: nothing reloads


def test_a_swapped_out_model_is_freed(app, client, models):
    """Nothing keeps the old model alive after a swap (a cache of traced tokenizers once did:
    ~14 MB a swap, for good)."""
    manager = app.extensions["bertclf"].manager
    client.post("/predict", json={"x": ["apple"]})  # the model has tokenized and computed
    old = weakref.ref(manager.predictor)
    other, config = copy_model(models[1], "20260101-000000_copy-abcdef12")
    update_latest(models[0], other, config)
    assert manager.check_once() is True
    assert old() is None


@pytest.mark.parametrize(
    "case",
    [
        "half-written",
        "missing folder",
        "outside models",
        "broken graph",
        "fifo labels",
        "fewer labels",
    ],
)
def test_broken_new_model_keeps_the_old_one(app, client, models, case, tmp_path):
    manager = app.extensions["bertclf"].manager
    before = client.post("/predict", json={"x": ["apple"]}).get_json()["model"]
    pointer = models[0] / "latest_model_config.json"
    if case == "half-written":
        pointer.write_text('{"model_dir": "trained/')
    elif case == "missing folder":
        pointer.write_text(json.dumps({"model_dir": "trained/20990101-000000_gone"}))
    elif case == "outside models":
        outside, _ = copy_model(models[1], "elsewhere")
        shutil.move(str(outside), tmp_path / "elsewhere")
        pointer.write_text(json.dumps({"model_dir": str(tmp_path / "elsewhere")}))
    else:
        broken, config = copy_model(models[1], "20260101-000000_broken-00000000")
        if case == "broken graph":
            (broken / "serving" / "model.onnx").write_bytes(b"not onnx")
            (broken / "serving" / "model.int8.onnx").write_bytes(b"not onnx")  # whichever auto reads
        elif case == "fifo labels":  # opening it would block the watcher for good
            (broken / "labels.json").unlink()
            os.mkfifo(broken / "labels.json")
        else:
            (broken / "labels.json").write_text(json.dumps(["animal", "fruit"]))
        update_latest(models[0], broken, config)
    checks = []
    watcher = threading.Thread(target=lambda: checks.extend([manager.check_once(), manager.check_once()]))
    watcher.start()
    watcher.join(timeout=60)
    assert not watcher.is_alive(), "the watcher is never stuck on a model folder"
    assert checks == [False, False]
    assert client.post("/predict", json={"x": ["apple"]}).get_json()["model"] == before
    status = client.get("/model").get_json()
    assert status["last_error"] and status["reload_failures"] == 1  # logged and counted once
    assert "bertclf_model_reload_failures_total 1.0" in client.get("/metrics").get_data(as_text=True)


def test_pinned_model_wins_over_latest(models):
    pinned, config = copy_model(models[1], "20260101-000000_pinned-12345678")
    app = make_app(models[0], model_dir=f"trained/{pinned.name}")
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    body = app.test_client().post("/predict", json={"x": ["apple"]}).get_json()
    assert body["model"] == config["name"]
    assert app.test_client().get("/model").get_json()["pinned"] is True


def test_model_folder_with_code_is_refused(models):
    (models[1] / "evil.pkl").write_bytes(b"cos\nsystem\n")
    app = make_app(models[0])
    wait_until(lambda: app.extensions["bertclf"].manager.last_error is not None)
    assert app.test_client().get("/ready").status_code == 503
    assert "can run code" in app.test_client().get("/model").get_json()["last_error"]


def test_a_good_model_swaps_in_after_a_hostile_one(app, client, models):
    manager = app.extensions["bertclf"].manager
    hostile, config = copy_model(models[1], "20260101-000000_fifo-00000000")
    (hostile / "labels.json").unlink()
    os.mkfifo(hostile / "labels.json")
    update_latest(models[0], hostile, config)
    assert manager.check_once() is False and "labels.json: a FIFO" in manager.last_error
    good, config = copy_model(models[1], "20260101-000000_good-11111111")
    update_latest(models[0], good, config)
    assert manager.check_once() is True
    assert client.post("/predict", json={"x": ["apple"]}).get_json()["model"] == config["name"]


def test_model_status_shows_no_host_path(app, client, models):
    manager = app.extensions["bertclf"].manager
    text = client.get("/model").get_data(as_text=True)
    status = json.loads(text)
    assert status["model_dir"] == f"trained/{models[1].name}" and status["config"]["hyperparameters"]["data"]
    assert "/" not in status["config"]["data"]["data"]["file"]
    (models[0] / "latest_model_config.json").write_text(json.dumps({"model_dir": "trained/gone"}))
    manager.check_once()
    text = client.get("/model").get_data(as_text=True)
    assert "gone" in json.loads(text)["last_error"]
    root = str(models[0].resolve())
    assert root not in text and str(models[0].parent) not in text


def test_a_restarted_worker_serves_the_last_good_model_when_the_pointer_is_broken(app, models):
    served = app.extensions["bertclf"].manager.folder
    # recorded beside the pointer, just after the swap that made the manager ready
    wait_until(lambda: (models[0] / ".last_good_model.json").is_file(), timeout=10)
    (models[0] / "latest_model_config.json").write_text('{"model_dir": "trained/')  # broken for good
    restarted = make_app(models[0])  # a worker gunicorn starts now
    manager = restarted.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    assert manager.folder == served
    assert restarted.test_client().post("/predict", json={"x": ["apple"]}).status_code == 200
    manager.check_once()  # the pointer is still broken: it keeps serving and says why
    assert manager.ready and "is not valid" in manager.status()["last_error"]
    manager.stop()


def test_ready_says_no_when_the_model_is_stuck(app, client):
    batcher = app.extensions["bertclf"].batcher
    assert client.get("/ready").status_code == 200
    batcher._pass_started = time.monotonic() - 1000  # a pass that has run for 1000 s
    response = client.get("/ready")
    batcher._pass_started = None
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("stuck: the model has been computing one batch for 10")
