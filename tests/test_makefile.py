"""The Makefile hands every value to the command as one argument, whatever quotes or spaces it holds:
make runs the real recipes here, with stand-ins for python and docker that print what they got."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/bin/sh
# prints its arguments as a JSON list (what `python` was asked to run)
exec /usr/bin/env -u PYTHONPATH {python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"
"""
# image inspect finds no image; `run ... IMAGE COMMAND...` runs COMMAND here, as the container would.
FAKE_DOCKER = """#!/bin/bash
[ "$1 $2" = "image inspect" ] && exit 1
while [ $# -gt 0 ] && [ "$1" != bertclf-dev ]; do shift; done
shift; exec "$@"
"""


@pytest.fixture
def fakes(tmp_path):
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("python", FAKE_PYTHON.format(python=sys.executable)),
        ("docker", FAKE_DOCKER),
        ("tensorboard", "#!/bin/sh\nexit 0\n"),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    stamp = tmp_path / "stamp"  # newer than pyproject.toml: make installs nothing
    stamp.touch()
    return bin_dir, stamp


def make(fakes, target, **variables):
    bin_dir, stamp = fakes
    args = [f"BIN={bin_dir}", f"STAMP={stamp}", f"SERVE_STAMP={stamp}", f"DOCKER={bin_dir / 'docker'}"]
    args += [f"{name}={value}" for name, value in variables.items()]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), target, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_predict_gets_a_text_with_quotes_commas_and_dollars_as_one_argument(fakes):
    text = "it's slow, isn't it? \"quoted\" $HOME `date`"
    assert make(fakes, "predict", TEXT=text) == ["-m", "bertclf", "predict", text]


def test_predict_labels_files_whose_paths_hold_spaces_and_apostrophes(fakes):
    got = make(fakes, "predict", DATA="my data/it's.csv", OUT="out put's.csv", TEXT_COLUMN="the body", TOP_K="3")
    assert got == [
        "-m", "bertclf", "predict", "--input", "my data/it's.csv", "--output", "out put's.csv",
        "--text_column", "the body", "--top_k", "3",
    ]  # fmt: skip


@pytest.mark.parametrize("target", ["train-native", "train-docker"])
def test_train_passes_each_setting_as_one_argument(fakes, target):
    got = make(fakes, target, DATA="my data/o'brien's tickets.csv", MODEL="a model; rm -rf /", n_epochs="2")
    assert got == [
        "-m", "bertclf", "train", "--data", "my data/o'brien's tickets.csv", "--model", "a model; rm -rf /",
        "--n_epochs", "2",
    ]  # fmt: skip


def test_predict_and_serving_need_only_the_serving_install():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("predict", "start_api-native"):
        line = next(line for line in makefile.splitlines() if line.startswith(f"{target}:"))
        assert "$(SERVE_STAMP)" in line and "$(STAMP)" not in line.replace("$(SERVE_STAMP)", ""), line
    rule = makefile[makefile.index("$(SERVE_STAMP): pyproject.toml") :].split("\n\n")[0]
    assert "pip install --quiet -e ." in rule and "[train" not in rule
