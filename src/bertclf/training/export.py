"""The export stage: the model folder a run leaves behind — KerasHub preset (JSON configs and
.weights.h5: no code, no pickle), the ONNX serving graph checked against the Keras model
(onnx_writer.py) and its int8 twin checked on the test split (quantization.py), golden texts every
load compares with, labels.json and model_config.json — written into the run's work folder, which
registry.run_folder moves into place whole."""

import logging
import platform
from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from bertclf import __version__
from bertclf.config import TrainConfig
from bertclf.files import sha256_of, write_json_atomic
from bertclf.inference import golden
from bertclf.inference.batches import Encoded
from bertclf.inference.multilabel import record
from bertclf.inference.precision import RECORD_KEY
from bertclf.inference.runtime import SERVING_GRAPH
from bertclf.pretrained import Checkpoint
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, model_record, save_labels
from bertclf.training.data import Splits
from bertclf.training.evaluate import Evaluation, served_probabilities
from bertclf.training.onnx_writer import UnsupportedModel, export_serving_graph
from bertclf.training.quantization import write_int8_graph
from bertclf.training.stages import Stages

log = logging.getLogger(__name__)


def library_versions() -> dict:
    """Versions a model folder was made with, for reproducing it."""
    return {
        "bertclf": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "numpy": np.__version__,
    }


def data_record(cfg: TrainConfig, splits: Splits) -> dict:
    """The data files (absolute path, path as given, SHA-256) and split sizes, for model_config.json."""
    files = {role: getattr(cfg, role) for role in ("data", "validation_data", "test_data")}
    return {
        **{
            role: {"file": str(Path(path).resolve()), "given": path, "sha256": sha256_of(path)}
            for role, path in files.items()
            if path
        },
        "n_train": len(splits.train),
        "n_validation": len(splits.validation),
        "n_test": len(splits.test),
        "rows_dropped": splits.dropped,
        "feedback": splits.feedback,
    }


def write_serving_graph(classifier, folder: Path, multi_label: bool = False) -> None:
    """serving/model.onnx, which serving runs without TensorFlow (a backbone without a graph serves on TensorFlow)."""
    try:
        export_serving_graph(classifier, folder, multi_label)
    except UnsupportedModel as err:
        log.info("%s: this model serves on TensorFlow (the training install)", err)


def write_golden_texts(
    folder: Path, forward, encoded: Encoded, y: np.ndarray, texts: list[str], batch_size: int, multi_label=False
):
    """golden.json: a few test texts and the probabilities the final (calibrated) Keras model gives
    them, which every load of the folder compares its engine's answers with (golden.py)."""
    by_class = y.argmax(axis=1) if multi_label else y  # multi-label: by each text's first class
    chosen = np.array(golden.choose(by_class, encoded.lengths, texts), dtype=int)
    subset = encoded.subset(chosen)
    probabilities = served_probabilities(forward, subset, batch_size, multi_label)
    golden.write(folder, [texts[i] for i in chosen], probabilities, subset.lengths)


def export_model(
    folder: Path,
    classifier,
    preprocessor,
    cfg: TrainConfig,
    splits: Splits,
    checkpoint: Checkpoint,
    identity: dict,
    data: dict,
    training: dict,
    evaluation: Evaluation,
    stages: Stages,
) -> dict:
    """The export stage: write the model folder's weights, serving graph, labels and model_config.json
    into `folder`; returns the model_config written.

    Args:
        identity: the run's `short_id` and `created` (its folder's and model's name).
        data: `data_record` and the token statistics, for model_config.json.
        training: what the fit recorded.
    """
    multi, classes, metrics = splits.multi_label, splits.classes, evaluation.metrics
    with stages("save the weights"):
        classifier.preprocessor = preprocessor
        classifier.optimizer = None  # Adam's moments would triple the folder's size; serving never needs them
        classifier.save_to_preset(str(folder))  # JSON configs + .weights.h5: no code, no pickle
    with stages("ONNX export and parity check"):
        write_serving_graph(classifier, folder, multi)
    with stages("write the folder"):
        save_labels(classes, folder / LABELS_FILE)
        model_config = model_record(
            short_id=identity["short_id"],
            created=identity["created"],
            family=checkpoint.family,
            base_model=checkpoint.name,
            hyperparameters=cfg.to_dict(),
            classes=classes,
            data=data,
            training=training,
            metrics={
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                **({"micro_f1": metrics["micro_f1"]} if multi else {}),
                "baseline": metrics.get("baseline"),
                **({"calibration": metrics["calibration"]} if "calibration" in metrics else {}),
            },
            abstain=None if multi else evaluation.abstaining,
            multi_label=None
            if evaluation.thresholds is None
            else record(splits.separator, classes, evaluation.thresholds),
            versions=library_versions(),
        )
        write_json_atomic(folder / MODEL_CONFIG_FILE, model_config)
    if (folder / SERVING_GRAPH).exists():
        with stages("int8 graph: quantize, check on the validation and test splits"):
            model_config[RECORD_KEY] = write_int8_graph(folder, splits, cfg.batch_size)
        write_json_atomic(folder / MODEL_CONFIG_FILE, model_config)
    return model_config
