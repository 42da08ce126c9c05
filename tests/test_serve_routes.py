"""POST /predict: the seed's contract, in input order, and every bad input answered with a clear
JSON error and the right status, never a 500."""

import io
import json
import socket
import time

import pytest

from bertclf.inference.predictor import Predictor
from conftest import make_app, wait_until


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
        (
            dict(data='{"x": ["ok", "half \\ud800 a pair"]}', content_type="application/json"),
            400,
            '"x"[1] is not valid Unicode',
        ),
        (dict(json={"x": ["a"] * 9}), 413, "more than the 8 allowed"),
        (dict(json={"x": ["a"], "return_scores": "yes"}), 400, "return_scores"),
        (dict(data='{"x": ["' + "a" * 5000 + '"]}', content_type="application/json"), 413, "larger than 4096 bytes"),
        (dict(data="[" * 2000 + "]" * 2000, content_type="application/json"), 400, "nested too deeply"),
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
    response = client.post(
        "/predict",
        input_stream=body,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413 and "larger than" in response.get_json()["error"]


def test_huge_single_text_is_truncated_not_refused(models):
    app = make_app(models[0], max_body_bytes=1 << 20)
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    response = app.test_client().post("/predict", json={"x": ["apple " * 50_000]})
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 1


def test_texts_of_every_other_kind_are_answered(client):
    # What we answer rather than refuse (the README says so): empty and blank texts, control
    # characters, line separators, combining and zero-width marks, non-characters, CJK, emoji.
    texts = ["", "   \t\n", "a\x00b\x1b[31m", "\u2028\u0085", "e\u0301\u200b", "\U0010ffff\ufffe", "日本語", "🙂" * 50]
    body = client.post("/predict", json={"x": texts}).get_json()
    assert len(body["predictions"]) == len(texts)


def test_a_busy_worker_refuses_at_once_with_retry_after(models):
    app = make_app(models[0], max_waiting_texts=2, request_timeout=5)
    state = app.extensions["bertclf"]
    wait_until(lambda: state.manager.ready)
    client = app.test_client()
    state.batcher._model.acquire()  # the model is busy with another pass
    try:
        # Fills the queue, from this client (another client's one text would enter the reserve).
        waiting = state.batcher.submit(["a", "b"], client="ip:127.0.0.1")
        response = client.post("/predict", json={"x": ["apple"]})
        assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
        assert response.get_json()["error"].startswith("server is busy (2 texts waiting); retry after")
    finally:
        state.batcher._model.release()
    assert waiting.result(timeout=30).labels and client.post("/predict", json={"x": ["apple"]}).status_code == 200


def test_a_request_past_its_deadline_is_a_503_with_retry_after(models):
    app = make_app(models[0], request_timeout=0.3)
    state = app.extensions["bertclf"]
    wait_until(lambda: state.manager.ready)
    state.batcher._model.acquire()  # a pass that does not end in time
    try:
        started = time.monotonic()
        response = app.test_client().post("/predict", json={"x": ["apple"]})
        assert time.monotonic() - started < 3
    finally:
        state.batcher._model.release()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"].startswith("prediction took longer than 0.3 s; retry after 1 s")


def test_a_client_that_closed_its_connection_is_seen_as_gone():
    from bertclf.serve.routes import client_gone

    assert client_gone({}) is None  # not under gunicorn: never asked
    server, client = socket.socketpair()
    gone = client_gone({"gunicorn.socket": server})
    assert gone() is False
    client.sendall(b"GET /next HTTP/1.1\r\n")  # a pipelined next request: still there
    assert gone() is False and server.recv(100), "the peek left the bytes for gunicorn"
    client.close()
    assert gone() is True
    server.close()


def test_get_predict_from_an_address_bar_gives_the_same_answer(client):
    texts = ["apple banana lemon", "hammer saw", "naïve 中文"]
    posted = client.post("/predict", json={"x": texts, "return_scores": True}).get_json()
    got = client.get("/predict", query_string=[("text", t) for t in texts] + [("return_scores", "true")])
    assert got.status_code == 200 and got.get_json() == posted
    assert client.get("/predict").status_code == 400 and "?text=" in client.get("/predict").get_json()["error"]
    too_many = client.get("/predict", query_string=[("text", "a")] * 9)
    assert too_many.status_code == 413 and "more than the 8" in too_many.get_json()["error"]
    assert client.get("/predict?text=a&return_scores=maybe").status_code == 400
