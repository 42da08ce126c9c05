"""POST /embed: one vector per text, in input order, equal to the Keras encoder's mean over real
tokens; JSON or seed 000's raw float32 matrix; shared passes with /predict; a model without the
embedding output says how to get one."""

import numpy as np
import onnx
import pytest

from bertclf.inference.predictor import Predictor
from bertclf.inference.runtime import EMBEDDING, SERVING_GRAPH
from bertclf.serve.batcher import Batcher
from conftest import make_app, wait_until

TEXTS = ["apple banana lemon", "hammer saw", "", "the big zebra whale " * 40, "Zebra! 中文 👍"]


def test_vectors_in_input_order_equal_the_keras_encoders(models):
    models_dir, folder = models
    app = make_app(models_dir, precision="fp32")  # the Keras encoder's numbers (bf16 and int8 round them)
    manager = app.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    try:
        client = app.test_client()
        answer = client.post("/embed", json={"x": TEXTS})
        assert answer.status_code == 200
        body = answer.get_json()
        assert list(body) == ["model", "dim", "embeddings"] and body["model"].startswith("BERT ")
        vectors = np.array(body["embeddings"])
        keras = Predictor(folder, engine="tensorflow")
        assert vectors.shape == (len(TEXTS), body["dim"]) and body["dim"] == keras.embedding_dim
        _, expected = keras.compute(TEXTS, embed=True)
        np.testing.assert_allclose(vectors, expected, atol=1e-4)
        assert client.get("/model").get_json()["embedding_dim"] == body["dim"]
    finally:
        manager.stop()


def test_normalized_vectors_and_the_raw_float32_matrix(client):
    plain = np.array(client.post("/embed", json={"x": TEXTS}).get_json()["embeddings"], dtype=np.float32)
    unit = np.array(client.post("/embed", json={"x": TEXTS, "normalize": True}).get_json()["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-5)
    raw = client.post("/embed", json={"x": TEXTS}, headers={"Accept": "application/octet-stream"})
    assert raw.status_code == 200 and raw.mimetype == "application/octet-stream"
    rows, dim = (int(n) for n in raw.headers["X-Embedding-Shape"].split(","))
    matrix = np.frombuffer(raw.data, "<f4").reshape(rows, dim)  # as seed 000's clients read it
    np.testing.assert_array_equal(matrix, plain)


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"x": []}, 400, '"x" is empty'),
        ({"x": ["a"], "normalize": "yes"}, 400, '"normalize" must be true or false'),
        ({"x": ["a"] * 9}, 413, "more than the 8 allowed"),
        ({"x": "a"}, 400, '"x" must be a list'),
    ],
)
def test_embed_has_the_limits_of_predict(client, body, status, fragment):
    answer = client.post("/embed", json=body)
    assert answer.status_code == status and fragment in answer.get_json()["error"]


def test_a_pass_shared_with_predict_answers_both_and_runs_once(models):
    _, folder = models
    predictor = Predictor(folder)
    passes = []
    batcher = Batcher(lambda: predictor, on_batch=passes.append)
    wanted = batcher.submit(TEXTS[:2], embed=True)
    plain = batcher.submit(TEXTS[2:])
    first, second = wanted.result(timeout=60), plain.result(timeout=60)
    assert passes == [len(TEXTS)], "one forward pass for both requests"
    assert second.embeddings is None and first.embeddings.shape == (2, predictor.embedding_dim)
    np.testing.assert_allclose(first.embeddings, predictor.compute(TEXTS[:2], embed=True)[1], atol=1e-5)
    assert first.labels == predictor.predict(TEXTS[:2])[0] and second.labels == predictor.predict(TEXTS[2:])[0]


def test_a_model_exported_before_embeddings_answers_409_and_still_predicts(models):
    models_dir, folder = models
    graph = onnx.load(folder / SERVING_GRAPH)
    kept = [o for o in graph.graph.output if o.name != EMBEDDING]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, folder / SERVING_GRAPH)
    app = make_app(models_dir)
    try:
        wait_until(lambda: app.extensions["bertclf"].manager.ready)
        client = app.test_client()
        answer = client.post("/embed", json={"x": ["apple"]})
        assert answer.status_code == 409 and "python -m bertclf export-onnx" in answer.get_json()["error"]
        assert client.post("/predict", json={"x": ["apple"]}).status_code == 200
        assert client.get("/model").get_json()["embedding_dim"] is None
    finally:
        app.extensions["bertclf"].manager.stop()


def test_windows_average_the_vectors_too(models):
    _, folder = models
    windowed = Predictor(folder, long_text="window", max_seq_len=16)
    long_text = " ".join(["apple banana lemon zebra"] * 20)
    probabilities, vectors = windowed.compute([long_text, "saw"], embed=True)
    np.testing.assert_allclose(probabilities, windowed.predict_proba([long_text, "saw"]), atol=1e-6)
    assert vectors.shape == (2, windowed.embedding_dim)


def test_an_embed_request_that_cannot_be_answered_fails_alone(models):
    """A model swapped for one without the embedding output between the route's check and the pass:
    the /embed request fails, the /predict requests sharing its pass are answered."""
    from bertclf.registry import NoEmbeddings

    _, folder = models
    predictor = Predictor(folder)
    predictor._with_embedding = None  # as a graph exported before embeddings
    batcher = Batcher(lambda: predictor)
    first = batcher.submit(["apple"])
    embed = batcher.submit(["saw"], embed=True)
    last = batcher.submit(["cat dog"])
    assert first.result(timeout=60).labels == predictor.predict(["apple"])[0]
    with pytest.raises(NoEmbeddings):
        embed.result(timeout=60)
    assert last.result(timeout=60).labels == predictor.predict(["cat dog"])[0]
