"""Load an exported model folder and classify texts with it; no web framework here."""

import json
import warnings
from pathlib import Path

import keras_hub
import numpy as np

from bertclf.batches import encode, predict_in_order, traced_forward
from bertclf.config import ENGINES
from bertclf.data import load_labels
from bertclf.registry import MODEL_CONFIG_FILE, latest_model_folder
from bertclf.runtime import OnnxForward, UnsupportedModel
from bertclf.safety import check_preset_is_data



def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Predictor:
    """A trained classifier loaded from its folder.

    Args:
        folder: a folder written by `bertclf train` (KerasHub preset + labels.json + model_config.json).
        batch_size: most texts per forward pass (batches are cut by length, see `sorted_order`).
        engine: "onnx" (ONNX Runtime, fused kernels: ~2x faster on a CPU), "tensorflow", or
            "auto": ONNX where the architecture has a fast graph (BERT, ALBERT), else TensorFlow.
        precision: "fp32", or "int8" (ONNX only: quantized matrix products, faster again; check
            the accuracy on your test split with `python -m bertclf evaluate --precision int8`).
        threads: CPU threads for ONNX Runtime (default: all cores).
        max_seq_len: truncate texts to this many tokens (default: what the model was trained with).
    """

    def __init__(self, folder, batch_size=64, engine="auto", precision="fp32", threads=None, max_seq_len=None):
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.folder = Path(folder)
        check_preset_is_data(self.folder)  # a model folder is data: refuse anything that could run code
        self.config = json.loads((self.folder / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
        self.classes = load_labels(self.folder / "labels.json")
        self.batch_size = batch_size
        with warnings.catch_warnings():
            # Exported folders hold no optimizer state on purpose; Keras warns that it skips loading it.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            self.classifier = keras_hub.models.TextClassifier.from_preset(str(self.folder))
        self.preprocessor = self.classifier.preprocessor
        if max_seq_len:
            positions = self.classifier.backbone.get_config().get("max_sequence_length", max_seq_len)
            if max_seq_len > positions:
                raise ValueError(f"max_seq_len {max_seq_len} is longer than the {positions} positions this model "
                                 f"has; use {positions} or less")
            self.preprocessor.sequence_length = max_seq_len
        self.classifier.preprocessor = None  # we tokenize once and batch by length ourselves
        self.name = self.config.get("name", self.folder.name)
        self.engine, self.precision = self._pick_engine(engine, precision, threads)

    def _pick_engine(self, engine, precision, threads):
        """Set self._forward: features -> class probabilities, on the chosen engine."""
        if engine != "tensorflow":
            try:
                self._forward = OnnxForward(self.classifier, precision, threads)
                return "onnx", precision
            except UnsupportedModel:
                if engine == "onnx":
                    raise
        if precision != "fp32":
            raise ValueError(f"precision {precision} needs the ONNX engine, which has no graph for this model")
        logits = traced_forward(self.classifier)
        self._forward = lambda features: softmax(np.asarray(logits(features)))
        return "tensorflow", "fp32"

    @classmethod
    def latest(cls, models_dir="models", **kwargs):
        """The model models/latest_model_config.json points to."""
        return cls(latest_model_folder(models_dir), **kwargs)

    def predict_proba(self, texts) -> np.ndarray:
        """Class probabilities, one row per text, columns in `self.classes` order."""
        if not texts:
            return np.zeros((0, len(self.classes)), np.float32)
        return predict_in_order(self._forward, encode(self.preprocessor, list(texts)), self.batch_size)

    def predict(self, texts):
        """(labels, probability of each label), in input order."""
        probabilities = self.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        return [self.classes[i] for i in best], [float(p) for p in probabilities[np.arange(len(best)), best]]


def evaluate_on_test_split(predictor: Predictor) -> dict:
    """Accuracy and macro-F1 of `predictor` on the test split its model was evaluated on at the
    end of training (the same files and seed, re-split), e.g. to check int8 against fp32.

    Raises:
        ValueError: the training data is missing or has changed since training.
    """
    from bertclf.checkpoints import sha256_of
    from bertclf.config import TrainConfig
    from bertclf.data import load_splits
    from bertclf.evaluate import compute_metrics

    hyperparameters = predictor.config.get("hyperparameters") or {}
    known = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(**{k: v for k, v in hyperparameters.items() if k in known})
    for role, recorded in (predictor.config.get("data") or {}).items():
        if not isinstance(recorded, dict) or "file" not in recorded:
            continue
        path = Path(recorded["file"])
        if not path.is_file():
            raise ValueError(f"{path} (the model's {role} file) is not there; the test split cannot be rebuilt")
        if sha256_of(path) != recorded.get("sha256"):
            raise ValueError(f"{path} has changed since training; its test split is not the one the model saw")
    test = load_splits(cfg).test
    index = {label: i for i, label in enumerate(predictor.classes)}
    y_true = np.array([index[label] for label in test.labels])
    y_pred = predictor.predict_proba(list(test.texts)).argmax(axis=1)
    return compute_metrics(y_true, y_pred, predictor.classes)
