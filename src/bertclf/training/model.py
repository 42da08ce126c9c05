"""Build the classifier (pretrained backbone + preprocessor + classification head) for a checkpoint."""

import json
import logging

import keras
import keras_hub
import numpy as np
from sklearn.linear_model import LogisticRegression

from bertclf.config import TrainConfig
from bertclf.cpu import BF16_CPU_FLAGS, cpu_flags
from bertclf.errors import ConfigError
from bertclf.inference.batches import Encoded, predict_in_order
from bertclf.pretrained import Checkpoint
from bertclf.training.keras_engine import keras_safe_mode
from bertclf.training.optimizer import FusedAdamW
from bertclf.training.pipeline import traced_forward
from bertclf.training.schedule import build_schedule

log = logging.getLogger(__name__)


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
        classifier = keras_hub.models.TextClassifier.from_preset(
            preset, num_classes=num_classes, preprocessor=preprocessor, dropout=dropout
        )
    float32_residuals(classifier)
    return classifier


def float32_residuals(classifier) -> int:
    """Under a mixed (16-bit) policy, keep the residual stream and the logits in float32, as
    PyTorch's autocast does: only the matrix products and what sits between them (attention,
    GELU) compute in 16 bits. Keras's mixed policy rounds everything to 16 bits, so each layer's
    `x + residual` and the layer norm after it carry 8 bits of mantissa in bfloat16 (README
    "Training speed": this costs accuracy). Moved to float32: each KerasHub TransformerEncoder
    (so its inputs stay float32) with its layer norms and the dropouts on its residual path (not
    the attention's own), the backbone's own layer norms, dropouts and sums (its embeddings), and
    the output layer; every layer casts its inputs to its own dtype, so the dense layers between
    them still multiply in 16 bits. Other encoder layers are left as Keras builds them. Returns how
    many layers changed (0 under float32: nothing to do)."""
    if classifier.dtype_policy.compute_dtype == "float32":
        return 0
    stream = (keras.layers.LayerNormalization, keras.layers.Dropout, keras.layers.Add)
    changed = [layer for layer in classifier.backbone.layers if isinstance(layer, stream)]
    for encoder in classifier.backbone.layers:
        if isinstance(encoder, keras_hub.layers.TransformerEncoder):
            changed.append(encoder)
            changed.extend(
                getattr(encoder, name)
                for name in (
                    "_self_attention_layer_norm",
                    "_self_attention_dropout",
                    "_feedforward_layer_norm",
                    "_feedforward_dropout",
                )
            )
    changed.append(classifier.output_dense)
    float32 = keras.DTypePolicy("float32")
    for layer in changed:
        layer.dtype_policy = float32
    return len(changed)


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits against label-smoothed targets, from class indices: the given label
    gets 1 - smoothing + smoothing / K of the probability and every other label smoothing / K (the
    loss of keras's CategoricalCrossentropy(label_smoothing=...) on one-hot targets, without making
    them): (1 - smoothing) * -log p(label) + smoothing * mean over labels of -log p."""

    def __init__(self, smoothing: float, **kwargs):
        super().__init__(name="smoothed_sparse_crossentropy", **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        log_p = keras.ops.log_softmax(keras.ops.cast(y_pred, "float32"), axis=-1)
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1, 1)), "int32")
        nll = -keras.ops.take_along_axis(log_p, labels, axis=-1)[:, 0]
        return (1 - self.smoothing) * nll - self.smoothing * keras.ops.mean(log_p, axis=-1)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


def training_loss(multi_label: bool, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy on logits: binary per label (multi-label; smoothing moves each target towards
    0.5, as Keras does) or over the classes (smoothing spreads that share over every label)."""
    if multi_label:
        return keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    if label_smoothing:
        return SmoothedSparseCrossentropy(label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_classifier(
    classifier,
    learning_rate,
    jit_compile=False,
    layer_decay=1.0,
    num_layers=0,
    multi_label=False,
    fused_update=True,
    gradient_clipping="tensor",
    label_smoothing=0.0,
    ema=0.0,
):
    """AdamW with BERT's weight decay (not on biases or layer norms), cross-entropy on logits;
    with layer_decay < 1, each of the `num_layers` transformer layers below the head learns
    layer_decay times slower than the one above it. Multi-label: binary cross-entropy per class on
    sigmoid outputs (accuracy: of every text-class decision at probability 0.5). The gradient is
    clipped to norm 1: each weight's on its own (gradient_clipping "tensor", Keras's clipnorm), all
    together ("global", BERT's and PyTorch's) or not ("none"); label_smoothing: training_loss's;
    ema > 0: the optimizer keeps a moving average of the weights with that momentum.

    The optimizer's update is compiled with XLA whatever `jit_compile` says (optimizer.FusedAdamW;
    `fused_update=False`: Keras's own). `jit_compile` compiles the whole step, once per batch shape:
    off by default, slower than TensorFlow's kernels on the CPU measured (README "Training speed").
    """
    clipping = {"tensor": {"clipnorm": 1.0}, "global": {"global_clipnorm": 1.0}, "none": {}}[gradient_clipping]
    optimizer = FusedAdamW(
        num_layers,
        layer_decay,
        fused=fused_update,
        learning_rate=learning_rate,
        weight_decay=0.01,
        **clipping,
        **({"use_ema": True, "ema_momentum": ema} if ema else {}),
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "LayerNorm", "layer_norm"])
    if multi_label:
        metric = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)  # on logits: probability 0.5
    else:
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    loss = training_loss(multi_label, label_smoothing)
    classifier.compile(optimizer=optimizer, loss=loss, metrics=[metric], jit_compile=jit_compile)


def compile_for_run(classifier, cfg: TrainConfig, num_layers: int, steps_per_epoch: int, multi_label: bool) -> None:
    """compile_classifier with a run's settings: its warmup + decay schedule over cfg.n_epochs epochs of
    `steps_per_epoch` steps, layer decay, XLA, clipping, label smoothing and moving average."""
    compile_classifier(
        classifier,
        build_schedule(cfg, steps_per_epoch),
        layer_decay=cfg.layer_decay,
        num_layers=num_layers,
        multi_label=multi_label,
        jit_compile=cfg.xla,
        gradient_clipping=cfg.gradient_clipping,
        label_smoothing=cfg.label_smoothing,
        ema=cfg.ema,
    )


# The probe's texts at most: its forward pass costs a third of an epoch, and a linear probe on
# 384-768 features has learned what it will by then (on debian's 3,200 training texts, a probe on
# 2,000 of them scored 0.727 on the validation split against 0.733 on all: README "Training speed").
PROBE_TEXTS = 2000


def probe_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of about `limit` texts for the probe, every class in its share (at least one text
    of each class the training texts have; multi-label: of each label); all of them when there
    are at most `limit`."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    members = (
        [np.flatnonzero(labels[:, c]) for c in range(labels.shape[1])]
        if labels.ndim == 2
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    chosen = [
        rng.choice(rows, min(len(rows), max(1, round(limit * len(rows) / n))), replace=False)
        for rows in members
        if len(rows)
    ]
    return np.unique(np.concatenate(chosen))


def init_head_from_probe(
    classifier, encoded: Encoded, labels, batch_size: int, regularization=1.0, balanced=False, limit=PROBE_TEXTS, seed=0
):
    """Start the output layer from a logistic regression fitted on the pretrained features.

    A random head makes the first epochs push gradients through an uninformed layer; starting
    from a fitted linear probe (LP-FT, Kumar et al. 2022) reaches a better model in fewer epochs
    and disturbs the pretrained features less. It costs one forward pass over (at most `limit` of)
    the training texts, in the batch shapes the fit uses, so what the pass compiles the fit reuses.

    Args:
        classifier: a TextClassifier with its preprocessor detached.
        encoded: the training texts, tokenized (batches.encode).
        labels: int class indices of the training texts, or (multi-label) a 0/1 matrix, texts x classes.
        batch_size: texts per forward pass.
        regularization: inverse L2 strength (scikit-learn's C) of the probe.
        balanced: weigh classes by inverse frequency, as the fine-tuning does with class weights.
        limit, seed: probe on about `limit` texts drawn (by class) with this seed (probe_sample).
    """
    head = classifier.output_dense
    labels = np.asarray(labels)
    chosen = probe_sample(labels, limit, seed)
    sampled = len(chosen) < len(labels)
    log.info(
        "head_init probe: fitting the output layer to the pretrained features of %s",
        f"{len(chosen)} of the {len(labels)} training texts (drawn by class)"
        if sampled
        else f"the {len(labels)} training texts",
    )
    if sampled:
        labels, encoded = labels[chosen], encoded.subset(chosen)
    forward = traced_forward(keras.Model(classifier.inputs, head.input))
    features = predict_in_order(forward, encoded, batch_size, fixed=True)
    if labels.ndim == 2:  # multi-label: one binary probe per class, each logit its own sigmoid
        kernel = np.zeros((features.shape[1], labels.shape[1]), np.float32)
        bias = np.zeros(labels.shape[1], np.float32)
        for c in range(labels.shape[1]):
            positives = labels[:, c].mean()
            if 0 < positives < 1:
                probe = LogisticRegression(C=regularization, max_iter=1000).fit(features, labels[:, c])
                kernel[:, c], bias[c] = probe.coef_[0], probe.intercept_[0]
            else:  # a class every (or no) training text has: its base rate
                bias[c] = 10.0 if positives == 1 else -10.0
        head.kernel.assign(kernel)
        head.bias.assign(bias)
        return
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


def gpu_capabilities() -> list[tuple[int, int]]:
    """Each visible GPU's CUDA compute capability ((0, 0) where TensorFlow does not say)."""
    import tensorflow as tf

    return [
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def choose_precision(
    requested: str, flags: set[str] | None = None, gpus: list[tuple[int, int]] | None = None
) -> tuple[str, str]:
    """What the fit computes in, and why: `requested`, or for "auto" mixed bfloat16 where the
    hardware computes bfloat16 natively (GPUs of compute capability 8.0 and up; CPUs with
    avx512_bf16 or amx_bf16), float32 elsewhere (emulated bfloat16 is slower than float32).

    Args:
        requested: auto or one of TRAIN_PRECISIONS.
        flags, gpus: the CPU's flags and the GPUs' compute capabilities (default: this machine's).
    """
    if requested != "auto":
        return requested, "as asked (--precision)"
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        oldest = min(gpus)
        if oldest >= (8, 0):
            return (
                "mixed_bfloat16",
                f"auto: the GPU computes bfloat16 natively (compute capability {oldest[0]}.{oldest[1]})",
            )
        return "float32", (
            f"auto: a GPU of compute capability {oldest[0]}.{oldest[1]} has no bfloat16 units (8.0 and up have); "
            "--precision mixed_float16 uses its float16 tensor cores"
        )
    have = sorted((cpu_flags() if flags is None else flags) & set(BF16_CPU_FLAGS))
    if have:
        return "mixed_bfloat16", f"auto: this CPU computes bfloat16 in hardware ({', '.join(have)})"
    return (
        "float32",
        f"auto: this CPU has neither {' nor '.join(BF16_CPU_FLAGS)}, so bfloat16 would be emulated (slower)",
    )


def set_training_precision(precision: str) -> None:
    """Set Keras's global dtype policy for building and fitting the model: float32, or mixed
    precision (16-bit compute, float32 weights; Keras wraps the optimizer in loss scaling for
    float16 itself). Refuses float16 without a GPU: a CPU computes it slower than float32 and
    gains nothing. bfloat16 works on any CPU, in hardware with avx512_bf16 or amx_bf16."""
    import tensorflow as tf

    if precision != "float32" and not tf.config.list_physical_devices("GPU"):
        if precision == "mixed_float16":
            raise ConfigError(
                "precision mixed_float16 needs a GPU (no GPU is visible here): a CPU computes float16 slower than "
                f"float32. On a CPU with {' or '.join(BF16_CPU_FLAGS)} use --precision mixed_bfloat16, else float32"
            )
        if not cpu_flags() & set(BF16_CPU_FLAGS):  # asked for: auto never chooses it there
            log.warning(
                "precision mixed_bfloat16: this CPU has neither %s, so bfloat16 is emulated and the fit is slower "
                "than in float32; use --precision float32 here",
                " nor ".join(BF16_CPU_FLAGS),
            )
    keras.mixed_precision.set_global_policy(precision)


def float32_twin(classifier):
    """The same classifier, weights and all, built with the float32 dtype policy: what a
    mixed-precision fit exports, so the saved model (config and computation) is float32. Sets
    Keras's global policy back to float32."""
    keras.mixed_precision.set_global_policy("float32")
    config = json.loads(json.dumps(classifier.get_config()))
    config["backbone"]["config"]["dtype"] = "float32"
    twin = type(classifier).from_config(config)
    twin.set_weights(classifier.get_weights())
    return twin
