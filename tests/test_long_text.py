"""--long_text window: a long text read as overlapping windows whose probabilities are averaged."""

import json
import shutil

import numpy as np
import pytest

from bertclf.config import PredictConfig, TrainConfig
from bertclf.errors import ConfigError, RegistryError
from bertclf.inference.pieces import MAX_WINDOWS, average_windows, windows
from bertclf.inference.predictor import Predictor
from bertclf.training.evaluate import evaluate_saved_model
from conftest import WORDS, make_app, make_texts, train_tiny, wait_until


def test_a_text_that_fits_stays_one_window():
    rows, owners = windows([[1, 2, 3], list(range(10))], 12)  # 10 ids + [CLS] + [SEP] fit 12
    assert rows == [[1, 2, 3], list(range(10))] and list(owners) == [0, 1]


def test_a_long_text_gets_half_overlapping_windows_from_its_start_to_its_end():
    ids = list(range(15))
    rows, owners = windows([ids], 12)
    assert rows == [ids[0:10], ids[5:15]] and list(owners) == [0, 0]
    rows, _ = windows([list(range(23))], 12)
    assert [r[0] for r in rows] == [0, 4, 9, 13] and all(len(r) == 10 for r in rows)  # stride <= 5


def test_a_very_long_text_gets_at_most_max_windows_spread_over_it():
    ids = list(range(1000))
    rows, owners = windows([[7], ids], 12)
    assert len(rows) == 1 + MAX_WINDOWS and list(owners) == [0] + [1] * MAX_WINDOWS
    assert rows[1][0] == 0 and rows[-1][-1] == 999


def test_average_windows_gives_each_text_the_mean_of_its_rows():
    probabilities = np.array([[1.0, 0.0], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    averaged = average_windows(probabilities, np.array([0, 1, 1, 2]), 3)
    np.testing.assert_allclose(averaged, [[1.0, 0.0], [0.4, 0.6], [0.5, 0.5]])


def test_the_setting_is_checked():
    with pytest.raises(ConfigError, match="long_text must be one of truncate, window"):
        TrainConfig(long_text="slide")
    with pytest.raises(ConfigError, match="long_text must be one of"):
        PredictConfig(long_text="all")


def test_windows_read_what_truncation_cuts_off(trained_models):
    _, folder = trained_models
    # Every word of the tiny vocabulary is one token; the model reads 32 (30 words + [CLS] + [SEP]).
    rng = np.random.default_rng(0)
    words = [str(w) for w in rng.choice([w for ws in WORDS.values() for w in ws], 60)]
    text = " ".join(words)
    truncated = Predictor(folder, long_text="truncate").predict_proba([text, "apple"])
    windowed = Predictor(folder, long_text="window").predict_proba([text, "apple"])
    # 60 tokens: windows at words 0, 15 and 30 (every half window, the last at the end).
    parts = [" ".join(words[start : start + 30]) for start in (0, 15, 30)]
    by_hand = Predictor(folder).predict_proba(parts)
    np.testing.assert_allclose(truncated[0], by_hand[0], atol=1e-6)
    np.testing.assert_allclose(windowed[0], by_hand.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(windowed[1], truncated[1], atol=1e-6)  # a short text: one window, the same


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_training_with_windows_evaluates_as_it_serves(tmp_path, tiny_preset):
    texts, labels = make_texts(30, seed=4, max_words=20)
    rows = zip(texts, labels, strict=True)
    # max_seq_len 8: most texts are longer, read as windows
    _, folder, model_config = train_tiny(tmp_path, tiny_preset, rows, max_seq_len=8, n_epochs=2, long_text="window")
    metrics = json.loads((folder / "metrics.json").read_text())
    record = metrics["long_text"]
    assert record["mode"] == "window" and record["texts_windowed"] > 0 and record["max_windows"] == MAX_WINDOWS
    assert set(record["truncated"]) == {"accuracy", "macro_f1"}
    assert model_config["hyperparameters"]["long_text"] == "window"
    predictor = Predictor(folder)
    assert predictor.long_text == "window"
    assert predictor.golden["texts"] > 0  # the golden texts that fit one window are still checked
    rescored = evaluate_saved_model(predictor)
    assert rescored["accuracy"] == pytest.approx(metrics["accuracy"])  # what training reported is what serving does
    assert rescored["macro_f1"] == pytest.approx(metrics["macro_f1"])


def test_a_hostile_stored_setting_is_refused(trained_models, tmp_path):
    _, folder = trained_models
    hostile = tmp_path / folder.name
    shutil.copytree(folder, hostile)
    config = json.loads((hostile / "model_config.json").read_text())
    config["hyperparameters"]["long_text"] = {"windows": 10**9}
    (hostile / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(RegistryError, match="long_text must be one of truncate, window"):
        Predictor(hostile)


def test_the_server_reads_long_texts_as_windows_when_told(models):
    models_dir, _ = models
    app = make_app(models_dir, long_text="window")
    manager = app.extensions["bertclf"].manager
    wait_until(lambda: manager.ready)
    try:
        client = app.test_client()
        text = " ".join(["apple banana"] * 8 + ["hammer saw"] * 20)
        body = client.post("/predict", json={"x": [text], "return_scores": True}).get_json()
        expected = Predictor(models_dir / "trained" / manager.folder.name, long_text="window").predict_proba([text])
        assert body["probabilities"][0] == pytest.approx(float(expected.max()), abs=1e-6)
        metrics = client.get("/metrics").get_data(as_text=True)
        assert "bertclf_truncated_texts_total" not in metrics or "bertclf_truncated_texts_total 0.0" in metrics
    finally:
        manager.stop()
