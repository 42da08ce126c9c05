"""Abstaining: below a confidence threshold the answer's prediction is null (the probability is
still given), so a bot can leave the text to a person. numpy only: serving applies it too.

The threshold is stored in the model at training (`--min_confidence`, or chosen on the validation
split for `--target_precision`) and may be overridden where the model is served.
"""

from typing import Any

import numpy as np

from bertclf.errors import RegistryError
from bertclf.files import is_finite_number

ABSTAIN_KEY = "abstain"  # model_config.json and metrics.json: what training chose and measured


def decide(rows: np.ndarray, classes: list[str], min_confidence: float) -> tuple[list[str | None], list[float]]:
    """Each row's label, or None where its top probability is below `min_confidence`, and that probability."""
    best = rows.argmax(axis=1)
    top = rows[np.arange(len(best)), best]
    labels = [classes[i] if p >= min_confidence else None for i, p in zip(best, top, strict=True)]
    return labels, [float(p) for p in top]


def at_threshold(probabilities: np.ndarray, y: np.ndarray, min_confidence: float) -> dict[str, Any]:
    """Coverage (share of texts answered) and accuracy of the answered texts at a threshold."""
    top = probabilities.max(axis=1)
    answered = top >= min_confidence
    correct = probabilities.argmax(axis=1) == y
    n_answered = int(answered.sum())
    return {
        "min_confidence": round(float(min_confidence), 4),
        "texts": len(y),
        "answered": n_answered,
        "coverage": round(n_answered / max(len(y), 1), 4),
        "accuracy_answered": round(float(correct[answered].mean()), 4) if n_answered else None,
    }


def threshold_for_precision(probabilities: np.ndarray, y: np.ndarray, target: float) -> tuple[float, bool]:
    """The lowest threshold at which the answered texts' accuracy reaches `target` (most texts
    answered), and whether any threshold did; if none did, the threshold of the best accuracy."""
    top = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y).astype(float)
    order = np.argsort(-top, kind="stable")
    top, correct = top[order], correct[order]
    precision = np.cumsum(correct) / np.arange(1, len(top) + 1)  # answering the k most confident texts
    # A threshold answers every text at or above it: only the last of a run of equal confidences is a cut.
    cuts = np.r_[top[1:] < top[:-1], True]
    reached = np.flatnonzero(cuts & (precision >= target - 1e-12))
    if len(reached):
        return float(top[reached[-1]]), True
    candidates = np.flatnonzero(cuts)
    # The best accuracy; of equal ones, the cut answering most texts (the last in this order).
    best = candidates[len(candidates) - 1 - np.argmax(precision[candidates][::-1])]
    return float(top[best]), False


def stored_min_confidence(model_config: dict, folder: Any) -> float:
    """The threshold a model folder was trained with (0: none), checked as hostile data."""
    record = model_config.get(ABSTAIN_KEY)
    if record is None:
        return 0.0
    value = record.get("min_confidence") if isinstance(record, dict) else None
    if not is_finite_number(value) or not 0 <= value <= 1:
        raise RegistryError(f"{folder}: model_config.json's abstain.min_confidence must be a number in [0, 1]")
    return float(value)
