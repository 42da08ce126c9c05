"""The Predictor's TensorFlow path (training install only): the KerasHub classifier itself, for
`engine tensorflow` and for folders exported before the serving graph was written at export."""

import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import keras_hub
import numpy as np

from bertclf.registry import LABELS_FILE, RegistryError
from bertclf.safety import keras_safe_mode

# Keras deserialisation keeps process-wide state (its safe-mode scope, custom objects): two threads
# loading at once (a model watcher and a caller) can break each other's load.
_ONE_LOAD_AT_A_TIME = threading.Lock()


def load_classifier(folder: Path, num_classes: int, sequence_length: int):
    """The folder's KerasHub classifier, detached from its preprocessor (we tokenize once and
    batch by length ourselves), and that preprocessor cutting at `sequence_length`.

    Returns:
        (classifier, preprocessor).
    """
    with _ONE_LOAD_AT_A_TIME, warnings.catch_warnings(), keras_safe_mode():
        # Exported folders hold no optimizer state on purpose; Keras warns that it skips loading it.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        classifier = keras_hub.models.TextClassifier.from_preset(str(folder))
    outputs = int(classifier.output_dense.kernel.shape[-1])
    if outputs != num_classes:
        raise RegistryError(
            f"{folder / LABELS_FILE} names {num_classes} classes but the model outputs {outputs}: "
            "the folder is inconsistent; export it again with `make train`"
        )
    preprocessor = classifier.preprocessor
    preprocessor.sequence_length = sequence_length
    classifier.preprocessor = None
    return classifier, preprocessor


def keras_logits(classifier) -> Callable[[dict], np.ndarray]:
    """features -> logits through the Keras model, traced once."""
    from bertclf.pipeline import traced_forward

    logits = traced_forward(classifier)
    return lambda features: np.asarray(logits(features))


def mean_hidden_state(classifier, features: dict) -> np.ndarray:
    """Each text's embedding through the Keras encoder: the mean of its last hidden states over
    its real tokens (what the serving graph's embedding output computes)."""
    backbone = classifier.backbone
    inputs = {tensor.name: features[tensor.name] for tensor in backbone.inputs}
    hidden = backbone(inputs, training=False)
    hidden = np.asarray(hidden["sequence_output"] if isinstance(hidden, dict) else hidden, dtype=np.float64)
    mask = np.asarray(features["padding_mask"], dtype=np.float64)[:, :, None]
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)


def keras_outputs(classifier, activation: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], np.ndarray]:
    """features -> probabilities and embedding side by side (as OnnxForward.with_embedding), through Keras."""
    logits = keras_logits(classifier)
    return lambda features: np.concatenate(
        [activation(logits(features)), mean_hidden_state(classifier, features).astype(np.float32)], axis=1
    )
