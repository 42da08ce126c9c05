"""The command line end to end, as a user runs it: train, then predict from args and stdin."""

import subprocess
import sys

from conftest import make_texts, write_csv


def run(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "bertclf", *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_train_then_predict(tmp_path, tiny_preset):
    texts, labels = make_texts(25)
    data = write_csv(tmp_path / "d.csv", [(t, lab) for t, lab in zip(texts, labels)], header=("post", "tags"))
    models = tmp_path / "models"
    result = run("train", "--data", str(data), "--model", str(tiny_preset), "--models_dir", str(models),
                 "--max_seq_len", "32", "--n_epochs", "2", "--batch_size", "16", "--max_learn_rate", "1e-2")
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "exported to" in result.stdout
    assert (models / "latest_model_config.json").is_file()

    result = run("predict", "--models_dir", str(models), "apple banana", "hammer saw")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("model: BERT ") and len(lines) == 3

    result = run("predict", "--models_dir", str(models), stdin="cat dog\n\nlemon\n")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 3


def test_bad_data_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    result = run("train", "--data", str(tmp_path / "empty.csv"), "--models_dir", str(tmp_path))
    assert result.returncode == 2
    assert "error:" in result.stderr and "empty" in result.stderr and "Traceback" not in result.stderr


def test_bad_setting_and_help(tmp_path):
    result = run("train", "--max_learn_rate", "5")
    assert result.returncode == 2 and "max_learn_rate must be between 0 and 1" in result.stderr
    result = run("train", "--help")
    assert result.returncode == 0 and "--warmup_proportion" in result.stdout and "(default: 0.1)" in result.stdout


def test_predict_without_model_says_train_first(tmp_path):
    result = run("predict", "--models_dir", str(tmp_path), "hello")
    assert result.returncode == 2 and "make train" in result.stderr
