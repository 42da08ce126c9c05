"""A model that checks itself: a few test texts and the probabilities the trained Keras model gave
them, stored at export and compared at every load, on whichever engine and precision serves.

A conversion that went wrong (a graph that drifted from the weights, a bad int8 build, a tokenizer
that splits differently) shows as probabilities that moved; such a model is refused before it
answers anyone, and a server keeps serving the model it had. numpy only: serving checks it too.
"""

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.errors import RegistryError
from bertclf.files import is_finite_number, read_json_object, write_json_atomic

log = logging.getLogger(__name__)

GOLDEN_FILE = "golden.json"
GOLDEN_TEXTS = 32  # ~0.1 s of load time on MiniLM; one text per class first, so every output is seen
MOST_GOLDEN_TEXTS = 256  # what a folder may hold: bounds the load time a hostile file can cost
LONGEST_GOLDEN_TEXT = 20_000  # characters; longer test texts are not chosen (they add nothing past max_seq_len)
# Largest change of any probability a load may show. fp32 engines agree with Keras to ~1e-6 (float
# rounding); int8 moved the sample model's probabilities by 0.004 at the median and 0.10 at most over
# 366 texts, so 0.2 passes a sound int8 build and refuses one whose answers it changed.
# bf16 (OpenVINO) moved the 4,000-text debian model's by 0.012 at most over 401 test texts.
TOLERANCE = {"fp32": 1e-3, "int8": 0.2, "bf16": 0.1}


class GoldenMismatch(RegistryError):
    """A model's answers on its golden texts moved past the tolerance: it is refused."""


def choose(labels: np.ndarray, lengths: np.ndarray, texts: list[str], n: int = GOLDEN_TEXTS) -> list[int]:
    """Indices of up to n texts: the longest text (it reaches the last positions), then one per class
    in turn, in split order, so every output and short and long inputs are covered."""
    usable = [i for i in range(len(texts)) if len(texts[i]) <= LONGEST_GOLDEN_TEXT]
    if not usable:
        return []
    chosen = [max(usable, key=lambda i: (lengths[i], -i))]
    queues: dict[int, list[int]] = {}
    for i in usable:
        if i != chosen[0]:
            queues.setdefault(int(labels[i]), []).append(i)
    while len(chosen) < n and any(queues.values()):
        for label in sorted(queues):
            if queues[label] and len(chosen) < n:
                chosen.append(queues[label].pop(0))
    return chosen


def write(folder: Path, texts: list[str], probabilities: np.ndarray, tokens: np.ndarray) -> None:
    """golden.json: the texts, how many tokens each became, and the probabilities Keras gave them."""
    write_json_atomic(
        folder / GOLDEN_FILE,
        {
            "made_by": "the trained Keras model (fp32), at export",
            "tolerance": TOLERANCE,
            "texts": texts,
            "tokens": [int(t) for t in tokens],
            "probabilities": [[round(float(p), 7) for p in row] for row in probabilities],
        },
    )


def read(folder: Path, n_classes: int) -> dict[str, Any] | None:
    """The folder's golden set, checked as hostile data; None if the folder has none (older exports).
    The folder passed safety.check_preset_is_data first (no links, JSON of bounded size and depth)."""
    path = folder / GOLDEN_FILE
    if not path.exists():
        return None
    golden = read_json_object(path, RegistryError)
    texts, tokens, rows = golden.get("texts"), golden.get("tokens"), golden.get("probabilities")

    def valid() -> bool:
        if not (isinstance(texts, list) and isinstance(tokens, list) and isinstance(rows, list)):
            return False
        if not 0 < len(texts) == len(tokens) == len(rows) <= MOST_GOLDEN_TEXTS:
            return False
        if not all(isinstance(t, str) and len(t) <= LONGEST_GOLDEN_TEXT for t in texts):
            return False
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 < t <= 100_000 for t in tokens):
            return False
        return all(
            isinstance(row, list) and len(row) == n_classes and all(is_finite_number(p) for p in row) for row in rows
        )

    if not valid():
        raise RegistryError(
            f"{path}: expected up to {MOST_GOLDEN_TEXTS} texts, each with its token count and "
            f"{n_classes} probabilities; re-export the model (`make train`) or delete the file to skip the check"
        )
    return {"texts": texts, "tokens": np.array(tokens), "probabilities": np.array(rows, dtype=np.float64)}


def check(predictor: Any, refuse: bool = True) -> dict[str, Any] | None:
    """Run the predictor on its folder's golden texts and compare with what Keras gave at export.

    Only texts that became the same tokens are compared (serving with another max_seq_len cuts
    long texts elsewhere; with long_text window, a text longer than one window is read otherwise).
    Returns what /model reports; raises GoldenMismatch past the tolerance
    unless `refuse` is False (`evaluate` reports instead). None when the folder has no golden set.
    """
    golden = read(predictor.folder, len(predictor.classes))
    if golden is None:
        log.info("%s has no %s (an older export): answers not checked at load", predictor.folder, GOLDEN_FILE)
        return None
    tolerance = TOLERANCE.get(predictor.precision, TOLERANCE["fp32"])
    counts = predictor.token_counts(golden["texts"])
    same_tokens = counts == golden["tokens"]
    if predictor.long_text == "window":  # a text that fills a window may be read as several
        same_tokens &= counts < predictor.sequence_length
    texts = [text for text, same in zip(golden["texts"], same_tokens, strict=True) if same]
    moved = np.abs(predictor.predict_proba(texts) - golden["probabilities"][same_tokens]) if texts else None
    per_text = np.where(np.isfinite(moved), moved, np.inf).max(axis=1) if moved is not None else np.zeros(1)
    worst, row = float(per_text.max()), int(per_text.argmax())
    result = {
        "texts": len(texts),
        "max_difference": round(worst, 7) if math.isfinite(worst) else None,
        "tolerance": tolerance,
        "engine": predictor.engine,
        "runtime": getattr(predictor, "runtime", predictor.engine),
        "precision": predictor.precision,
    }
    if worst > tolerance:
        message = (
            f"{predictor.folder}: on {predictor.engine} {predictor.precision} its answers moved from what the "
            f"trained model gave at export by up to {worst:.4f} (tolerance {tolerance}; golden text {row + 1} of "
            f"{len(texts)}: {texts[row][:60]!r})"
        )
        advice = "serve it with precision fp32" if predictor.precision != "fp32" else "re-export it (`make train`)"
        if refuse:
            raise GoldenMismatch(f"{message}. The model is refused; {advice}.")
        log.warning("%s; %s", message, advice)
    return result
