"""The golden texts a model folder carries, and the check every load makes with them."""

import json
import logging
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bertclf.errors import RegistryError
from bertclf.inference.golden import GOLDEN_FILE, GOLDEN_TEXTS, TOLERANCE, GoldenMismatch, choose
from bertclf.inference.predictor import Predictor
from bertclf.inference.quantize import INT8_GRAPH
from bertclf.inference.runtime import SERVING_GRAPH
from conftest import copy_model, make_app, wait_until


def drift_the_graph(folder, factor=-1.0, graph=SERVING_GRAPH):
    """A broken conversion: the graph's output layer no longer matches the Keras weights. Negated
    by default: a confident model's probabilities hardly move when its logits are only scaled
    (x3 moved the 16-epoch tiny model's by less than the 1e-3 tolerance). The int8 graph keeps its
    output layer in fp32, so the same works on it."""
    model = onnx.load(str(folder / graph))
    n_classes = len(json.loads((folder / "labels.json").read_text()))
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.ndim == 2 and values.shape[1] == n_classes:  # the classifier's kernel
            tensor.CopyFrom(numpy_helper.from_array(values * factor, tensor.name))
            break
    else:
        raise AssertionError("no output kernel in the graph")
    (folder / graph).write_bytes(model.SerializeToString())


def test_choose_takes_the_longest_text_then_every_class_in_turn():
    labels = np.array([0, 0, 0, 1, 1, 2])
    lengths = np.array([5, 9, 3, 4, 4, 2])
    texts = ["a", "b", "c", "d", "e", "f"]
    assert choose(labels, lengths, texts, n=4) == [1, 0, 3, 5]
    assert sorted(choose(labels, lengths, texts, n=100)) == list(range(6))
    assert choose(labels, lengths, ["x" * 30_000] * 6, n=4) == []  # too long to store


def test_the_export_stores_golden_texts_that_every_engine_reproduces(tiny_run):
    _, folder, _ = tiny_run
    golden = json.loads((folder / GOLDEN_FILE).read_text())
    assert 0 < len(golden["texts"]) <= GOLDEN_TEXTS
    assert len(golden["texts"]) == len(golden["tokens"]) == len(golden["probabilities"])
    n_classes = len(json.loads((folder / "labels.json").read_text()))
    labels_seen = {int(np.argmax(row)) for row in golden["probabilities"]}
    assert all(len(row) == n_classes for row in golden["probabilities"])
    assert len(labels_seen) > 1
    for engine in ("onnx", "tensorflow"):
        predictor = Predictor(folder, engine=engine)
        assert predictor.golden["texts"] == len(golden["texts"])
        assert predictor.golden["max_difference"] < 1e-4, engine
        probabilities = predictor.predict_proba(golden["texts"])
        np.testing.assert_allclose(probabilities, golden["probabilities"], atol=1e-4)
        assert list(predictor.token_counts(golden["texts"])) == golden["tokens"]


def test_a_graph_that_drifted_from_the_weights_is_refused_and_evaluate_reports_it(trained_models, tmp_path, caplog):
    _, folder = trained_models
    drifted = tmp_path / folder.name
    shutil.copytree(folder, drifted)
    drift_the_graph(drifted)
    with pytest.raises(GoldenMismatch, match=r"moved .* by up to .*tolerance 0.001.*refused; re-export"):
        Predictor(drifted, engine="onnx", precision="fp32")
    assert Predictor(drifted, engine="tensorflow").golden["max_difference"] < 1e-4  # the weights are sound
    with caplog.at_level(logging.WARNING):
        report = Predictor(drifted, engine="onnx", precision="fp32", refuse_drift=False).golden
    assert report["max_difference"] > TOLERANCE["fp32"]
    assert "moved" in caplog.text


def test_int8_is_checked_against_its_own_tolerance(trained_models, tmp_path, no_bf16):
    _, folder = trained_models
    predictor = Predictor(folder, precision="int8")
    assert predictor.golden["tolerance"] == TOLERANCE["int8"]
    assert predictor.golden["max_difference"] <= TOLERANCE["int8"]
    broken = tmp_path / folder.name
    shutil.copytree(folder, broken)
    drift_the_graph(broken, graph=INT8_GRAPH)  # a build whose answers flipped
    with pytest.raises(GoldenMismatch, match=r"int8.*serve it with precision fp32"):
        Predictor(broken, precision="int8")
    # auto, which chose int8 for this model, serves fp32 instead of refusing it
    assert Predictor(folder).precision == "int8"
    fallback = Predictor(broken)
    assert (fallback.precision, fallback.golden["precision"]) == ("fp32", "fp32")
    assert fallback.precision_reason == "its answers in int8 failed the golden check at load"
    assert fallback.golden["max_difference"] < 1e-4


def test_another_max_seq_len_compares_only_the_texts_it_does_not_cut_differently(trained_models):
    _, folder = trained_models
    golden = json.loads((folder / GOLDEN_FILE).read_text())
    short = Predictor(folder, max_seq_len=6)
    uncut = sum(1 for tokens in golden["tokens"] if tokens <= 6)
    assert short.golden["texts"] == uncut < len(golden["texts"])
    assert short.golden["max_difference"] < 1e-4


def test_a_folder_without_golden_texts_loads_unchecked(trained_models, tmp_path):
    _, folder = trained_models
    older = tmp_path / folder.name
    shutil.copytree(folder, older)
    (older / GOLDEN_FILE).unlink()
    assert Predictor(older).golden is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda g: [],
        lambda g: {**g, "texts": g["texts"][:-1]},
        lambda g: {**g, "probabilities": [row[:-1] for row in g["probabilities"]]},
        lambda g: {**g, "probabilities": [[float("nan")] * len(row) for row in g["probabilities"]]},
        lambda g: {**g, "probabilities": [[True] * len(row) for row in g["probabilities"]]},
        lambda g: {**g, "tokens": [-1] * len(g["tokens"])},
        lambda g: {**g, "texts": [7] * len(g["texts"])},
        lambda g: {**g, "texts": ["x" * 30_000] * len(g["texts"])},
        lambda g: {k: v * 300 for k, v in g.items() if isinstance(v, list)},
    ],
    ids=["not-object", "lengths-differ", "wrong-width", "nan", "bools", "bad-tokens", "not-text", "huge", "too-many"],
)
def test_a_hostile_golden_file_is_refused_with_the_fix(trained_models, tmp_path, tamper):
    _, folder = trained_models
    hostile = tmp_path / folder.name
    shutil.copytree(folder, hostile)
    golden = json.loads((hostile / GOLDEN_FILE).read_text())
    (hostile / GOLDEN_FILE).write_text(json.dumps(tamper(golden)))
    with pytest.raises(RegistryError, match=r"golden\.json: expected"):
        Predictor(hostile)


def test_the_server_keeps_its_model_when_the_new_one_fails_its_golden_check(models):
    models_dir, folder = models
    app = make_app(models_dir)
    manager = app.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    try:
        client = app.test_client()
        status = client.get("/model").get_json()
        assert status["golden"]["max_difference"] < 1e-4 and status["golden"]["texts"] > 0
        other, config = copy_model(folder, "20990101-000000_drifted")
        drift_the_graph(other)  # a broken conversion: both graphs (auto falls back from int8 to fp32)
        drift_the_graph(other, graph=INT8_GRAPH)
        pointer = models_dir / "latest_model_config.json"
        pointer.write_text(json.dumps({**config, "model_dir": f"trained/{other.name}"}))
        assert not manager.check_once()
        status = client.get("/model").get_json()
        assert status["model_dir"] == f"trained/{folder.name}"
        assert "GoldenMismatch" in status["last_error"] and "refused" in status["last_error"]
        answer = client.post("/predict", json={"x": ["still served"]})
        assert answer.status_code == 200 and answer.get_json()["model"] == status["model"]
    finally:
        manager.stop()
