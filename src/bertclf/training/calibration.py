"""Calibrated confidence: one temperature fitted on the validation split (temperature scaling,
Guo et al. 2017), folded into the output layer so every engine serves calibrated probabilities.

A fine-tuned transformer is overconfident: its top probability is higher than its accuracy. Dividing
the logits by a temperature T > 1 fixes most of that without changing any prediction (the argmax
stays). Folding 1/T into the output layer's kernel and bias makes the exported model, its serving
graph and every client see the calibrated probabilities, with nothing to remember at serving time.
The temperature is kept only when it also helps validation texts it was not fitted on (`calibrate`).
"""

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize_scalar

from bertclf.activations import softmax
from bertclf.inference.batches import predict_in_order

if TYPE_CHECKING:
    from bertclf.training.stages import Stages  # (imports Keras; evaluation imports this module without it)

log = logging.getLogger(__name__)

# Bounds of the fitted temperature: a small validation split that the model gets all right pushes
# the likelihood towards T -> 0 (certainty), which no test split supports.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.5, 10.0
ECE_BINS = 15  # the usual 15 equal-width confidence bins
CV_FOLDS = 5  # folds of the validation split that check a fitted temperature carries over


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `y` under softmax(logits / T),
    within [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
    logits = np.asarray(logits, dtype=np.float64)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(logits, y, float(np.exp(log_t)))

    found = minimize_scalar(nll, bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)), method="bounded")
    return float(np.exp(found.x))


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per confidence bin (equal width over [0, 1]): the mean top probability, the accuracy of the
    top label and the number of texts."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        return {
            "confidence": np.bincount(index, confidence, bins) / counts,
            "accuracy": np.bincount(index, correct, bins) / counts,
            "count": counts,
        }


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """The mean gap between confidence and accuracy over the bins, weighted by their texts (ECE)."""
    table = reliability(probabilities, y, bins)
    used = table["count"] > 0
    gaps = np.abs(table["confidence"][used] - table["accuracy"][used])
    return float((gaps * table["count"][used]).sum() / table["count"].sum())


def fold_temperature(classifier, temperature: float) -> None:
    """Divide the classifier's output layer by `temperature`: its logits become logits / T."""
    layer = classifier.output_dense
    layer.kernel.assign(np.asarray(layer.kernel.numpy()) / temperature)
    layer.bias.assign(np.asarray(layer.bias.numpy()) / temperature)


def negative_log_likelihood(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of `y` under softmax(logits / temperature)."""
    logits = np.asarray(logits, dtype=np.float64)
    return float(-_log_softmax(logits / temperature)[np.arange(len(y)), np.asarray(y)].mean())


def held_out_likelihood(logits: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> dict:
    """Does a temperature generalise beyond the texts it was fitted on? Cross-validated over `folds`
    seeded folds: each fold's negative log-likelihood at T = 1 and at the temperature fitted on the
    other folds, averaged over all texts."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    order = np.random.default_rng(seed).permutation(len(y))
    plain = fitted = 0.0
    for held in np.array_split(order, min(folds, len(y))):
        rest = np.setdiff1d(order, held)
        temperature = fit_temperature(logits[rest], y[rest])
        plain += negative_log_likelihood(logits[held], y[held]) * len(held)
        fitted += negative_log_likelihood(logits[held], y[held], temperature) * len(held)
    return {"plain": plain / len(y), "fitted": fitted / len(y), "folds": min(folds, len(y))}


def calibrate(classifier, validation_logits, y_validation, test_logits, y_test) -> tuple[dict, np.ndarray]:
    """Fit the temperature on the validation split; keep it (fold it into `classifier`) only when it
    also lowers the negative log-likelihood of validation texts it was not fitted on (cross-validated);
    measure the test split's calibration before and after.

    A validation split of a hundred texts, which early stopping has already chosen the epoch on,
    can ask for a temperature that only fits itself: on the real sets of the README, a temperature
    fitted on all of it raised the test error on every set. Cross-validating it on the same split
    costs nothing and keeps T = 1 when the fitted one does not carry over.

    Returns:
        (what metrics.json records, the test split's probabilities as the exported model gives them).
    """
    fitted = fit_temperature(validation_logits, y_validation)
    check = held_out_likelihood(validation_logits, y_validation) if len(y_validation) >= 2 else None
    kept = check is not None and check["fitted"] < check["plain"]
    temperature = fitted if kept else 1.0
    test_logits = np.asarray(test_logits, dtype=np.float64)
    before, after = softmax(test_logits), softmax(test_logits / temperature)
    if kept:
        fold_temperature(classifier, temperature)
    record = {
        "method": "temperature",
        "temperature": round(temperature, 4),
        "fitted_temperature": round(fitted, 4),
        "kept": kept,
        "fitted_on": "validation",
        "validation_nll_cross_validated": None if check is None else {k: round(v, 4) for k, v in check.items()},
        "ece_before": expected_calibration_error(before, y_test),
        "ece_after": expected_calibration_error(after, y_test),
        "ece_fitted": expected_calibration_error(softmax(test_logits / fitted), y_test),
        "nll_before": negative_log_likelihood(test_logits, y_test),
        "nll_after": negative_log_likelihood(test_logits, y_test, temperature),
        "nll_fitted": negative_log_likelihood(test_logits, y_test, fitted),
        "bins": ECE_BINS,
    }
    return record, after


def calibrate_model(
    classifier, forward, encoded: dict, y: dict, test_logits: np.ndarray, batch_size: int, stages: "Stages"
) -> tuple[dict, np.ndarray]:
    """The calibrate stage: fit the temperature on the validation split's logits and fold it into
    `classifier` when it helps held-out texts (`calibrate`); says what it did. Returns what `calibrate` does."""
    with stages("calibration"):
        validation_logits = predict_in_order(forward, encoded["validation"], batch_size)
        calibration = calibrate(classifier, validation_logits, y["validation"], test_logits, y["test"])
    fit = calibration[0]
    if fit["kept"]:
        log.info(
            "calibration: temperature %.2f (fitted on the validation split); test expected calibration "
            "error %.3f -> %.3f, negative log-likelihood %.3f -> %.3f",
            fit["temperature"],
            fit["ece_before"],
            fit["ece_after"],
            fit["nll_before"],
            fit["nll_after"],
        )
    else:
        log.info(
            "calibration: the temperature fitted on the validation split (%.2f) did not help its "
            "held-out folds, so the probabilities are left as trained (test expected calibration "
            "error %.3f; with it it would have been %.3f)",
            fit["fitted_temperature"],
            fit["ece_before"],
            fit["ece_fitted"],
        )
    return calibration
