"""Metrics, the confusion-matrix plot, and re-scoring a saved model on the very test split it was
evaluated on, wherever it is run from and wherever it was trained."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bertclf.files import sha256_of
from bertclf.inference.predictor import Predictor
from bertclf.training.data import DataError
from bertclf.training.evaluate import compute_metrics, evaluate_saved_model, find_training_files, write_evaluation
from conftest import make_texts, write_csv


def test_metrics_report_and_plot(tmp_path):
    classes = ["a", "b", "c"]
    y_true, y_pred = np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0])
    metrics = write_evaluation(tmp_path, y_true, np.eye(3)[y_pred], classes, baseline={"accuracy": 0.5})
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(0.6) and metrics["confusion_matrix"][0] == [1, 1, 0]
    assert metrics["per_class"]["b"]["recall"] == 1.0 and metrics["baseline"] == {"accuracy": 0.5}
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "macro avg" in (tmp_path / "classification_report.txt").read_text()
    assert compute_metrics(y_true, y_true, classes)["macro_f1"] == 1.0
    assert not (tmp_path / "reliability_diagram.png").exists(), "drawn only for a calibrated model"


def test_importing_evaluation_sets_up_no_plotting():
    code = "import sys, bertclf.training.evaluate; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.fixture
def project(tmp_path, tiny_run):
    """The tiny model as a user's project holds it: <project>/models/trained/<folder>, trained on
    <project>/data/d.csv given as the relative path `data/d.csv` from <project>."""
    cfg, folder, model_config = tiny_run
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    shutil.copyfile(cfg.data, root / "data" / "d.csv")
    model = root / "models" / "trained" / folder.name
    shutil.copytree(folder, model)

    def record(file, models_dir="models"):
        config = json.loads(json.dumps(model_config))
        config["hyperparameters"].update(data="data/d.csv", models_dir=models_dir)
        config["data"]["data"] = {"file": str(file), "sha256": sha256_of(cfg.data)}
        (model / "model_config.json").write_text(json.dumps(config))
        return model

    return root, record, model_config


def elsewhere_with_another_data_file(tmp_path):
    """A folder holding a different data/d.csv: what a relative path finds when run from there."""
    other = tmp_path / "elsewhere"
    (other / "data").mkdir(parents=True)
    texts, labels = make_texts(60, seed=9)
    write_csv(other / "data" / "d.csv", zip(texts, labels, strict=True))
    return other


def test_rescoring_from_another_folder_reads_the_recorded_file(tmp_path, project, monkeypatch):
    root, record, model_config = project
    model = record(root / "data" / "d.csv")
    monkeypatch.chdir(elsewhere_with_another_data_file(tmp_path))  # its data/d.csv is not the training file
    scores = evaluate_saved_model(Predictor(model))
    assert scores["n_test"] == model_config["data"]["n_test"]
    assert scores["accuracy"] == pytest.approx(model_config["metrics"]["accuracy"], abs=1.01 / scores["n_test"])


def test_rescoring_a_model_trained_in_the_dev_container(tmp_path, project, monkeypatch):
    root, record, model_config = project
    # Trained in the container: the absolute path recorded is /workspace/..., which the host lacks.
    model = record("/workspace/data/d.csv")
    monkeypatch.chdir(elsewhere_with_another_data_file(tmp_path))
    assert find_training_files(json.loads((model / "model_config.json").read_text()), model) == {
        "data": root / "data" / "d.csv"
    }
    assert evaluate_saved_model(Predictor(model))["n_test"] == model_config["data"]["n_test"]


def test_changed_missing_and_moved_files(tmp_path, project, monkeypatch):
    root, record, _model_config = project
    model = record("/workspace/data/d.csv")
    config = json.loads((model / "model_config.json").read_text())
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "moved.csv"
    (root / "data" / "d.csv").rename(moved)
    with pytest.raises(
        DataError,
        match=r"data file is not at /workspace/data/d.csv or data/d.csv or .*project/data/"
        r"d.csv; pass it with --data FILE",
    ):
        find_training_files(config, model)
    assert find_training_files(config, model, {"data": str(moved)}) == {"data": moved}
    moved.write_text(moved.read_text() + "one more row,fruit\n")
    with pytest.raises(DataError, match=r"moved.csv changed since the model was trained \(SHA-256 differs\)"):
        find_training_files(config, model, {"data": str(moved)})


def test_rescoring_a_model_trained_with_feedback_reads_no_feedback_store(tmp_path, project, monkeypatch):
    # FEEDBACK=1 adds corrections to the training split only: the test split is the same without
    # them, so re-scoring must not need the store (gone, moved, or grown since the run).
    root, record, model_config = project
    model = record(root / "data" / "d.csv")
    config = json.loads((model / "model_config.json").read_text())
    config["hyperparameters"].update(feedback=True, feedback_db=str(tmp_path / "gone.sqlite3"))
    (model / "model_config.json").write_text(json.dumps(config))
    monkeypatch.chdir(root)
    scores = evaluate_saved_model(Predictor(model))
    assert scores["n_test"] == model_config["data"]["n_test"]
    assert scores["accuracy"] == pytest.approx(model_config["metrics"]["accuracy"], abs=1.01 / scores["n_test"])
