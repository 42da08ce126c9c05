"""Build the classifier (pretrained backbone + preprocessor + classification head) for a checkpoint."""

import keras
import keras_hub

from bertclf.checkpoints import Checkpoint
from bertclf.config import ConfigError


def build_classifier(checkpoint: Checkpoint, num_classes: int, max_seq_len: int, dropout: float):
    """A KerasHub TextClassifier with pretrained backbone weights and a fresh head.

    The preprocessor (tokenizer, [CLS]/[SEP], truncation to max_seq_len) stays inside the model, so
    the exported folder tokenizes at serving time exactly as it did in training.

    Args:
        checkpoint: a resolved local checkpoint (see checkpoints.resolve).
        num_classes: size of the output layer.
        max_seq_len: longest token sequence; must fit the checkpoint's position embeddings.
        dropout: dropout before the output layer.
    """
    if max_seq_len > checkpoint.max_sequence_length:
        raise ConfigError(
            f"max_seq_len {max_seq_len} is longer than the {checkpoint.max_sequence_length} positions "
            f"{checkpoint.name} was trained with; use {checkpoint.max_sequence_length} or less."
        )
    preset = str(checkpoint.path)
    preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(preset, sequence_length=max_seq_len)
    return keras_hub.models.TextClassifier.from_preset(
        preset, num_classes=num_classes, preprocessor=preprocessor, dropout=dropout
    )


def compile_classifier(classifier, learning_rate, jit_compile=False):
    """AdamW with BERT's weight decay (not on biases or layer norms), cross-entropy on logits.

    XLA stays off by default: it recompiles for every new batch width, and per-batch padding makes
    many widths; plain TensorFlow runs the dynamic shapes with a single trace.
    """
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=0.01, clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "LayerNorm", "layer_norm"])
    classifier.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
