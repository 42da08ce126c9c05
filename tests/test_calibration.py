"""Temperature scaling: the fitted temperature is the one the data came from, it lowers the
calibration error without changing a prediction, and folded into the output layer the exported
model (Keras and its serving graph alike) gives the calibrated probabilities."""

import json

import numpy as np
import pytest

from bertclf.activations import softmax
from bertclf.training.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    held_out_likelihood,
    negative_log_likelihood,
)


def overconfident(n=4000, classes=5, temperature=2.5, seed=0):
    """Logits whose labels really follow softmax(logits / temperature): an overconfident model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, classes))
    truth = softmax(logits / temperature)
    y = np.array([rng.choice(classes, p=row) for row in truth])
    return logits, y


def test_the_fitted_temperature_is_the_true_one_and_lowers_the_error():
    logits, y = overconfident()
    temperature = fit_temperature(logits[:2000], y[:2000])
    assert temperature == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(softmax(logits[2000:]), y[2000:])
    after = expected_calibration_error(softmax(logits[2000:] / temperature), y[2000:])
    assert before > 0.1 and after < 0.04
    assert (softmax(logits / temperature).argmax(axis=1) == logits.argmax(axis=1)).all(), "no prediction changes"


def test_a_split_the_model_gets_all_right_cannot_push_the_temperature_to_zero():
    logits = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0]])
    assert fit_temperature(logits, np.array([0, 1, 0])) == pytest.approx(MIN_TEMPERATURE, rel=1e-3)
    assert fit_temperature(-logits, np.array([0, 1, 0])) == pytest.approx(MAX_TEMPERATURE, rel=1e-3)


def test_ece_of_a_calibrated_and_of_a_certain_model():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 20000)
    y = (rng.random(20000) > confidence).astype(int)  # right with probability `confidence`
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(probabilities, y) < 0.02
    certain = np.stack([np.ones(4), np.zeros(4)], axis=1)
    assert expected_calibration_error(certain, np.array([0, 0, 1, 1])) == pytest.approx(0.5)


def test_folding_the_temperature_into_the_output_layer(tiny_preset):
    from conftest import detached_classifier

    classifier, _ = detached_classifier(tiny_preset, max_seq_len=16)
    features = {
        "token_ids": np.array([[2, 5, 6, 3], [2, 7, 3, 0]], np.int32),
        "segment_ids": np.zeros((2, 4), np.int32),
        "padding_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32),
    }
    logits = np.asarray(classifier(features, training=False))
    fold_temperature(classifier, 3.0)
    np.testing.assert_allclose(np.asarray(classifier(features, training=False)), logits / 3.0, rtol=1e-5, atol=1e-6)


def overconfident_validation(temperature, n=300, seed=0):
    """Logits, and labels drawn as if its real temperature were
    `temperature` (2.5: overconfident; 1: calibrated already)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 2))
    y = np.array([rng.choice(2, p=row) for row in softmax(logits / temperature)])
    return logits, y


@pytest.mark.parametrize("true_temperature, kept", [(2.5, True), (1.0, False)])
def test_a_temperature_is_kept_only_when_it_helps_validation_texts_it_was_not_fitted_on(
    tiny_preset, true_temperature, kept
):
    from conftest import detached_classifier

    classifier, _ = detached_classifier(tiny_preset, max_seq_len=16)
    kernel = np.asarray(classifier.output_dense.kernel.numpy()).copy()
    logits, y = overconfident_validation(true_temperature)
    check = held_out_likelihood(logits, y)
    assert check["folds"] == 5 and (check["fitted"] < check["plain"]) == kept

    record, served = calibrate(classifier, logits[:200], y[:200], logits[200:], y[200:])
    assert record["kept"] == kept and record["fitted_on"] == "validation"
    assert record["fitted_temperature"] == pytest.approx(fit_temperature(logits[:200], y[:200]), abs=1e-4)
    if kept:  # folded into the output layer; the test split's probabilities and scores are the calibrated ones
        assert record["temperature"] == record["fitted_temperature"] > 2
        folded = kernel / record["fitted_temperature"]
        np.testing.assert_allclose(classifier.output_dense.kernel.numpy(), folded, rtol=1e-3)
        assert record["nll_after"] < record["nll_before"] and record["ece_after"] < record["ece_before"]
    else:  # the model is left as trained
        assert record["temperature"] == 1.0
        np.testing.assert_array_equal(classifier.output_dense.kernel.numpy(), kernel)
        assert (record["ece_after"], record["nll_after"]) == (record["ece_before"], record["nll_before"])
    np.testing.assert_allclose(served, softmax(logits[200:] / record["temperature"]), atol=1e-4)
    nll = negative_log_likelihood(logits[200:], y[200:], record["temperature"])
    assert record["nll_after"] == pytest.approx(nll, abs=1e-4)


def test_a_validation_split_of_one_text_keeps_no_temperature(tiny_preset):
    from conftest import detached_classifier

    classifier, _ = detached_classifier(tiny_preset, max_seq_len=16)
    record, _ = calibrate(classifier, np.array([[3.0, 0.0]]), np.array([1]), np.array([[1.0, 0.0]]), np.array([0]))
    assert not record["kept"] and record["validation_nll_cross_validated"] is None


def test_a_trained_model_is_calibrated_and_serves_the_calibrated_probabilities(tiny_run):
    from bertclf.inference.predictor import Predictor
    from bertclf.training.data import load_splits

    cfg, folder, model_config = tiny_run
    metrics = json.loads((folder / "metrics.json").read_text())
    record = metrics["calibration"]
    assert record == model_config["metrics"]["calibration"]
    assert MIN_TEMPERATURE <= record["temperature"] <= MAX_TEMPERATURE
    assert 0 <= record["ece_after"] <= 1 and 0 <= record["ece_before"] <= 1
    assert (folder / "reliability_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The export carries the temperature: Keras and the serving graph both give calibrated rows.
    test = load_splits(cfg).test
    served, keras = Predictor(folder), Predictor(folder, engine="tensorflow")
    np.testing.assert_allclose(served.predict_proba(test.texts), keras.predict_proba(test.texts), atol=1e-4)
    # Predictions are those evaluated before the temperature was folded in.
    labels, _ = served.predict(test.texts)
    assert np.mean(np.array(labels) == np.array(test.labels)) == pytest.approx(metrics["accuracy"])
