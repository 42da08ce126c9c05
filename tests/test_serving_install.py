"""Serving needs none of the training stack: with TensorFlow, Keras, KerasHub, pandas and the rest
made impossible to import (as in `pip install bertclf` and the api image), the real server loads a
trained folder and answers as the full install does; commands that need training say what to install."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bertclf.errors import TRAINING_MODULES
from bertclf.inference.predictor import Predictor
from servers import predict, serving, workers_of

TEXTS = ["apple cat dog", "saw and hammer", "lemon mango", "Zebra! 中文 👍", ""]


@pytest.fixture(scope="module")
def serving_install(tmp_path_factory):
    """An environment whose Python cannot import any module of the `train` extra."""
    folder = tmp_path_factory.mktemp("serving_install")
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            class NotInstalled:
                def find_spec(self, name, path=None, target=None):
                    if name.partition(".")[0] in {sorted(TRAINING_MODULES)!r}:
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

            sys.meta_path.insert(0, NotInstalled())
            """
        )
    )
    return {**os.environ, "PYTHONPATH": str(folder)}


def run(args, env=None, stdin=None):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, input=stdin, timeout=300, check=False
    )


def test_the_blocker_blocks(serving_install):
    result = run(["-c", "import tensorflow"], env=serving_install)
    assert result.returncode == 1 and "No module named 'tensorflow'" in result.stderr


def test_the_real_server_answers_without_the_training_stack(models, serving_install, tmp_path):
    models_dir, folder = models
    expected = Predictor(folder).predict_proba(TEXTS)
    with serving(models_dir, tmp_path / "server.log", ready_in_a_row=2, env=serving_install) as (port, process):
        status, answer = predict(port, TEXTS)
        assert status == 200, answer
        labels = json.loads((folder / "labels.json").read_text())
        assert answer["predictions"] == [labels[i] for i in expected.argmax(axis=1)]
        np.testing.assert_allclose(answer["probabilities"], expected.max(axis=1), atol=1e-6)
        (worker,) = workers_of(process.pid)
        libraries = Path(f"/proc/{worker}/maps").read_text()
        tensorflow = [
            line
            for line in libraries.splitlines()
            if re.search(r"/tensorflow/|libtensorflow", line) and "/openvino/" not in line  # its TF-file reader
        ]
        assert "onnxruntime" in libraries and not tensorflow, f"the worker maps a TensorFlow library: {tensorflow[:3]}"


def test_commands_in_a_serving_install(trained_models, serving_install, tmp_path):
    models_dir, folder = trained_models
    args = ["-m", "bertclf", "predict", "--models_dir", str(models_dir)]
    result = run([*args, "apple cat", "saw"], env=serving_install)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("model: ")
    (tmp_path / "in.jsonl").write_text('{"text": "apple cat"}\n{"text": "saw"}\n')
    labelled = run(
        [*args, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.csv")], serving_install
    )
    assert labelled.returncode == 0 and "labelled 2 rows" in labelled.stderr, labelled.stderr
    trained = run(["-m", "bertclf", "train", "--models_dir", str(tmp_path / "models")], env=serving_install)
    assert trained.returncode == 2
    assert "needs the training install (no module 'tensorflow' here): `pip install 'bertclf[train]'`" in trained.stderr
    # A folder exported before the serving graph: says how to write it.
    old = tmp_path / "models" / "trained" / folder.name
    shutil.copytree(folder, old)
    (old / "serving" / "model.onnx").unlink()
    result = run(
        [*args[:-2], "--models_dir", str(tmp_path / "models"), "--model_dir", folder.name, "apple"], env=serving_install
    )
    assert result.returncode == 2
    assert "has no serving/model.onnx" in result.stderr and "python -m bertclf export-onnx --model_dir" in result.stderr
    result = run([*args, "--engine", "tensorflow", "apple"], env=serving_install)
    assert result.returncode == 2 and "engine tensorflow needs the training install" in result.stderr
