"""The HTTP API: the seed's contract, every bad input, the request log, readiness, pinning, hot swap."""

import io
import json
import logging
import shutil
import threading
import time

import pytest

from bertclf.config import ServeConfig
from bertclf.predictor import Predictor
from bertclf.registry import update_latest
from bertclf.serve.app import create_app, load_predictor


def wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def models(tmp_path, trained_models):
    """A private copy of the trained models folder (tests change the pointer)."""
    source, folder = trained_models
    target = tmp_path / "models"
    shutil.copytree(source, target)
    return target, target / "trained" / folder.name


def make_app(models_dir, load=None, **settings):
    settings.setdefault("reload_interval", 3600)  # tests drive reloads by hand
    app = create_app(ServeConfig(models_dir=str(models_dir), **settings), load=load)
    app.testing = True
    return app


@pytest.fixture
def app(models):
    app = make_app(models[0], max_items=8, max_body_bytes=4096)
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    yield app
    app.extensions["bertclf"].manager.stop()


@pytest.fixture
def client(app):
    return app.test_client()


def copy_model(folder, name):
    """A second model folder: same weights, another id and display name."""
    other = folder.parent / name
    shutil.copytree(folder, other)
    config = json.loads((other / "model_config.json").read_text())
    config.update(id=name[-8:], name=f"BERT 2026-01-01 00:00:00 {name[-8:]}")
    (other / "model_config.json").write_text(json.dumps(config))
    return other, config


# === The contract ===
def test_predict_contract_shape_order_and_model_name(client, models):
    texts = ["apple banana lemon", "hammer saw", "cat dog", "the big zebra whale"]
    response = client.post("/predict", json={"x": texts})
    assert response.status_code == 200
    body = response.get_json()
    assert list(json.loads(response.data)) == ["model", "predictions", "probabilities"]
    config = json.loads((models[1] / "model_config.json").read_text())
    assert body["model"] == config["name"] and body["model"].startswith("BERT ")
    expected_labels, expected_probs = Predictor(models[1]).predict(texts)
    assert body["predictions"] == expected_labels
    assert body["probabilities"] == pytest.approx(expected_probs, abs=1e-5)


def test_optional_scores_add_per_class_probabilities(client):
    body = client.post("/predict", json={"x": ["apple"], "return_scores": True}).get_json()
    assert set(body["scores"][0]) == {"animal", "fruit", "tool"}
    assert sum(body["scores"][0].values()) == pytest.approx(1, abs=1e-5)
    assert max(body["scores"][0].values()) == pytest.approx(body["probabilities"][0])


# === Bad input: never a 500, always {"error": ...} with the right status ===
@pytest.mark.parametrize(
    "kwargs, status, fragment",
    [
        (dict(data="x=1", content_type="application/x-www-form-urlencoded"), 415, "Content-Type: application/json"),
        (dict(data="{not json", content_type="application/json"), 400, "not valid JSON"),
        (dict(data=b'{"x": ["caf\xe9"]}', content_type="application/json"), 400, "not valid UTF-8"),
        (dict(json={"texts": ["a"]}), 400, '"x": a list of texts'),
        (dict(json=["a"]), 400, '"x": a list of texts'),
        (dict(json={"x": "a single string"}), 400, '"x" must be a list'),
        (dict(json={"x": []}), 400, '"x" is empty'),
        (dict(json={"x": ["ok", 5]}), 400, '"x"[1] is int'),
        (dict(json={"x": ["ok", None]}), 400, '"x"[1] is NoneType'),
        (dict(json={"x": ["a"] * 9}), 413, "more than the 8 allowed"),
        (dict(json={"x": ["a"], "return_scores": "yes"}), 400, "return_scores"),
        (dict(data='{"x": ["' + "a" * 5000 + '"]}', content_type="application/json"), 413, "larger than 4096 bytes"),
        (dict(data="[" * 2000 + "]" * 2000, content_type="application/json"), 400, ""),
    ],
)
def test_bad_input_is_a_clear_error(client, kwargs, status, fragment):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert list(body) == ["error"] and fragment in body["error"]


def test_chunked_body_over_the_limit_is_413(client):
    # No Content-Length: the server only learns the size while reading (gunicorn marks such
    # bodies wsgi.input_terminated).
    body = io.BytesIO(b'{"x": ["' + b"a" * 10_000 + b'"]}')
    response = client.post("/predict", input_stream=body, content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413 and "larger than" in response.get_json()["error"]


def test_huge_single_text_is_truncated_not_refused(models):
    app = make_app(models[0], max_body_bytes=1 << 20)
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    response = app.test_client().post("/predict", json={"x": ["apple " * 50_000]})
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 1


def test_unknown_endpoint_and_method(client):
    assert client.get("/nope").get_json()["error"].startswith("no such endpoint")
    response = client.get("/predict")
    assert response.status_code == 405 and "POST" in response.get_json()["error"]


# === The request log ===
def test_one_json_log_line_per_request_in_the_seed_format(client):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("bertclf.requests")
    logger.addHandler(handler)
    try:
        client.post("/predict", json={"x": ["apple"]}, headers={"User-Agent": "curl/7.58.0"})
        client.post("/predict", json={"x": []})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(r.getMessage()) for r in records]
    assert [line["status_code"] for line in lines] == [200, 400]
    first = lines[0]
    assert list(first) == ["endpoint", "response", "status_code", "response_time", "user_ip", "user_agent"]
    assert first["endpoint"] == "/predict" and first["user_agent"] == "curl/7.58.0"
    assert first["response"]["predictions"] and first["response_time"] > 0
    assert "error" in lines[1]["response"]


# === Readiness ===
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
    assert client.get("/model").get_json()["model_dir"] == str(other.resolve())
    assert manager.check_once() is False  # unchanged pointer: nothing reloads


@pytest.mark.parametrize("case", ["half-written", "missing folder", "outside models", "broken weights"])
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
        (broken / "model.weights.h5").write_bytes(b"not hdf5")
        update_latest(models[0], broken, config)
    assert manager.check_once() is False
    assert manager.check_once() is False
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


# === Metrics ===
def test_metrics_count_requests_batches_and_model(client):
    client.post("/predict", json={"x": ["apple", "saw"]})
    client.post("/predict", json={"x": []})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bertclf_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert 'bertclf_requests_total{endpoint="/predict",status="400"} 1.0' in text
    assert "bertclf_batch_texts_count" in text and 'bertclf_model_info{id="' in text
    assert "bertclf_ready 1.0" in text
