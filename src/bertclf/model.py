"""Build the classifier (pretrained backbone + preprocessor + classification head) for a checkpoint."""

import keras
import keras_hub
import numpy as np
from sklearn.linear_model import LogisticRegression

from bertclf.batches import Encoded, predict_in_order
from bertclf.checkpoints import Checkpoint
from bertclf.config import ConfigError
from bertclf.pipeline import traced_forward
from bertclf.safety import keras_safe_mode


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
    with keras_safe_mode():
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


def init_head_from_probe(classifier, encoded: Encoded, labels, batch_size: int, regularization=1.0, balanced=False):
    """Start the output layer from a logistic regression fitted on the pretrained features.

    A random head makes the first epochs push gradients through an uninformed layer; starting
    from a fitted linear probe (LP-FT, Kumar et al. 2022) reaches a better model in fewer epochs
    and disturbs the pretrained features less. It costs one forward pass over the training set.

    Args:
        classifier: a TextClassifier with its preprocessor detached.
        encoded: the training texts, tokenized (batches.encode).
        labels: int class indices of the training texts.
        batch_size: texts per forward pass.
        regularization: inverse L2 strength (scikit-learn's C) of the probe.
        balanced: weigh classes by inverse frequency, as the fine-tuning does with class weights.
    """
    head = classifier.output_dense
    features = predict_in_order(traced_forward(keras.Model(classifier.inputs, head.input)), encoded, batch_size)
    probe = LogisticRegression(C=regularization, max_iter=1000, class_weight="balanced" if balanced else None)
    probe = probe.fit(features, labels)
    coef, intercept = probe.coef_, probe.intercept_
    num_classes = head.kernel.shape[1]
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row; softmax over two logits needs both
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    kernel = np.zeros((features.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, -10.0, np.float32)  # classes absent from training stay improbable
    kernel[:, probe.classes_] = coef.T
    bias[probe.classes_] = intercept
    head.kernel.assign(kernel)
    head.bias.assign(bias)
