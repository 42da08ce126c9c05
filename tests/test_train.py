"""A short real training run on the tiny model: it learns, exports everything, and reloads."""

import json

import pytest

from bertclf import train as train_module
from bertclf.train import train

EXPORTED = {
    "config.json",
    "metadata.json",
    "task.json",
    "preprocessor.json",
    "tokenizer.json",
    "model.weights.h5",
    "task.weights.h5",
    "assets",
    "labels.json",
    "model_config.json",
    "metrics.json",
    "classification_report.txt",
    "confusion_matrix.png",
    "logs",
}


def test_loss_goes_down_and_model_learns(tiny_run):
    _, _, model_config = tiny_run
    losses = model_config["training"]["history"]["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert model_config["metrics"]["accuracy"] > 0.6  # 3 classes: chance is 0.33


def test_export_is_complete(tiny_run):
    _cfg, folder, model_config = tiny_run
    assert {p.name for p in folder.iterdir()} >= EXPORTED
    assert not any(p.name.startswith(".incomplete") for p in folder.parent.iterdir())
    saved = json.loads((folder / "model_config.json").read_text())
    assert saved == model_config
    assert saved["hyperparameters"]["batch_size"] == 16 and saved["data"]["n_train"] == 96
    assert len(saved["data"]["data"]["sha256"]) == 64
    assert set(saved["versions"]) >= {"tensorflow", "keras", "keras_hub"}
    assert saved["name"].startswith("BERT ") and saved["name"].endswith(saved["id"])
    assert json.loads((folder / "labels.json").read_text()) == ["animal", "fruit", "tool"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"animal", "fruit", "tool"} and "macro_f1" in metrics
    assert 0 <= metrics["baseline"]["accuracy"] <= 1
    assert (folder / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((folder / "logs").rglob("events.out.tfevents.*"))
    assert not any("optimizer" in name for name in _h5_names(folder / "task.weights.h5"))
    latest = json.loads((folder.parent.parent / "latest_model_config.json").read_text())
    assert latest["model_dir"] == f"trained/{folder.name}" and latest["id"] == model_config["id"]


def _h5_names(path):
    import h5py

    names = []
    with h5py.File(path) as f:
        f.visit(names.append)
    return names


def test_interrupted_run_keeps_previous_latest(tiny_run, monkeypatch):
    cfg, folder, _ = tiny_run
    latest = folder.parent.parent / "latest_model_config.json"
    before = latest.read_text()
    folders_before = sorted(p.name for p in folder.parent.iterdir())

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "write_evaluation", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert latest.read_text() == before
    assert sorted(p.name for p in folder.parent.iterdir()) == folders_before
