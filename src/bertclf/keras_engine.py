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
