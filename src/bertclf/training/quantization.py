"""The precision stage of an export: quantize the fp32 serving graph to int8, keeping the way of
quantizing that changes fewest answers on the validation split; then score fp32, int8 and (on a
CPU with bfloat16 instructions) bf16 on the test split, so that `--precision auto` serves a faster
precision only where it keeps the model's accuracy (inference/precision.py).

Every precision is run as the server runs it (a Predictor on the folder: the same tokenizer,
windows and thresholds) and compared with the fp32 graph, not with Keras: what is measured is
what the precision changed.
"""

import logging
import math
from pathlib import Path

import numpy as np

from bertclf.files import read_json_object, write_bytes_atomic, write_json_atomic
from bertclf.inference.multilabel import multi_hot
from bertclf.inference.openvino_engine import bf16_unavailable
from bertclf.inference.precision import RECORD_KEY, auto_precision
from bertclf.inference.predictor import Predictor
from bertclf.inference.quantize import DEFAULT_QUANTIZATION, INT8_GRAPH, QUANTIZATIONS, quantize
from bertclf.inference.runtime import SERVING_GRAPH, read_serving_graph
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, load_labels
from bertclf.training.data import Splits
from bertclf.training.evaluate import compute_metrics, compute_multilabel_metrics

log = logging.getLogger(__name__)

# Validation texts the choice of quantization is made on: enough to see a 0.1% difference in
# changed answers, and a bounded cost (each choice scores them once) on a large data set.
MOST_CHOOSING_TEXTS = 2000


def _answers(predictor: Predictor, probabilities: np.ndarray) -> np.ndarray:
    """Each text's answer as a row: the top class (single-label) or every class past its threshold."""
    if predictor.thresholds is not None:
        return probabilities >= predictor.thresholds
    return probabilities.argmax(axis=1)[:, None]


def _changes(predictor: Predictor, reference: np.ndarray, other: np.ndarray) -> dict:
    """How far `other` moved from `reference`: the share of texts whose answer changed, and the
    largest change of any probability."""
    changed = (_answers(predictor, reference) != _answers(predictor, other)).any(axis=1)
    return {
        "changed_share": round(float(changed.mean()), 4) if len(changed) else 0.0,
        "max_probability_change": round(float(np.abs(reference - other).max(initial=0.0)), 4),
    }


def _scores(predictor: Predictor, splits: Splits, probabilities: np.ndarray) -> dict:
    """Test accuracy and F1 of one graph's probabilities (micro-F1 too for a multi-label model)."""
    if predictor.thresholds is not None:
        truth = multi_hot(splits.label_sets("test"), predictor.classes)
        metrics = compute_multilabel_metrics(truth, probabilities >= predictor.thresholds, predictor.classes)
        keys: tuple[str, ...] = ("accuracy", "micro_f1", "macro_f1")
    else:
        index = {label: i for i, label in enumerate(predictor.classes)}
        truth = np.array([index[label] for label in splits.test.labels])
        metrics = compute_metrics(truth, probabilities.argmax(axis=1), predictor.classes)
        keys = ("accuracy", "macro_f1")
    return {key: round(float(metrics[key]), 4) for key in keys}


def write_int8_graph(folder: Path, splits: Splits | None, batch_size: int = 64, unchecked: str = "") -> dict:
    """Write `folder/serving/model.int8.onnx` and return what model_config.json records of each precision.

    With `splits` (the run's, or the saved model's re-split), each of QUANTIZATIONS is scored on
    the validation split against the fp32 graph and the one that changes fewest answers is kept
    (the fastest on a tie); then fp32, int8 and, where this CPU computes bfloat16, bf16 are
    scored on the test split. Without them the default quantization is written unchecked
    (`unchecked` says why) and auto keeps fp32.

    The folder must hold its fp32 graph, labels.json and model_config.json.

    Raises:
        RuntimeError: the quantized graph fails the serving checks (a bug: nothing is kept).
    """
    num_classes = len(load_labels(folder / LABELS_FILE))
    fp32_graph = read_serving_graph(folder, num_classes)
    if splits is None or not len(splits.test):
        graph = quantize(fp32_graph, DEFAULT_QUANTIZATION)
        _write_checked(folder, graph, num_classes)
        reason = unchecked or "no test split"
        log.info(
            "wrote %s (%s); not checked on a test split (%s): auto serves fp32", INT8_GRAPH, graph_mb(graph), reason
        )
        return {"unchecked": reason, "fp32": None, "int8": None, "bf16": None, "auto": "fp32"}

    predictor = Predictor(folder, precision="fp32", batch_size=batch_size, refuse_drift=False)
    choosing = list((splits.validation if len(splits.validation) else splits.test).texts[:MOST_CHOOSING_TEXTS])
    reference = predictor.predict_proba(choosing)
    tried, best = [], None
    for order, choice in enumerate(QUANTIZATIONS):
        graph = quantize(fp32_graph, choice)
        predictor.use_graph(graph, "int8")
        moved = _changes(predictor, reference, predictor.predict_proba(choosing))
        tried.append({"name": choice.name, **{f"validation_{key}": value for key, value in moved.items()}})
        if best is None or moved["changed_share"] < best[0]:
            best = (moved["changed_share"], order, choice, graph)
        log.info(
            "int8 %s: %.2f%% of %d validation answers changed (probabilities by up to %.3f)",
            choice.name,
            100 * moved["changed_share"],
            len(choosing),
            moved["max_probability_change"],
        )
    assert best is not None  # QUANTIZATIONS is not empty
    _, _, choice, graph = best
    _write_checked(folder, graph, num_classes)

    test = list(splits.test.texts)
    predictor.use_graph(fp32_graph, "fp32")
    fp32 = predictor.predict_proba(test)
    record: dict = {
        "test_texts": len(test),
        "fp32": {"file": SERVING_GRAPH.as_posix(), **_scores(predictor, splits, fp32)},
    }

    def scored(precision: str, what: bytes, **extra) -> None:
        predictor.use_graph(what, precision)
        probabilities = predictor.predict_proba(test)
        record[precision] = {
            **_scores(predictor, splits, probabilities),
            **_changes(predictor, fp32, probabilities),
            **extra,
        }

    scored(
        "int8",
        graph,
        file=INT8_GRAPH.as_posix(),
        quantization={"name": choice.name, "description": choice.describe()},
        tried_on_validation=tried,
    )
    why_not_bf16 = bf16_unavailable()
    if why_not_bf16 is None:
        try:
            scored("bf16", fp32_graph, file=SERVING_GRAPH.as_posix(), runtime="openvino")
        except RuntimeError as err:  # OpenVINO could not compile or run the graph: the export goes on without bf16
            why_not_bf16 = f"OpenVINO could not run the graph ({str(err).splitlines()[0][:200]})"
            log.warning("bf16: %s; auto will not serve it", why_not_bf16)
    if why_not_bf16 is not None:  # not measured: a server on a bfloat16 CPU keeps to int8 or fp32 for this model
        record["bf16"], record["bf16_unchecked"] = None, f"the exporting machine could not run it: {why_not_bf16}"
    config = read_json_object(folder / MODEL_CONFIG_FILE, ValueError)
    record["auto"], record["auto_reason"], _ = auto_precision({**config, RECORD_KEY: record}, folder, why_not_bf16)
    for precision in ("int8", "bf16"):
        if record.get(precision):
            log.info(
                "%s: test accuracy %.4f vs %.4f in fp32, %.2f%% of answers changed",
                precision,
                record[precision]["accuracy"],
                record["fp32"]["accuracy"],
                100 * record[precision]["changed_share"],
            )
    log.info(
        "wrote %s (%s, %s); precision auto serves %s here", INT8_GRAPH, graph_mb(graph), choice.name, record["auto"]
    )
    return record


def graph_mb(graph: bytes) -> str:
    return f"{math.ceil(len(graph) / 1e6)} MB"


def _write_checked(folder: Path, graph: bytes, num_classes: int) -> None:
    """Write the int8 graph, then read it back through the server's checks (allowlist, inputs, outputs)."""
    target = folder / INT8_GRAPH
    write_bytes_atomic(target, graph)
    try:
        read_serving_graph(folder, num_classes, "int8")
    except Exception as err:
        target.unlink(missing_ok=True)
        raise RuntimeError(
            f"the int8 graph fails the serving checks ({err}); nothing was kept. Please report this"
        ) from None


def record_int8(folder: Path, record: dict) -> None:
    """Add the int8 stage's record to the folder's model_config.json (and metrics.json, if any)."""
    for name in (MODEL_CONFIG_FILE, "metrics.json"):
        path = folder / name
        if path.exists():
            write_json_atomic(path, {**read_json_object(path, ValueError), RECORD_KEY: record})


def int8_for_saved_folder(folder: Path, batch_size: int = 64) -> dict:
    """The int8 stage for a folder exported before int8 graphs were (`export-onnx`): its test split
    rebuilt from the training data it records, else written unchecked (auto then serves fp32)."""
    from bertclf.training.data import DataError
    from bertclf.training.evaluate import saved_splits

    config = read_json_object(folder / MODEL_CONFIG_FILE, ValueError)
    try:
        splits, unchecked = saved_splits(config, folder), ""
    except DataError as err:
        splits, unchecked = None, f"the training data is not at hand: {err}"
    record = write_int8_graph(folder, splits, batch_size, unchecked)
    record_int8(folder, record)
    return record
