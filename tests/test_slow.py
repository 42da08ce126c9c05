"""The real default checkpoint, end to end (minutes; `make test-slow`)."""

import json
import shutil
from pathlib import Path

import pytest

from bertclf.config import TrainConfig
from bertclf.inference.predictor import Predictor
from bertclf.training.run import train

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.network
def test_default_model_learns_the_sample_data(tmp_path):
    models = tmp_path / "models"
    cached = PROJECT / "models" / "pretrained" / "MiniLM-L6-H384-uncased"
    if cached.is_dir():  # reuse the project's cache instead of downloading 83 MB again
        shutil.copytree(cached, models / "pretrained" / cached.name)
    cfg = TrainConfig(
        data=str(PROJECT / "data" / "sample.csv"),
        models_dir=str(models),
        n_epochs=4,
        batch_size=16,
        max_learn_rate=1e-4,
    )
    folder, model_config = train(cfg)
    assert model_config["metrics"]["accuracy"] > model_config["metrics"]["baseline"]["accuracy"]
    labels, _ = Predictor(folder).predict(["How do I undo my last git commit?", "SELECT * FROM users WHERE id = 1"])
    assert labels == ["git", "sql"]
    assert json.loads((models / "latest_model_config.json").read_text())["id"] == model_config["id"]
