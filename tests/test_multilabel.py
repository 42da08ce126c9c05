"""Multi-label data ("fruit|tool"): sigmoid outputs, per-label thresholds, metrics, export and serving."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from bertclf.config import TrainConfig
from bertclf.errors import RegistryError
from bertclf.inference.multilabel import decide, multi_hot, stored_thresholds, tune_thresholds
from bertclf.inference.predictor import Predictor
from bertclf.inference.runtime import SERVING_GRAPH
from bertclf.training.data import load_splits, split_labels
from bertclf.training.evaluate import evaluate_saved_model
from conftest import make_app, make_multilabel_texts, wait_until, write_csv


def test_split_labels_and_multi_hot():
    assert split_labels(" bug | ui |bug||", "|") == ["bug", "ui"]
    matrix = multi_hot([["b"], ["a", "c"], []], ["a", "b", "c"])
    assert matrix.tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_thresholds_maximise_f1_per_label():
    probabilities = np.array([[0.9, 0.2], [0.6, 0.3], [0.4, 0.1], [0.2, 0.35]])
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    thresholds = tune_thresholds(probabilities, truth)
    # Label a: 0.5 and 0.6 both separate it (F1 1); the tie goes to the one nearest 0.5.
    assert thresholds[0] == pytest.approx(0.5) and thresholds[1] == pytest.approx(0.35)
    assert tune_thresholds(probabilities, np.zeros((4, 2)))[0] == 0.5  # no positives: cannot tune
    labels, scores = decide(probabilities, ["a", "b"], thresholds)
    assert labels == [["a"], ["a"], [], ["b"]] and scores[0] == [0.9]
    assert decide(np.array([[0.7, 0.9]]), ["a", "b"], np.array([0.5, 0.5]))[0] == [["b", "a"]]  # most probable first


def test_a_separator_in_the_labels_makes_the_data_multi_label(tmp_path):
    texts, labels = make_multilabel_texts(60)
    data = write_csv(tmp_path / "d.csv", zip(texts, labels, strict=True))
    splits = load_splits(TrainConfig(data=str(data)))
    assert splits.multi_label and splits.classes == ["animal", "fruit", "tool"]
    train_classes = {c for names in splits.label_sets("train") for c in names}
    assert train_classes == set(splits.classes)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 60
    single = write_csv(tmp_path / "s.csv", [(t, label.split("|")[0]) for t, label in zip(texts, labels, strict=True)])
    assert not load_splits(TrainConfig(data=str(single))).multi_label
    assert load_splits(TrainConfig(data=str(single), multi_label=True)).multi_label
    rows = [(t, label.replace("|", ";")) for t, label in zip(texts, labels, strict=True)]
    semicolons = write_csv(tmp_path / "c.csv", rows)
    assert load_splits(TrainConfig(data=str(semicolons), label_separator=";")).classes == ["animal", "fruit", "tool"]


def test_multi_label_off_keeps_a_label_with_the_separator_as_one_class(tmp_path):
    # Labels such as "C|C++" or "R&D|Sales" name one class: --multi_label off (or false) must hold.
    texts, labels = make_multilabel_texts(90)
    data = write_csv(tmp_path / "d.csv", zip(texts, labels, strict=True))
    for off in ("off", "false", False, "no", "0"):
        splits = load_splits(TrainConfig(data=str(data), multi_label=off))
        assert not splits.multi_label, off
        assert set(splits.classes) == set(labels), "every label, separator and all, is one class"
    for on in ("on", "true", True):
        assert load_splits(TrainConfig(data=str(data), multi_label=on)).multi_label, on
    assert TrainConfig().multi_label == "auto"


def test_multi_label_on_the_command_line(tmp_path):
    from bertclf.cli import build_parser, given

    def parsed(*args):
        return given(TrainConfig, build_parser().parse_args(["train", *args])).get("multi_label")

    assert parsed() is None and parsed("--multi_label") == "on"
    assert parsed("--multi_label", "false") == "off" and parsed("--multi_label", "auto") == "auto"
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "train", "--multi_label", "sometimes"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "expected auto, on or off, got 'sometimes'" in result.stderr


def test_training_tunes_a_threshold_per_label_and_scores_the_test_split(multilabel_run):
    _, folder, model_config = multilabel_run
    thresholds = model_config["multi_label"]["thresholds"]
    assert set(thresholds) == {"animal", "fruit", "tool"} and all(0 <= t <= 1 for t in thresholds.values())
    assert model_config["multi_label"]["separator"] == "|"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"subset_accuracy", "micro_f1", "macro_f1", "per_label", "baseline"} <= set(metrics)
    assert metrics["micro_f1"] > 0.9, "three separable labels are learnt"
    assert metrics["per_label"]["fruit"]["threshold"] == pytest.approx(thresholds["fruit"])
    assert {"micro_f1", "subset_accuracy"} <= set(metrics["baseline"])
    assert (folder / "per_label_scores.png").is_file() and not (folder / "confusion_matrix.png").exists()
    assert "calibration" not in metrics


def test_the_served_graph_is_sigmoid_and_matches_keras(multilabel_run):
    _, folder, _ = multilabel_run
    ops = {node.op_type for node in onnx.load(str(folder / SERVING_GRAPH)).graph.node}
    assert "Sigmoid" in ops and "Softmax" not in ops
    texts = ["apple hammer saw", "cat", "the big", "banana dog drill"]
    fast, keras = Predictor(folder, engine="onnx", precision="fp32"), Predictor(folder, engine="tensorflow")
    np.testing.assert_allclose(fast.predict_proba(texts), keras.predict_proba(texts), atol=1e-5)
    assert fast.golden["texts"] > 0 and fast.golden["max_difference"] < 1e-4
    labels, probabilities = fast.predict(texts)
    assert all(isinstance(names, list) for names in labels)
    assert set(labels[0]) >= {"tool"} and all(len(p) == len(n) for p, n in zip(probabilities, labels, strict=True))
    rescored = evaluate_saved_model(fast)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert rescored["micro_f1"] == pytest.approx(metrics["micro_f1"], abs=1e-9)


def test_the_server_answers_a_list_of_labels_and_every_score(multilabel_run, tmp_path):
    models_dir, _, _ = multilabel_run
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    app = make_app(copy)
    manager = app.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    try:
        body = app.test_client().post("/predict", json={"x": ["apple banana hammer", "zebra"]}).get_json()
        assert isinstance(body["predictions"][0], list) and isinstance(body["probabilities"][0], list)
        assert set(body["scores"][0]) == {"animal", "fruit", "tool"}
        assert "fruit" in body["predictions"][0] and "tool" in body["predictions"][0]
        assert body["predictions"][1][0] == "animal"  # most probable first
    finally:
        manager.stop()


def test_predict_on_the_command_line_lists_the_labels(multilabel_run):
    models_dir, _, _ = multilabel_run
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models_dir), "apple hammer"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "fruit 0." in result.stdout and "tool 0." in result.stdout


@pytest.mark.parametrize(
    "thresholds",
    [{"fruit": 0.5}, {"animal": 2, "fruit": 0.5, "tool": 0.5}, {"animal": "0.5", "fruit": 0.5, "tool": 0.5}, []],
)
def test_hostile_thresholds_are_refused(multilabel_run, tmp_path, thresholds):
    _, folder, _ = multilabel_run
    hostile = tmp_path / folder.name
    shutil.copytree(folder, hostile)
    config = json.loads((hostile / "model_config.json").read_text())
    config["multi_label"]["thresholds"] = thresholds
    (hostile / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(RegistryError, match=r"multi_label\.thresholds must give every label"):
        Predictor(hostile)
    assert stored_thresholds({}, ["a"], hostile) is None


@pytest.mark.integration  # trains a model twice over (the split run and its refit)
def test_make_train_on_a_multi_label_file_reports_its_scores_and_its_refit_keeps_the_thresholds(
    tmp_path, tiny_pretrained_preset
):
    texts, labels = make_multilabel_texts(60, seed=2)
    data = write_csv(tmp_path / "tags.csv", zip(texts, [x.replace("|", ";") for x in labels], strict=True))
    models = tmp_path / "models"
    options = ["--data", str(data), "--model", str(tiny_pretrained_preset), "--models_dir", str(models)]
    options += ["--max_seq_len", "16", "--n_epochs", "1", "--label_separator", ";", "--class_weight", "balanced"]
    options += ["--refit", "all", "--label_smoothing", "0.1"]
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "train", *options],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "test subset accuracy" in result.stdout and "micro-F1" in result.stdout
    assert "multi-label" in result.stderr and "trains without class weights" in result.stderr

    folder = models / json.loads((models / "latest_model_config.json").read_text())["model_dir"]
    model_config = json.loads((folder / "model_config.json").read_text())
    refit = model_config["training"]["refit"]
    assert refit["texts"] == 60 and refit["epochs"] == model_config["training"]["best_epoch"]
    assert "temperature" not in refit  # multi-label models are not temperature-calibrated
    predictor = Predictor(folder, precision="fp32")
    assert predictor.thresholds.tolist() == pytest.approx(
        [model_config["multi_label"]["thresholds"][name] for name in predictor.classes]
    )
    answers, _ = predictor.predict(["apple apple banana", "hammer saw drill"])
    assert all(isinstance(answer, list) for answer in answers)
