"""Load an exported model folder and classify texts with it; no web framework here."""

import json
import warnings
from pathlib import Path

import keras_hub
import numpy as np

from bertclf.batches import encode, predict_in_order, traced_forward
from bertclf.data import load_labels
from bertclf.registry import MODEL_CONFIG_FILE, latest_model_folder
from bertclf.safety import check_preset_is_data


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Predictor:
    """A trained classifier loaded from its folder.

    Args:
        folder: a folder written by `bertclf train` (KerasHub preset + labels.json + model_config.json).
        batch_size: texts per forward pass.
    """

    def __init__(self, folder, batch_size=32):
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
        self.classifier.preprocessor = None  # we tokenize once and batch by length ourselves
        self.name = self.config.get("name", self.folder.name)
        self._forward = traced_forward(self.classifier)

    @classmethod
    def latest(cls, models_dir="models", **kwargs):
        """The model models/latest_model_config.json points to."""
        return cls(latest_model_folder(models_dir), **kwargs)

    def predict_proba(self, texts) -> np.ndarray:
        """Class probabilities, one row per text, columns in `self.classes` order."""
        if not texts:
            return np.zeros((0, len(self.classes)), np.float32)
        return softmax(predict_in_order(self._forward, encode(self.preprocessor, list(texts)), self.batch_size))

    def predict(self, texts):
        """(labels, probability of each label), in input order."""
        probabilities = self.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        return [self.classes[i] for i in best], [float(p) for p in probabilities[np.arange(len(best)), best]]
