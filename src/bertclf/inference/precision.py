"""What `--precision auto` serves: the fastest precision this machine accelerates among those the
export measured to keep the model's accuracy.

The export scores each precision's answers on the test split against the fp32 graph's
(training/quantization.py) and records them in model_config.json under RECORD_KEY. A precision
keeps the accuracy when its test accuracy is within MAX_ACCURACY_LOSS of fp32's and its macro-F1
(micro-F1 for a multi-label model) within MAX_F1_LOSS. Then, fastest first: bf16 (OpenVINO, on a
CPU with bfloat16 instructions), int8 (ONNX Runtime), else fp32. model_config.json is read as
hostile data: anything but the numbers the export writes means "not measured".
"""

import math
from pathlib import Path
from typing import Any, NamedTuple

from bertclf.inference.quantize import INT8_GRAPH

RECORD_KEY = "serving_graphs"
MAX_ACCURACY_LOSS = 0.005  # half a point of test accuracy
MAX_F1_LOSS = 0.01  # one point of F1


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def keeps_accuracy(config: dict, precision: str) -> tuple[bool | None, str]:
    """(whether the export measured that `precision` keeps the fp32 graph's accuracy: True, False,
    or None when it was not measured or cannot be read; what it measured)."""
    record = config.get(RECORD_KEY)
    graphs = record if isinstance(record, dict) else {}
    fp32, other = graphs.get("fp32"), graphs.get(precision)
    if not isinstance(fp32, dict) or not isinstance(other, dict):
        note = graphs.get(f"{precision}_unchecked", graphs.get("unchecked"))
        return None, f"its accuracy is unknown ({note if isinstance(note, str) else 'not measured at export'})"
    f1 = "micro_f1" if "micro_f1" in fp32 else "macro_f1"
    values = [_number(part.get(key)) for part in (fp32, other) for key in ("accuracy", f1)]
    numbers = [value for value in values if value is not None]
    if len(numbers) != len(values):
        return None, "its record in model_config.json is unreadable"
    fp32_accuracy, fp32_f1, accuracy, f1_score = numbers
    said = f"test accuracy {accuracy:.4f} vs {fp32_accuracy:.4f}, {f1} {f1_score:.4f} vs {fp32_f1:.4f} in fp32"
    # A hair of slack: the record's numbers are rounded to 4 places.
    if fp32_accuracy - accuracy > MAX_ACCURACY_LOSS + 1e-9:
        return False, f"it loses more than {MAX_ACCURACY_LOSS:.1%} accuracy ({said})"
    if fp32_f1 - f1_score > MAX_F1_LOSS + 1e-9:
        return False, f"it loses more than {MAX_F1_LOSS:.0%} {f1} ({said})"
    return True, f"it keeps the model's accuracy ({said})"


class Choice(NamedTuple):
    """What `auto` serves, why in a sentence, and the why as a short code for metrics labels:
    kept_accuracy (bf16 or int8), lost_accuracy (int8 measured and refused) or not_measured."""

    precision: str
    reason: str
    basis: str


def auto_precision(config: dict, folder: Path, bf16_unavailable: str | None) -> Choice:
    """The precision `auto` serves the model folder in, and why.

    Args:
        config: the folder's model_config.json.
        bf16_unavailable: why this machine cannot serve bf16 (openvino_engine.bf16_unavailable), or None.
    """
    passed, said = keeps_accuracy(config, "bf16")
    if passed and bf16_unavailable is None:
        return Choice("bf16", f"bf16: {said}, and this CPU computes bfloat16 natively", "kept_accuracy")
    skipped = f"not bf16: {bf16_unavailable if passed else said}"
    if not (folder / INT8_GRAPH).exists():
        return Choice(
            "fp32", f"{skipped}; not int8: no {INT8_GRAPH.as_posix()} (`export-onnx` writes it)", "not_measured"
        )
    passed, said = keeps_accuracy(config, "int8")
    if passed:
        return Choice("int8", f"int8: {said}; {skipped}", "kept_accuracy")
    return Choice("fp32", f"{skipped}; not int8: {said}", "not_measured" if passed is None else "lost_accuracy")
