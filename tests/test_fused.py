"""The XLA-compiled GELU, layer norm and masked softmax against Keras's own: values and gradients,
alone and inside a BERT; and the model as Keras built it again after the fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_hub.src.utils.keras_utils import gelu_approximate

from bertclf.training.fused import fused_layers, gelu_erf, gelu_tanh, layer_norm, masked_softmax
from conftest import detached_classifier


def value_and_gradients(function, *inputs):
    """function(*inputs) and the gradient of a fixed random weighting of it by every input."""
    inputs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = function(*inputs)
        weighted = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(y.shape, (1, 2)))
    return [y.numpy().astype(np.float32)] + [g.numpy().astype(np.float32) for g in tape.gradient(weighted, inputs)]


def assert_same(ours, keras_, tolerance):
    for a, b in zip(ours, keras_, strict=True):
        np.testing.assert_allclose(a, b, atol=tolerance, rtol=tolerance)


X = np.random.default_rng(0).normal(0, 2, (3, 5, 16)).astype(np.float32)


@pytest.mark.parametrize("dtype, tolerance", [("float32", 2e-6), ("bfloat16", 2e-2)])
def test_gelu_matches_keras_in_value_and_gradient(dtype, tolerance):
    x = X.astype(dtype)
    assert_same(value_and_gradients(gelu_tanh, x), value_and_gradients(gelu_approximate, x), tolerance)
    assert_same(value_and_gradients(gelu_erf, x), value_and_gradients(keras.activations.gelu, x), tolerance)


def test_layer_norm_matches_keras_in_value_and_gradient():
    rng = np.random.default_rng(1)
    gamma, beta = rng.normal(1, 0.3, 16).astype(np.float32), rng.normal(0, 0.3, 16).astype(np.float32)
    x = X + 3.0  # an offset: the mean matters
    ours = value_and_gradients(lambda x, g, b: layer_norm(x, g, b, 1e-12), x, gamma, beta)
    theirs = value_and_gradients(lambda x, g, b: keras.ops.layer_normalization(x, g, b, epsilon=1e-12), x, gamma, beta)
    assert_same(ours, theirs, 2e-5)


def test_masked_softmax_matches_keras_with_a_row_masked_whole():
    scores = np.random.default_rng(2).normal(0, 3, (2, 3, 4, 6)).astype(np.float32)
    mask = np.ones((2, 1, 4, 6), bool)
    mask[0, :, :, 4:] = False  # padding
    mask[1, :, 2, :] = False  # a row with nothing to attend to: zeros, not a uniform row
    softmax = keras.layers.Softmax(axis=-1)
    ours = value_and_gradients(lambda s: masked_softmax(s, tf.constant(mask)), scores)
    theirs = value_and_gradients(lambda s: softmax(s, mask=tf.constant(mask)), scores)
    assert_same(ours, theirs, 1e-6)
    assert np.all(ours[0][1, :, 2] == 0) and np.all(ours[1][0, :, :, 4:] == 0)


def loss_and_gradients(classifier, x, y):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(y, classifier(x, training=False))
    gradients = tape.gradient(value, classifier.trainable_variables)  # the embedding's: IndexedSlices
    return [value.numpy()] + [tf.convert_to_tensor(g).numpy() for g in gradients]


def test_a_bert_trains_on_the_same_gradients_and_is_keras_s_own_after(tiny_preset):
    classifier, preprocessor = detached_classifier(tiny_preset, 16)
    x = preprocessor(["the cat sat on a mat", "a dog", "an old dog sat"])
    x["padding_mask"] = tf.cast(x["padding_mask"], tf.int32)  # as the training batches hold it
    y = tf.constant([0, 1, 2])
    as_keras = loss_and_gradients(classifier, x, y)
    layers = list(classifier._flatten_layers())
    with fused_layers(classifier) as patched:
        # 2 layers x (GELU, 2 norms, attention) + the embeddings' norm
        assert patched == 9
        assert sum("call" in vars(layer) or "_masked_softmax" in vars(layer) for layer in layers) == 7
        fused = loss_and_gradients(classifier, x, y)
    assert_same(fused, as_keras, 1e-5)
    assert not any("call" in vars(layer) or "_masked_softmax" in vars(layer) for layer in layers)
    assert all(getattr(layer, "activation", None) is not gelu_tanh for layer in layers)
    assert_same(loss_and_gradients(classifier, x, y), as_keras, 0)


def test_a_model_with_nothing_to_fuse_trains_as_it_is():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="relu")])
    with fused_layers(model) as patched:
        assert patched == 0
