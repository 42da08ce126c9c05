"""Abstaining: below min_confidence the prediction is null, chosen at training or set at serving."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bertclf.config import PredictConfig, TrainConfig
from bertclf.errors import ConfigError, RegistryError
from bertclf.inference.abstain import at_threshold, decide, threshold_for_precision
from bertclf.inference.predictor import Predictor
from conftest import make_app, wait_until

# Top probabilities 0.9, 0.8, 0.7, 0.6, 0.5; right, right, wrong, right, wrong.
PROBABILITIES = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
Y = np.array([0, 1, 1, 1, 1])


def test_decide_answers_at_the_threshold_and_abstains_below():
    labels, probabilities = decide(PROBABILITIES, ["a", "b"], 0.6)
    assert labels == ["a", "b", "a", "b", None]
    assert probabilities == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert decide(PROBABILITIES, ["a", "b"], 0.0)[0] == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize(
    ("target", "threshold", "reached"),
    [(1.0, 0.8, True), (0.75, 0.6, True), (0.6, 0.5, True), (0.76, 0.8, True)],
)
def test_the_lowest_threshold_that_reaches_the_target_precision(target, threshold, reached):
    assert threshold_for_precision(PROBABILITIES, Y, target) == (threshold, reached)


def test_an_unreachable_precision_gives_the_best_threshold_and_says_so():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    assert threshold_for_precision(probabilities, np.array([1, 1, 0]), 1.0) == (0.8, False)  # 1 of 2 right


def test_equal_confidences_are_answered_or_abstained_together():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    # Answering one of the two 0.8 texts would reach 1.0, but a threshold cannot split them.
    assert threshold_for_precision(probabilities, np.array([0, 0, 1, 0]), 1.0) == (0.9, True)


def test_coverage_and_accuracy_at_a_threshold():
    report = at_threshold(PROBABILITIES, Y, 0.6)
    assert report == {"min_confidence": 0.6, "texts": 5, "answered": 4, "coverage": 0.8, "accuracy_answered": 0.75}
    assert at_threshold(PROBABILITIES, Y, 0.95)["accuracy_answered"] is None


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(min_confidence=0.5, target_precision=0.9)
    with pytest.raises(ConfigError, match="target_precision must be in"):
        TrainConfig(target_precision=0)
    with pytest.raises(ConfigError, match="min_confidence must be in"):
        PredictConfig(min_confidence=1.5)


def test_training_chooses_a_threshold_for_a_target_precision_and_records_it(options_run):
    rows, folder, model_config = options_run  # --target_precision 0.99 (among other options)
    texts = [text for text, _ in rows]
    record = model_config["abstain"]
    assert record["chosen_by"] == "target_precision 0.99 on the validation split"
    assert 0 < record["min_confidence"] <= 1 and record["min_confidence"] == record["test"]["min_confidence"]
    if record["target_reached"]:
        assert record["validation"]["accuracy_answered"] >= 0.99
    assert 0 <= record["test"]["coverage"] <= 1 and record["test"]["texts"] == model_config["data"]["n_test"]
    assert json.loads((folder / "metrics.json").read_text())["abstain"] == record
    predictor = Predictor(folder)
    assert predictor.min_confidence == record["min_confidence"]
    probabilities = predictor.predict_proba(texts)
    labels_given, _ = predictor.predict(texts)
    abstained = [label is None for label in labels_given]
    assert abstained == list(probabilities.max(axis=1) < record["min_confidence"])
    assert Predictor(folder, min_confidence=0).predict(texts)[0].count(None) == 0


@pytest.mark.parametrize("value", ["0.5", 2.0, -0.1, True, float("nan")])
def test_a_hostile_stored_threshold_is_refused(trained_models, tmp_path, value):
    _, folder = trained_models
    hostile = tmp_path / folder.name
    shutil.copytree(folder, hostile)
    config = json.loads((hostile / "model_config.json").read_text())
    config["abstain"] = {"min_confidence": value}
    (hostile / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(RegistryError, match=r"abstain\.min_confidence must be a number in \[0, 1\]"):
        Predictor(hostile)


def set_threshold(folder, value):
    config = json.loads((folder / "model_config.json").read_text())
    config["abstain"] = {"min_confidence": value, "chosen_by": "min_confidence"}
    (folder / "model_config.json").write_text(json.dumps(config))


def test_the_server_answers_null_below_the_models_threshold_and_counts_it(models):
    models_dir, folder = models
    set_threshold(folder, 1.0)  # nothing is that sure: every text abstains
    app = make_app(models_dir)
    manager = app.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    try:
        client = app.test_client()
        body = client.post("/predict", json={"x": ["apple banana", "hammer saw"]}).get_json()
        assert body["predictions"] == [None, None]
        assert all(0 < p < 1 for p in body["probabilities"])
        assert client.get("/model").get_json()["min_confidence"] == 1.0
        assert "bertclf_abstained_texts_total 2.0" in client.get("/metrics").get_data(as_text=True)
    finally:
        manager.stop()
    overridden = make_app(models_dir, min_confidence=0.0)  # BERTCLF_MIN_CONFIDENCE=0: always answer
    manager = overridden.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    try:
        body = overridden.test_client().post("/predict", json={"x": ["apple banana"]}).get_json()
        assert body["predictions"][0] is not None
    finally:
        manager.stop()


def test_predict_on_the_command_line_shows_abstentions(trained_models):
    models, _ = trained_models
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "--min_confidence", "1", "apple"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "min_confidence 1: below it" in result.stdout and "(abstain)" in result.stdout
