"""The ONNX graph computes what the Keras model computes, padding and int8 included; it is written
into the model folder at export (checked first); other backbones are refused."""

from types import SimpleNamespace

import keras_hub
import numpy as np
import onnx
import pytest

from bertclf.activations import softmax
from bertclf.errors import RegistryError
from bertclf.inference.batches import predict_in_order
from bertclf.inference.quantize import QUANTIZATIONS, quantize
from bertclf.inference.runtime import ALLOWED_OPS, INT8_OPS, SERVING_GRAPH, OnnxForward, read_serving_graph
from bertclf.training import onnx_writer as graph_module
from bertclf.training.onnx_writer import UnsupportedModel, build_graph, export_folder, export_serving_graph
from bertclf.training.pipeline import encode, traced_forward
from conftest import detached_classifier

TEXTS = [
    "apple cat dog horse tiger whale zebra saw drill hammer",
    "saw",
    "lemon mango",
    "the big cat",
    "hammer",
    "apple " * 40,
]


def tiny_classifier(tiny_preset):
    classifier, preprocessor = detached_classifier(tiny_preset, max_seq_len=64)
    # Random head and biases, so every weight of the graph shows in the output.
    for weight in classifier.weights:
        weight.assign(np.random.default_rng(len(weight.path)).normal(0, 0.3, weight.shape))
    return classifier, preprocessor


def onnx_forward(classifier, precision="fp32"):
    graph = build_graph(classifier).SerializeToString()
    return OnnxForward(quantize(graph) if precision == "int8" else graph, precision)


def test_onnx_graph_matches_keras_with_padding(tiny_preset):
    classifier, preprocessor = tiny_classifier(tiny_preset)
    encoded = encode(preprocessor, TEXTS)
    assert len(set(encoded.lengths)) > 3, "rows of different lengths: padding is exercised"
    expected = softmax(predict_in_order(traced_forward(classifier), encoded, 4))
    got = predict_in_order(onnx_forward(classifier), encoded, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Padding must not change a text's result: each text alone gives the same row.
    forward = onnx_forward(classifier)
    alone = np.concatenate([predict_in_order(forward, encode(preprocessor, [t]), 1) for t in TEXTS])
    np.testing.assert_allclose(alone, got, atol=1e-5)


def test_the_embedding_output_is_the_keras_encoders_mean_over_real_tokens(tiny_preset):
    from bertclf.training.keras_engine import mean_hidden_state

    classifier, preprocessor = tiny_classifier(tiny_preset)
    encoded = encode(preprocessor, TEXTS)
    forward = onnx_forward(classifier)
    both = predict_in_order(forward.with_embedding, encoded, 4)
    assert forward.embedding_dim == classifier.backbone.hidden_dim == both.shape[1] - 3
    np.testing.assert_allclose(both[:, :3], predict_in_order(forward, encoded, 4), atol=1e-6)  # one pass, both
    keras = np.concatenate([mean_hidden_state(classifier, encoded.batch(np.array([i]))) for i in range(len(TEXTS))])
    np.testing.assert_allclose(both[:, 3:], keras, atol=1e-5)
    # Padding must not move a vector: the padded batch gives what each text alone gives.
    alone = np.concatenate([forward.with_embedding(encoded.batch(np.array([i]))) for i in range(len(TEXTS))])
    np.testing.assert_allclose(both, alone, atol=1e-5)
    # A hand check of one row: the mean of the backbone's sequence output over the real tokens.
    row = encoded.batch(np.array([1]))
    hidden = np.asarray(
        classifier.backbone({k: row[k] for k in ("token_ids", "segment_ids", "padding_mask")})["sequence_output"]
    )
    np.testing.assert_allclose(both[1, 3:], hidden[0, : int(row["padding_mask"].sum())].mean(axis=0), atol=1e-5)


def tiny_distilbert(num_classes=3):
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=30, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=32
    )
    classifier = keras_hub.models.DistilBertTextClassifier(backbone, num_classes=num_classes, preprocessor=None)
    for weight in classifier.weights:
        weight.assign(np.random.default_rng(len(weight.path)).normal(0, 0.3, weight.shape))
    return classifier


def test_distilbert_graph_matches_keras_with_padding():
    """No segments, exact GELU, and a ReLU pooler of the classifier's own."""
    classifier = tiny_distilbert()
    lengths = np.array([32, 1, 7, 19, 5])
    mask = (np.arange(32)[None, :] < lengths[:, None]).astype(np.int32)
    features = {
        "token_ids": np.random.default_rng(0).integers(1, 30, (5, 32)).astype(np.int32) * mask,
        "padding_mask": mask,
    }
    expected = softmax(np.asarray(classifier(features, training=False)))
    forward = OnnxForward(build_graph(classifier).SerializeToString())
    assert forward.inputs == ["token_ids", "padding_mask"]
    np.testing.assert_allclose(forward({**features, "segment_ids": np.zeros_like(mask)}), expected, atol=1e-5)
    from bertclf.training.keras_engine import mean_hidden_state

    both = forward.with_embedding(features)
    np.testing.assert_allclose(both[:, 3:], mean_hidden_state(classifier, features), atol=1e-5)


def test_the_graphs_use_only_the_operators_serving_allows(tiny_preset):
    classifier, _ = tiny_classifier(tiny_preset)
    used = {
        (node.domain, node.op_type)
        for model in (classifier, tiny_distilbert())
        for multi_label in (False, True)
        for node in build_graph(model, multi_label).graph.node
    }
    assert used == ALLOWED_OPS, "the allowlist is exactly what we write (update both together)"


def test_int8_graphs_use_only_the_operators_an_int8_graph_may(tiny_preset):
    classifier, _ = tiny_classifier(tiny_preset)
    used = {
        (node.domain, node.op_type)
        for model in (classifier, tiny_distilbert())
        for multi_label in (False, True)
        for choice in QUANTIZATIONS
        for node in onnx.load_model_from_string(
            quantize(build_graph(model, multi_label).SerializeToString(), choice)
        ).graph.node
    }
    assert used <= INT8_OPS and used >= INT8_OPS - ALLOWED_OPS, "INT8_OPS adds exactly what quantizing writes"


def test_int8_graph_runs_and_stays_close(tiny_preset):
    classifier, preprocessor = tiny_classifier(tiny_preset)
    encoded = encode(preprocessor, TEXTS)
    full = predict_in_order(onnx_forward(classifier), encoded, 4)
    ops = {
        node.op_type
        for node in onnx.load_model_from_string(quantize(build_graph(classifier).SerializeToString())).graph.node
    }
    assert {"QAttention", "MatMulInteger"} <= ops, "the matrix products run in int8"
    quantized = predict_in_order(onnx_forward(classifier, "int8"), encoded, 4)
    assert quantized.shape == full.shape
    np.testing.assert_allclose(quantized.sum(axis=1), 1, atol=1e-5)
    assert np.abs(quantized - full).max() < 0.3
    with pytest.raises(ValueError, match=r"precision"):
        onnx_forward(classifier, "fp8")


def test_the_export_writes_a_checked_graph_and_refuses_a_wrong_one(tiny_preset, tmp_path, monkeypatch):
    classifier, preprocessor = tiny_classifier(tiny_preset)
    written = export_serving_graph(classifier, tmp_path)
    assert written == tmp_path / SERVING_GRAPH
    served = OnnxForward(read_serving_graph(tmp_path, 3))
    encoded = encode(preprocessor, TEXTS)
    expected = softmax(predict_in_order(traced_forward(classifier), encoded, 4))
    np.testing.assert_allclose(predict_in_order(served, encoded, 4), expected, atol=1e-5)
    # A graph that computes something else (here: one weight changed) is never written.
    real = graph_module.build_graph

    def off_by_a_little(model, multi_label=False):
        proto = real(model, multi_label)
        bias = next(t for t in proto.graph.initializer if t.name == "logits_bias")
        shifted = np.frombuffer(bias.raw_data, np.float32) + np.array([0.5, 0, 0], np.float32)
        bias.raw_data = shifted.tobytes()
        return proto

    monkeypatch.setattr(graph_module, "build_graph", off_by_a_little)
    with pytest.raises(RuntimeError, match=r"differ from the Keras model's by .*nothing was written"):
        export_serving_graph(classifier, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_export_folder_adds_the_graph_to_an_older_folder(trained_models, tmp_path, monkeypatch):
    import shutil

    from bertclf.inference.predictor import Predictor

    old = tmp_path / "old"
    shutil.copytree(trained_models[1], old)
    (old / SERVING_GRAPH).unlink()
    before = Predictor(old)  # builds the graph in memory (and says how to write it)
    assert before.engine == "onnx"
    assert export_folder(old) == old / SERVING_GRAPH
    after = Predictor(old, precision="fp32")  # the graph now written, as `before` built it (auto may pick bf16/int8)
    np.testing.assert_allclose(after.predict_proba(TEXTS), before.predict_proba(TEXTS), atol=1e-6)

    def read_only(path, data):  # a folder mounted read-only (the tests run as root: chmod would not do)
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(graph_module, "write_bytes_atomic", read_only)
    with pytest.raises(RegistryError, match=r"cannot write .*model.onnx: Read-only file system; export from a copy"):
        export_folder(old)


def test_other_backbones_are_refused_by_the_graph_builder():
    class GPT2Backbone:
        pass

    with pytest.raises(UnsupportedModel, match=r"no ONNX graph for GPT2Backbone"):
        build_graph(SimpleNamespace(backbone=GPT2Backbone()))
