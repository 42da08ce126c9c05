"""The command line end to end, as a user runs it: train, then predict from args and stdin."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertclf.training.startup import CHATTER
from conftest import make_texts, write_csv

ROOT = Path(__file__).resolve().parents[1]


def run(*args, stdin=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bertclf", *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_train_then_predict(tmp_path, tiny_preset):
    texts, labels = make_texts(25)
    data = write_csv(tmp_path / "d.csv", list(zip(texts, labels, strict=True)), header=("post", "tags"))
    models = tmp_path / "models"
    result = run(
        "train",
        "--data",
        str(data),
        "--model",
        str(tiny_preset),
        "--models_dir",
        str(models),
        "--max_seq_len",
        "32",
        "--n_epochs",
        "2",
        "--batch_size",
        "16",
        "--max_learn_rate",
        "1e-2",
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "exported to" in result.stdout
    assert "where the run's time went:" in result.stdout and "fit: training (2 epochs)" in result.stdout
    assert (models / "latest_model_config.json").is_file()

    result = run("predict", "--models_dir", str(models), "apple banana", "hammer saw")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("model: BERT ") and len(lines) == 3

    result = run("predict", "--models_dir", str(models), stdin="cat dog\n\nlemon\n")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 3


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_bad_data_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    result = run("train", "--data", str(tmp_path / "empty.csv"), "--models_dir", str(tmp_path))
    assert result.returncode == 2
    assert "error:" in result.stderr and "empty" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_bad_setting_and_help(tmp_path):
    result = run("train", "--max_learn_rate", "5")
    assert result.returncode == 2 and "max_learn_rate must be between 0 and 1" in result.stderr
    result = run("train", "--help")
    assert result.returncode == 0 and "--warmup_proportion" in result.stdout and "(default: 0.1)" in result.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--data", "nope.csv"], "nope.csv: no such file. Check DATA="),
        (["--data", "data/sample.csv", "--test_data", "nope.csv"], "nope.csv: no such file. Check TEST_DATA="),
        (["--data", "data/sample.csv", "--n_epochs", "0"], "n_epochs must be at least 1"),
    ],
)
def test_train_answers_a_wrong_option_or_file_before_loading_tensorflow(tmp_path, options, message):
    # TensorFlow takes seconds to import: a typo must not wait for it.
    probe = (
        "import sys; from bertclf.cli import main; code = main(sys.argv[1:]); "
        "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'tensorflow not loaded'); sys.exit(code)"
    )
    command = [sys.executable, "-c", probe, "train", "--models_dir", str(tmp_path), *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.strip() == "tensorflow not loaded"


def test_predict_without_model_says_train_first(tmp_path):
    result = run("predict", "--models_dir", str(tmp_path), "hello")
    assert result.returncode == 2 and "make train" in result.stderr


def test_help_lists_every_command_and_a_bad_server_variable_breaks_only_serve(tmp_path):
    result = run("--help")
    for command in ("train", "predict", "evaluate", "serve", "models", "fetch", "data"):
        assert f"    {command} " in result.stdout, command
    env = {**os.environ, "BERTCLF_PORT": "http"}
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "models", "--models_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0 and "MiniLM-L6-H384-uncased" in result.stdout, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "serve"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2 and "error: BERTCLF_PORT='http': expected a whole number" in result.stderr


def test_tensorflow_start_up_chatter_is_hidden(trained_models):
    models, folder = trained_models
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "BERTCLF_TF_LOGS")}
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "--model_dir", folder.name, "apple"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not CHATTER.search(result.stderr), result.stderr
    assert result.stdout.startswith("model: BERT ")


def test_evaluate_rescores_and_a_bad_engine_choice_is_a_clear_error(trained_models):
    models, _folder = trained_models
    result = run("evaluate", "--models_dir", str(models), "--precision", "int8")
    assert result.returncode == 0, result.stderr
    assert "(onnx, int8 on onnxruntime)" in result.stdout and "test split (" in result.stdout
    assert "precision: as asked (precision int8)" in result.stdout
    result = run("predict", "--models_dir", str(models), "--engine", "tensorflow", "--precision", "int8", "apple")
    assert result.returncode == 2 and "precision int8 needs the ONNX engine" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_onnx_writes_the_graph_into_older_folders(trained_models, tmp_path):
    import shutil

    source, folder = trained_models
    models = tmp_path / "models"
    shutil.copytree(source, models)
    graph = models / "trained" / folder.name / "serving" / "model.onnx"
    written = graph.read_bytes()
    graph.unlink()
    other = models / "trained" / "20260101-000000_other"
    shutil.copytree(models / "trained" / folder.name, other)
    (other / "labels.json").write_text('["just one"]')  # broken: skipped, and said so

    result = run("export-onnx", "--models_dir", str(models), "--all")
    assert result.returncode == 2, result.stderr  # one folder could not be exported
    assert f"{folder.name}: wrote " in result.stdout and graph.read_bytes() == written, "the same graph as train wrote"
    assert "20260101-000000_other: skipped: " in result.stderr and "at least two class names" in result.stderr
    shutil.rmtree(other)
    result = run("export-onnx", "--models_dir", str(models), "--all")
    assert result.returncode == 0 and "already has serving/model.onnx" in result.stdout
    result = run("export-onnx", "--models_dir", str(models), "--model_dir", folder.name)  # again: same bytes
    assert result.returncode == 0 and graph.read_bytes() == written
    result = run("export-onnx", "--models_dir", str(models), "--model_dir", "nope", "--all")
    assert result.returncode == 2 and "give --model_dir or --all, not both" in result.stderr
