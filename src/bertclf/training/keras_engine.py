"""The Predictor's TensorFlow path (training install only): the KerasHub classifier itself, for
`engine tensorflow` and for folders exported before the serving graph was written at export.

The predictor imports this module on that path only; its module level imports nothing the serving
install lacks, so that a serving install gets the message `load_engine` gives, not an ImportError.
"""

import contextlib
import dataclasses
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.activations import sigmoid, softmax
from bertclf.errors import ConfigError, RegistryError
from bertclf.inference.predictor import graph_forward
from bertclf.inference.quantize import quantize
from bertclf.inference.runtime import SERVING_GRAPH, read_serving_graph
from bertclf.registry import LABELS_FILE
from bertclf.training.startup import import_tensorflow

log = logging.getLogger(__name__)

# Keras deserialisation keeps process-wide state (its safe-mode scope, custom objects): two threads
# loading at once (a model watcher and a caller) can break each other's load.
_ONE_LOAD_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def keras_safe_mode() -> Iterator[None]:
    """Load with Keras's safe mode in force, whatever the process set elsewhere.

    KerasHub's from_preset takes no safe_mode argument: its deserialisation obeys Keras's global
    flag, which `keras.config.enable_unsafe_deserialization()` turns off for the whole process.
    This scope resets the flag to "unset", under which deserialize_keras_object applies its own
    safe_mode=True (no lambdas, no arbitrary functions). Not True: under an explicit True KerasHub
    also refuses the preset's own vocabulary file, which its tokenizer loads by path.
    """
    from keras.src.saving.serialization_lib import SafeModeScope  # pinned keras: no public alias

    with SafeModeScope(None):
        yield


@dataclasses.dataclass
class KerasForward:
    """features -> probabilities through the Keras model (the interface of OnnxForward)."""

    classifier: Any
    multi_label: bool
    runtime = "tensorflow"

    def __post_init__(self) -> None:
        self.activation = sigmoid if self.multi_label else softmax
        self.logits = keras_logits(self.classifier)
        self.with_embedding = keras_outputs(self.classifier, self.activation, self.logits)
        self.embedding_dim: int | None = int(self.classifier.backbone.hidden_dim)

    def __call__(self, features: dict) -> np.ndarray:
        return self.activation(self.logits(features))


@dataclasses.dataclass
class Loaded:
    """What the Predictor answers with on the TensorFlow path."""

    forward: Any  # OnnxForward (a graph built in memory) or KerasForward
    engine: str
    precision: str
    classifier: Any
    preprocessor: Any


def load_engine(
    folder: Path,
    num_classes: int,
    sequence_length: int,
    multi_label: bool,
    engine: str,
    precision: str,
    threads: int | None,
) -> Loaded:
    """The Keras model of `folder`, and what answers with it: for engine auto or onnx the serving graph
    built in memory from its weights (a folder exported before graphs were), for engine tensorflow
    (or a backbone without a graph, under auto) the Keras model itself.

    Raises:
        ConfigError: the training install is missing for engine tensorflow, or the engine and
            precision asked for cannot serve this model.
        RegistryError: (serving install, no graph in the folder) says how to write the graph.
    """
    try:
        import_tensorflow()  # first, so its start-up chatter is filtered
        import keras_hub  # noqa: F401  (what load_classifier needs: fail here, with the message below)
    except ImportError as err:
        if engine == "tensorflow":
            raise ConfigError(
                f"engine tensorflow needs the training install ({err.msg}): "
                "`pip install 'bertclf[train]'`, or use engine auto"
            ) from None
        read_serving_graph(folder, num_classes)  # raises: says how to write the graph
        raise
    classifier, preprocessor = load_classifier(folder, num_classes, sequence_length)
    if engine != "tensorflow":
        from bertclf.training.onnx_writer import UnsupportedModel, build_graph

        try:
            graph = build_graph(classifier, multi_label).SerializeToString()
        except UnsupportedModel as err:
            if engine == "onnx":
                raise ConfigError(f"engine onnx: {err}; use engine auto or tensorflow") from None
        else:
            log.warning(
                "%s has no %s: built it from the Keras weights for this load (slower, and needs "
                "TensorFlow); `python -m bertclf export-onnx --model_dir %s` writes it once",
                folder,
                SERVING_GRAPH,
                folder,
            )
            if precision == "int8":
                graph = quantize(graph)
            return Loaded(graph_forward(graph, precision, threads), "onnx", precision, classifier, preprocessor)
    if precision != "fp32":
        raise ConfigError(
            f"precision {precision} needs the ONNX engine, which has no graph for this model; use precision fp32"
        )
    return Loaded(KerasForward(classifier, multi_label), "tensorflow", "fp32", classifier, preprocessor)


def load_classifier(folder: Path, num_classes: int, sequence_length: int):
    """The folder's KerasHub classifier, detached from its preprocessor (we tokenize once and
    batch by length ourselves), and that preprocessor cutting at `sequence_length`.

    Returns:
        (classifier, preprocessor).
    """
    import keras_hub

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
    from bertclf.training.pipeline import traced_forward

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


def keras_outputs(
    classifier, activation: Callable[[np.ndarray], np.ndarray], logits: Callable[[dict], np.ndarray]
) -> Callable[[dict], np.ndarray]:
    """features -> probabilities and embedding side by side (as OnnxForward.with_embedding), through
    Keras; `logits` is the classifier's `keras_logits` (one traced function for both outputs)."""
    return lambda features: np.concatenate(
        [activation(logits(features)), mean_hidden_state(classifier, features).astype(np.float32)], axis=1
    )
