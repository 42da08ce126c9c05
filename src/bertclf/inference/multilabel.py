"""Multi-label models: several labels per text ("bug|ui"). Each class has its own sigmoid output
and its own threshold, tuned for F1 on the validation split and stored in the model; a text gets
every class at or above its threshold (possibly none). numpy only: serving decides with it too.
"""

from typing import Any

import numpy as np

from bertclf.errors import RegistryError
from bertclf.files import is_finite_number

MULTI_LABEL_KEY = "multi_label"  # model_config.json: {"separator", "thresholds": {class: threshold}}


def multi_hot(label_sets: list[list[str]], classes: list[str]) -> np.ndarray:
    """A 0/1 matrix, texts x classes."""
    index = {name: i for i, name in enumerate(classes)}
    matrix = np.zeros((len(label_sets), len(classes)), np.float32)
    for row, names in enumerate(label_sets):
        matrix[row, [index[name] for name in names]] = 1.0
    return matrix


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per class, the threshold with the best F1 on these texts (ties: the one nearest 0.5); 0.5 for a
    class no text has, where F1 cannot be measured."""
    thresholds = np.full(truth.shape[1], 0.5)
    for c in range(truth.shape[1]):
        positives = truth[:, c] > 0
        if not positives.any():
            continue
        scores = probabilities[:, c]
        best = (-1.0, 0.0, 0.5)  # (F1, -distance from 0.5, threshold)
        for t in np.unique(np.r_[scores, 0.5]):
            predicted = scores >= t
            tp = float((predicted & positives).sum())
            f1 = 2 * tp / (predicted.sum() + positives.sum())
            best = max(best, (f1, -abs(t - 0.5), float(t)))
        thresholds[c] = best[2]
    return thresholds


def decide(rows: np.ndarray, classes: list[str], thresholds: np.ndarray) -> tuple[list[list[str]], list[list[float]]]:
    """Each text's classes at or above their thresholds, most probable first, and their probabilities."""
    labels, probabilities = [], []
    for row in rows:
        chosen = sorted(np.flatnonzero(row >= thresholds), key=lambda c: -row[c])
        labels.append([classes[c] for c in chosen])
        probabilities.append([float(row[c]) for c in chosen])
    return labels, probabilities


def record(separator: str, classes: list[str], thresholds: np.ndarray) -> dict[str, Any]:
    """What model_config.json stores of a multi-label model."""
    return {
        "separator": separator,
        "thresholds": {name: round(float(t), 6) for name, t in zip(classes, thresholds, strict=True)},
    }


def stored_thresholds(model_config: dict, classes: list[str], folder: Any) -> np.ndarray | None:
    """A multi-label model's thresholds in class order, checked as hostile data; None if single-label."""
    entry = model_config.get(MULTI_LABEL_KEY)
    if entry is None:
        return None
    thresholds = entry.get("thresholds") if isinstance(entry, dict) else None
    valid = (
        isinstance(thresholds, dict)
        and set(thresholds) == set(classes)
        and all(is_finite_number(t) and 0 <= t <= 1 for t in thresholds.values())
    )
    if not valid:
        raise RegistryError(
            f"{folder}: model_config.json's multi_label.thresholds must give every label in labels.json "
            "a number in [0, 1]; re-export the model (`make train`)"
        )
    assert isinstance(thresholds, dict)
    return np.array([thresholds[name] for name in classes], dtype=np.float64)
