"""The serving graph: the trained classifier written as an ONNX graph of fused transformer ops.

Why not TensorFlow: on a small CPU box a traced TF graph spends much of its time between ops
(~60 texts/s on this project's benchmark). ONNX Runtime has fused kernels for exactly this network
(embedding + layer norm, multi-head attention, bias + GELU, residual + layer norm), so we write
the graph with those ops directly from the Keras weights instead of converting TF ops one by one
(tf2onnx needs ~60 s, pins its own numpy/protobuf, and leaves fusion to pattern matching).

The export writes it once into the model folder (`serving/model.onnx`), so serving needs neither
TensorFlow nor Keras. Inputs are the KerasHub preprocessor's `token_ids`, `segment_ids`,
`padding_mask` (int32, right-padded, any batch and length); the outputs are class probabilities
and each text's embedding (the mean of the last hidden states over its real tokens).
Only the ops in runtime.ALLOWED_OPS appear, which is all serving accepts.
"""

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bertclf.activations import sigmoid, softmax
from bertclf.errors import RegistryError
from bertclf.files import read_json_object, write_bytes_atomic
from bertclf.inference.multilabel import MULTI_LABEL_KEY
from bertclf.inference.runtime import EMBEDDING, INPUTS, MS_DOMAIN, OUTPUT, SERVING_GRAPH, OnnxForward
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, load_labels
from bertclf.safety import check_preset_is_data

log = logging.getLogger(__name__)

OPSET = 17
IR_VERSION = 9  # ONNX Runtime 1.31 reads up to 13; 9 is what opset 17 needs
SUPPORTED_BACKBONES = ("BertBackbone", "AlbertBackbone", "DistilBertBackbone")
# The written graph must give the Keras model's probabilities to this much on random inputs.
EXPORT_TOLERANCE = 1e-4


class UnsupportedModel(ValueError):
    """The classifier's architecture has no ONNX graph here; serve it with TensorFlow."""


class _Graph:
    """Collects nodes and initializers, naming each tensor once."""

    def __init__(self):
        self.nodes, self.initializers, self.names = [], [], set()

    def weight(self, name, value):
        if name not in self.names:  # a shared layer's weights are stored once
            self.names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def const(self, name, value):
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type, inputs, output, domain="", **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, domain=domain or None, **attrs))
        return output


def _weights(classifier):
    """Keras variable path -> numpy array, e.g. 'transformer_layer_0/self_attention_layer/query/kernel'."""
    return {w.path: np.asarray(w.numpy()) for w in classifier.weights}


def _encoder_layer(g, w, p, x, name, hidden, heads, eps, gelu):
    """One KerasHub TransformerEncoder (post-norm) whose weights start with `p`; returns its output.
    Weights are named after `p`, so shared layers (ALBERT) store their weights once."""
    a = p + "self_attention_layer/"
    qkv = np.concatenate([w[a + n + "/kernel"].reshape(hidden, hidden) for n in ("query", "key", "value")], axis=1)
    qkv_bias = np.concatenate([w[a + n + "/bias"].reshape(hidden) for n in ("query", "key", "value")])
    attention = g.op(
        "Attention",
        [x, g.weight(p + "qkv", qkv), g.weight(p + "qkv_bias", qkv_bias), "mask_index"],
        f"{name}_attention",
        domain=MS_DOMAIN,
        num_heads=heads,
    )
    projected = g.op(
        "MatMul",
        [attention, g.weight(p + "attn_out", w[a + "attention_output/kernel"].reshape(hidden, hidden))],
        f"{name}_attn_projected",
    )

    # Residual + bias + layer norm in one op, after attention and after the feed-forward block.
    def add_and_norm(x, residual, norm, bias, out):
        weights = [g.weight(f"{p}{norm}/{k}", w[f"{p}{norm}/{k}"]) for k in ("gamma", "beta")]
        return g.op(
            "SkipLayerNormalization",
            [x, residual, *weights, g.weight(bias, w[bias])],
            out,
            domain=MS_DOMAIN,
            epsilon=eps,
        )

    x_attn = add_and_norm(projected, x, "self_attention_layer_norm", a + "attention_output/bias", f"{name}_attn_norm")
    up = g.op(
        "MatMul", [x_attn, g.weight(p + "ff_in", w[p + "feedforward_intermediate_dense/kernel"])], f"{name}_ff_up"
    )
    act = g.op(
        gelu,
        [up, g.weight(p + "ff_in_bias", w[p + "feedforward_intermediate_dense/bias"])],
        f"{name}_ff_gelu",
        domain=MS_DOMAIN,
    )
    down = g.op("MatMul", [act, g.weight(p + "ff_out", w[p + "feedforward_output_dense/kernel"])], f"{name}_ff_down")
    return add_and_norm(down, x_attn, "feedforward_layer_norm", p + "feedforward_output_dense/bias", f"{name}_output")


def build_graph(classifier, multi_label: bool = False) -> onnx.ModelProto:
    """An ONNX model computing `softmax(classifier(features))` (`sigmoid` for a multi-label model)
    for a KerasHub BERT, ALBERT or DistilBERT text classifier.

    Args:
        classifier: a `keras_hub.models.TextClassifier` with a BERT, ALBERT or DistilBERT backbone.

    Raises:
        UnsupportedModel: another backbone; callers fall back to TensorFlow.
    """
    backbone = classifier.backbone
    kind = type(backbone).__name__
    if kind not in SUPPORTED_BACKBONES:
        raise UnsupportedModel(f"no ONNX graph for {kind} yet")
    cfg = backbone.get_config()
    hidden, heads = cfg["hidden_dim"], cfg["num_heads"]
    w = _weights(classifier)
    g = _Graph()
    eps = 1e-12  # the three families' layer-norm epsilon, embeddings and every transformer layer

    distil = kind == "DistilBertBackbone"  # no segments, exact GELU, and its own pooler (ReLU)
    embeddings = "token_and_position_embedding/" if distil else ""

    # === Embeddings: token + position (+ segment), layer norm; also each row's length for attention ===
    g.nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "token_ids",
                "" if distil else "segment_ids",
                g.weight("word_embedding", w[embeddings + "token_embedding/embeddings"]),
                g.weight("position_embedding", w[embeddings + "position_embedding/embeddings"]),
                "" if distil else g.weight("segment_embedding", w["segment_embedding/embeddings"]),
                g.weight("embeddings_ln_gamma", w["embeddings_layer_norm/gamma"]),
                g.weight("embeddings_ln_beta", w["embeddings_layer_norm/beta"]),
                "padding_mask",
            ],
            ["embeddings", "mask_index"],
            name="embeddings",
            domain=MS_DOMAIN,
            epsilon=eps,
        )
    )
    x = "embeddings"

    if kind == "AlbertBackbone":  # factorised embeddings: layer norm in embedding_dim, then project up
        x = g.op(
            "Add",
            [
                g.op(
                    "MatMul",
                    [x, g.weight("embedding_projection", w["embedding_projection/kernel"])],
                    "embedding_projected",
                ),
                g.weight("embedding_projection_bias", w["embedding_projection/bias"]),
            ],
            "embedding_hidden",
        )
        # ALBERT repeats its groups of shared layers: the same weights, called num_layers times.
        repeats = cfg["num_layers"] // cfg["num_groups"]
        layers = [
            f"group_{group}_inner_layer_{inner}/"
            for group in range(cfg["num_groups"])
            for _ in range(repeats)
            for inner in range(cfg["num_inner_repetitions"])
        ]
    else:
        layers = [f"transformer_layer_{i}/" for i in range(cfg["num_layers"])]

    # === Transformer layers (post-norm, as BERT) ===
    # KerasHub's BERT and ALBERT use the tanh approximation of GELU (FastGelu computes it);
    # DistilBERT the exact one (BiasGelu).
    gelu = "BiasGelu" if distil else "FastGelu"
    for i, p in enumerate(layers):
        x = _encoder_layer(g, w, p, x, f"l{i}", hidden, heads, eps, gelu)

    # === The text's embedding: the mean of the last hidden states over its real tokens ===
    # (mask as a row) @ (hidden states) sums the real tokens' vectors in one batched product.
    axis = g.const("axis_1", np.array([1], np.int64))
    mask = g.op("Cast", ["padding_mask"], "mask_float", to=TensorProto.FLOAT)
    summed = g.op("MatMul", [g.op("Unsqueeze", [mask, axis], "mask_row"), x], "embedding_sum")
    total = g.op("Squeeze", [summed, axis], "embedding_total")
    g.op("Div", [total, g.op("ReduceSum", [mask, axis], "real_tokens", keepdims=1)], EMBEDDING)

    # === Pooler ([CLS] -> dense -> tanh; DistilBERT's classifier: -> dense -> ReLU) and the head ===
    cls = g.op("Gather", [x, g.const("cls_index", np.int64(0))], "cls", axis=1)
    pooled = g.op(
        "Relu" if distil else "Tanh",
        [
            g.op(
                "Add",
                [
                    g.op("MatMul", [cls, g.weight("pooled_kernel", w["pooled_dense/kernel"])], "pooled_matmul"),
                    g.weight("pooled_bias", w["pooled_dense/bias"]),
                ],
                "pooled_add",
            )
        ],
        "pooled",
    )
    logits = g.op(
        "Add",
        [
            g.op("MatMul", [pooled, g.weight("logits_kernel", w["logits/kernel"])], "logits_matmul"),
            g.weight("logits_bias", w["logits/bias"]),
        ],
        "logits",
    )
    if multi_label:
        g.op("Sigmoid", [logits], OUTPUT)
    else:
        g.op("Softmax", [logits], OUTPUT, axis=-1)

    num_classes = w["logits/bias"].shape[0]
    names = [name for name in INPUTS if not (distil and name == "segment_ids")]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", "length"]) for name in names]
    outputs = [
        helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", num_classes]),
        helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", hidden]),
    ]
    graph = helper.make_graph(g.nodes, "bertclf_classifier", inputs, outputs, g.initializers)
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="bertclf",
        ir_version=IR_VERSION,
    )


def _random_features(classifier, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A few rows of random token ids of different lengths, right-padded: what the check feeds."""
    cfg = classifier.backbone.get_config()
    width = min(48, cfg["max_sequence_length"])
    lengths = [width, 1, max(1, width // 3), max(1, width // 2)]
    mask = np.arange(width)[None, :] < np.array(lengths)[:, None]
    token_ids = rng.integers(0, cfg["vocabulary_size"], (len(lengths), width)) * mask
    return {
        "token_ids": token_ids.astype(np.int32),
        "segment_ids": np.zeros_like(token_ids, dtype=np.int32),
        "padding_mask": mask.astype(np.int32),
    }


def export_serving_graph(classifier, folder: str | Path, multi_label: bool = False) -> Path:
    """Write `folder/serving/model.onnx` (fp32) for a KerasHub BERT, ALBERT or DistilBERT classifier, after
    checking that it gives the Keras model's probabilities on random inputs.

    Returns:
        the file written.

    Raises:
        UnsupportedModel: the backbone has no graph here; it serves with TensorFlow.
        RuntimeError: the graph disagrees with the Keras model (a bug: nothing is written).
    """
    model = build_graph(classifier, multi_label)
    data = model.SerializeToString()
    inputs = {tensor.name for tensor in classifier.inputs}  # DistilBERT takes no segment_ids
    features = {k: v for k, v in _random_features(classifier, np.random.default_rng(0)).items() if k in inputs}
    from bertclf.training.keras_engine import mean_hidden_state

    logits = np.asarray(classifier(features, training=False), dtype=np.float64)
    expected = sigmoid(logits) if multi_label else softmax(logits)
    forward = OnnxForward(data, threads=1)
    got = forward.with_embedding(features)
    num_classes = expected.shape[1]
    gap = float(np.abs(got[:, :num_classes] - expected).max())
    embedding_gap = float(np.abs(got[:, num_classes:] - mean_hidden_state(classifier, features)).max())
    for what, difference in (("probabilities", gap), ("embeddings", embedding_gap)):
        if difference > EXPORT_TOLERANCE:
            raise RuntimeError(
                f"the ONNX graph's {what} differ from the Keras model's by {difference:.2g} (more than "
                f"{EXPORT_TOLERANCE:g}); nothing was written. Please report this with the model's config.json"
            )
    target = Path(folder) / SERVING_GRAPH
    target.parent.mkdir(exist_ok=True)
    write_bytes_atomic(target, data)
    log.info(
        "wrote %s (%.0f MB; matches the Keras model to %.1g, its embeddings to %.1g)",
        target,
        len(data) / 1e6,
        gap,
        embedding_gap,
    )
    return target


def export_folder(folder: str | Path) -> Path:
    """Write serving/model.onnx into a trained model folder exported without it (training install),
    and its int8 twin, checked on the test split when the training data is at hand
    (quantization.int8_for_saved_folder).

    Raises:
        UnsupportedModel: a backbone without a graph here (it serves on TensorFlow).
        RegistryError: a folder that does not load, or that cannot be written.
    """
    from bertclf.inference.predictor import sequence_length
    from bertclf.training.keras_engine import load_classifier

    folder = Path(folder)
    check_preset_is_data(folder)
    classes = load_labels(folder / LABELS_FILE)
    classifier, _ = load_classifier(folder, len(classes), sequence_length(folder))
    multi_label = read_json_object(folder / MODEL_CONFIG_FILE, RegistryError).get(MULTI_LABEL_KEY) is not None
    try:
        written = export_serving_graph(classifier, folder, multi_label)
        from bertclf.training.quantization import int8_for_saved_folder

        int8_for_saved_folder(folder)
        return written
    except OSError as err:
        raise RegistryError(
            f"cannot write {folder / SERVING_GRAPH}: {err.strerror}; export from a copy of the folder you can write to"
        ) from None
