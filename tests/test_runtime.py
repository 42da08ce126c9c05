"""The ONNX graph computes what the Keras model computes, padding and int8 included; other
backbones are refused so the predictor can fall back."""

import keras_hub
import numpy as np
import pytest

from bertclf.batches import encode, predict_in_order, traced_forward
from bertclf.predictor import softmax
from bertclf.runtime import OnnxForward, UnsupportedModel, build_graph, quantize
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
    return detached_classifier(tiny_preset, max_seq_len=64)


def test_onnx_graph_matches_keras_with_padding(tiny_preset):
    classifier, preprocessor = tiny_classifier(tiny_preset)
    # Random head and biases, so every weight of the graph shows in the output.
    for weight in classifier.weights:
        weight.assign(np.random.default_rng(len(weight.path)).normal(0, 0.3, weight.shape))
    encoded = encode(preprocessor, TEXTS)
    assert len(set(encoded.lengths)) > 3, "rows of different lengths: padding is exercised"
    expected = softmax(predict_in_order(traced_forward(classifier), encoded, 4))
    got = predict_in_order(OnnxForward(classifier), encoded, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Padding must not change a text's result: each text alone gives the same row.
    alone = np.concatenate([predict_in_order(OnnxForward(classifier), encode(preprocessor, [t]), 1) for t in TEXTS])
    np.testing.assert_allclose(alone, got, atol=1e-5)


def test_int8_graph_runs_and_stays_close(tiny_preset):
    classifier, preprocessor = tiny_classifier(tiny_preset)
    encoded = encode(preprocessor, TEXTS)
    full = predict_in_order(OnnxForward(classifier), encoded, 4)
    int8 = OnnxForward(classifier, precision="int8")
    ops = {node.op_type for node in quantize(build_graph(classifier)).graph.node}
    assert {"QAttention", "MatMulInteger"} <= ops, "the matrix products run in int8"
    quantized = predict_in_order(int8, encoded, 4)
    assert quantized.shape == full.shape
    np.testing.assert_allclose(quantized.sum(axis=1), 1, atol=1e-5)
    assert np.abs(quantized - full).max() < 0.1
    with pytest.raises(ValueError, match=r"precision"):
        OnnxForward(classifier, precision="fp8")


def test_other_backbones_are_refused_by_the_graph_builder():
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8, max_sequence_length=8
    )
    classifier = keras_hub.models.DistilBertTextClassifier(backbone, num_classes=2, preprocessor=None)
    with pytest.raises(UnsupportedModel, match=r"DistilBertBackbone"):
        build_graph(classifier)
