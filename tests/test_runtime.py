"""The ONNX graph computes what the Keras model computes; the batch planner pads as little as it can."""

import keras_hub
import numpy as np
import pytest

from bertclf import predictor as predictor_module
from bertclf.batches import LENGTH_MULTIPLE, encode, predict_in_order, sorted_order, traced_forward
from bertclf.predictor import Predictor, softmax
from bertclf.runtime import OnnxForward, UnsupportedModel, build_graph, quantize
from conftest import detached_classifier

TEXTS = ["apple cat dog horse tiger whale zebra saw drill hammer", "saw", "lemon mango", "the big cat",
         "hammer", "apple " * 40]


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
    with pytest.raises(ValueError, match="precision"):
        OnnxForward(classifier, precision="fp8")


def test_other_backbones_are_refused_by_the_graph_builder():
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8, max_sequence_length=8)
    classifier = keras_hub.models.DistilBertTextClassifier(backbone, num_classes=2, preprocessor=None)
    with pytest.raises(UnsupportedModel, match="DistilBertBackbone"):
        build_graph(classifier)


def test_predictor_uses_onnx_and_falls_back_to_tensorflow(trained_models, monkeypatch):
    _, folder = trained_models
    fast = Predictor(folder)
    assert (fast.engine, fast.precision) == ("onnx", "fp32")
    slow = Predictor(folder, engine="tensorflow")
    np.testing.assert_allclose(fast.predict_proba(TEXTS), slow.predict_proba(TEXTS), atol=1e-5)

    def unsupported(*args, **kwargs):
        raise UnsupportedModel("no ONNX graph for AlbertBackbone yet")

    monkeypatch.setattr(predictor_module, "OnnxForward", unsupported)
    fallback = Predictor(folder)
    assert fallback.engine == "tensorflow"
    np.testing.assert_allclose(fallback.predict_proba(TEXTS), slow.predict_proba(TEXTS), atol=1e-6)
    with pytest.raises(UnsupportedModel):
        Predictor(folder, engine="onnx")
    with pytest.raises(ValueError, match="int8 needs the ONNX engine"):
        Predictor(folder, precision="int8")


def test_max_seq_len_override_truncates(trained_models):
    _, folder = trained_models
    short = Predictor(folder, max_seq_len=8)
    assert encode(short.preprocessor, ["apple " * 50]).lengths[0] == 8
    assert len(short.predict(["apple " * 50])[0]) == 1


def padded_tokens(lengths, batches):
    return sum(len(b) * int(np.ceil(lengths[b].max() / LENGTH_MULTIPLE) * LENGTH_MULTIPLE) for b in batches)


def test_inference_batches_cover_every_text_once_and_pad_less_than_fixed_batches():
    lengths = np.minimum(np.random.default_rng(0).lognormal(np.log(35), 1.0, 500).astype(int) + 2, 128)
    batches = sorted_order(lengths, 32)
    assert sorted(np.concatenate(batches)) == list(range(500))
    assert max(len(b) for b in batches) <= 32
    order = np.argsort(lengths, kind="stable")
    fixed = [order[i : i + 32] for i in range(0, 500, 32)]
    assert padded_tokens(lengths, batches) < 0.97 * padded_tokens(lengths, fixed)


def test_a_long_text_does_not_pad_the_short_ones():
    lengths = np.array([6] * 20 + [120])
    batches = sorted_order(lengths, 32)
    assert [len(b) for b in batches] == [20, 1]
    assert list(batches[1]) == [20]
