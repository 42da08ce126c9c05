"""Calibrated confidence: one temperature fitted on the validation split (temperature scaling,
Guo et al. 2017), folded into the output layer so every engine serves calibrated probabilities.

A fine-tuned transformer is overconfident: its top probability is higher than its accuracy. Dividing
the logits by a temperature T > 1 fixes most of that without changing any prediction (the argmax
stays). Folding 1/T into the output layer's kernel and bias makes the exported model, its serving
graph and every client see the calibrated probabilities, with nothing to remember at serving time.
"""

import numpy as np
from scipy.optimize import minimize_scalar

from bertclf.predictor import softmax

# Bounds of the fitted temperature: a small validation split that the model gets all right pushes
# the likelihood towards T -> 0 (certainty), which no test split supports.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.5, 10.0
ECE_BINS = 15  # the usual 15 equal-width confidence bins


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `y` under softmax(logits / T),
    within [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(logits / np.exp(log_t))[rows, y].mean())

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


def calibrate(classifier, validation_logits, y_validation, test_logits, y_test) -> tuple[dict, np.ndarray]:
    """Fit the temperature on the validation split, fold it into `classifier`, and measure the test
    split's calibration before and after.

    Returns:
        (what metrics.json records, the test split's calibrated probabilities).
    """
    temperature = fit_temperature(validation_logits, y_validation)
    test_logits = np.asarray(test_logits, dtype=np.float64)
    before, after = softmax(test_logits), softmax(test_logits / temperature)
    fold_temperature(classifier, temperature)
    record = {
        "method": "temperature",
        "temperature": round(temperature, 4),
        "fitted_on": "validation",
        "ece_before": expected_calibration_error(before, y_test),
        "ece_after": expected_calibration_error(after, y_test),
        "bins": ECE_BINS,
    }
    return record, after
