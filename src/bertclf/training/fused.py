"""A transformer layer's elementwise work compiled with XLA while it trains: GELU, layer
normalization and the attention's masked softmax, forward and backward, while the matrix products
stay on TensorFlow's own kernels (oneDNN on x86).

TensorFlow runs each of these as a chain of separate ops, every one a pass over a [batch, tokens,
hidden] tensor, and derives their backward passes op by op (a GELU's backward is a dozen more);
PyTorch runs each as one kernel. Here each forward and each backward is one small XLA
computation (`jit_compile`), a loop or two over its tensor, with a hand-written gradient
(`tf.custom_gradient`). Measured on `make bench-torch`'s batches (Sapphire Rapids, float32):
forward + backward 249 -> 226 ms a step. Compiling the whole step with XLA instead is slower
(README "Training speed"): XLA's matrix products do not keep up with oneDNN's.

The arithmetic is Keras's (tests/test_fused.py compares outputs and gradients): the same formulas,
in float32 the same to rounding. Under mixed bfloat16 they compute in float32 and round their
results once (Keras computes layer norm so too, but GELU and softmax in bfloat16, rounding at each
step). Only training uses them: `fused_layers` patches a model's layers for the probe's forward
pass and the fit (train.py) and puts Keras's own back after them, so the evaluation and the ONNX
export trace the layers as Keras wrote them.
"""

import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterator

import keras
import keras_hub  # noqa: F401  registers keras_hub>gelu_approximate, looked up below
import tensorflow as tf

log = logging.getLogger(__name__)

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)
_CUBIC = 0.044715  # the tanh approximation's (Hendrycks and Gimpel 2016), as tf.nn.gelu


def _compiled(function):
    return tf.function(function, jit_compile=True, autograph=False, reduce_retracing=True)


def _in_float32(function):
    """function computed in float32 whatever its tensors' float dtype, its results cast back: under
    mixed bfloat16 (8 bits of mantissa) a GELU or softmax then rounds once, at the end, not at each
    of its steps. Inside one XLA computation the casts are free (no tensor is written in between)."""

    def wide(*tensors):
        dtype = tensors[0].dtype
        results = function(*(tf.cast(t, tf.float32) if t.dtype.is_floating else t for t in tensors))
        return tf.nest.map_structure(lambda r: tf.cast(r, dtype) if r.dtype.is_floating else r, results)

    return wide


# --- GELU, tanh approximation (BERT's and ALBERT's in KerasHub) ---


@_compiled
@_in_float32
def _gelu_tanh_forward(x):
    t = tf.tanh(_SQRT_2_OVER_PI * (x + _CUBIC * x * x * x))
    return 0.5 * x * (1 + t), t


@_compiled
@_in_float32
def _gelu_tanh_backward(dy, x, t):
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _CUBIC * x * x))


@tf.custom_gradient
def gelu_tanh(x):
    """keras.activations.gelu(x, approximate=True), its forward and backward each one XLA loop."""
    y, t = _gelu_tanh_forward(x)
    return y, lambda dy: _gelu_tanh_backward(dy, x, t)


# --- GELU, exact: x * Phi(x) ---


@_compiled
@_in_float32
def _gelu_erf_forward(x):
    cdf = 0.5 * (1 + tf.math.erf(x / math.sqrt(2)))
    return x * cdf, cdf


@_compiled
@_in_float32
def _gelu_erf_backward(dy, x, cdf):
    return dy * (cdf + x * tf.exp(-0.5 * x * x) / _SQRT_2PI)


@tf.custom_gradient
def gelu_erf(x):
    """keras.activations.gelu(x) (exact), its forward and backward each one XLA loop."""
    y, cdf = _gelu_erf_forward(x)
    return y, lambda dy: _gelu_erf_backward(dy, x, cdf)


# --- Layer normalization over the last axis ---


@_compiled
def _norm_forward(x, gamma, beta, epsilon):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    inverse = tf.math.rsqrt(variance + epsilon)
    normalized = (x - mean) * inverse
    return normalized * gamma + beta, normalized, inverse


@_compiled
def _norm_backward(dy, normalized, inverse, gamma):
    d_normalized = dy * gamma
    dx = inverse * (
        d_normalized
        - tf.reduce_mean(d_normalized, -1, keepdims=True)
        - normalized * tf.reduce_mean(d_normalized * normalized, -1, keepdims=True)
    )
    rows = tf.range(tf.rank(dy) - 1)  # every axis but the normalized one
    return dx, tf.reduce_sum(dy * normalized, rows), tf.reduce_sum(dy, rows)


def layer_norm(x, gamma, beta, epsilon: float):
    """keras.ops.layer_normalization over the last axis (x, gamma, beta of one float dtype)."""

    @tf.custom_gradient
    def norm(x, gamma, beta):
        y, normalized, inverse = _norm_forward(x, gamma, beta, epsilon)
        return y, lambda dy: _norm_backward(dy, normalized, inverse, gamma)

    return norm(x, gamma, beta)


# --- The attention's masked softmax over the last axis ---


@_compiled
@_in_float32
def _softmax_forward(scores, mask, floor):
    p = tf.nn.softmax(tf.where(mask, scores, floor), axis=-1)
    return tf.where(mask, p, tf.zeros_like(p))  # a row masked whole: zeros, as Keras's Softmax


@_compiled
@_in_float32
def _softmax_backward(dp, p):
    return p * (dp - tf.reduce_sum(dp * p, -1, keepdims=True))


def masked_softmax(scores, mask):
    """keras.layers.Softmax(axis=-1)(scores, mask): mask (bool) broadcasts against scores."""
    floor = tf.constant(-3e4 if scores.dtype == tf.float16 else -1e9, scores.dtype)  # Keras's

    @tf.custom_gradient
    def softmax(scores):
        p = _softmax_forward(scores, mask, floor)
        return p, lambda dp: _softmax_backward(dp, p)

    return softmax(scores)


# --- Patching a model's layers ---


def _norm_call(layer: keras.layers.LayerNormalization) -> Callable:
    def call(inputs):
        x = tf.cast(inputs, tf.float32)  # Keras normalizes in at least float32 too
        gamma, beta = (tf.cast(w.value, tf.float32) for w in (layer.gamma, layer.beta))
        return tf.cast(layer_norm(x, gamma, beta, layer.epsilon), layer.compute_dtype)

    return call


def _softmax_call(attention: keras.layers.MultiHeadAttention) -> Callable:
    original = type(attention)._masked_softmax

    def call(scores, attention_mask=None):
        if attention_mask is None:
            return original(attention, scores, attention_mask)
        mask = attention_mask if attention_mask.dtype == tf.bool else attention_mask > 0.5
        while len(mask.shape) < len(scores.shape):  # [B, T, S] -> [B, 1, T, S], as Keras expands it
            mask = tf.expand_dims(mask, -3)
        return masked_softmax(scores, mask)

    return call


def _fusable_norm(layer) -> bool:
    return (
        isinstance(layer, keras.layers.LayerNormalization)
        and layer.axis in (-1, [-1])
        and layer.center
        and layer.scale
        and not layer.rms_scaling
        and layer.built
    )


def _fusable_attention(layer) -> bool:
    return isinstance(layer, keras.layers.MultiHeadAttention) and len(layer._attention_axes) == 1


# KerasHub's BERT uses its own tanh GELU, registered for serialization: found by that public name
# rather than imported from keras_hub.src (private, and may move between releases).
_KERAS_HUB_GELU = keras.saving.get_registered_object("keras_hub>gelu_approximate")
if _KERAS_HUB_GELU is None:
    raise ImportError("keras_hub no longer registers keras_hub>gelu_approximate: update training/fused.py's GELUS")
GELUS = {_KERAS_HUB_GELU: gelu_tanh, keras.activations.gelu: gelu_erf}


@contextlib.contextmanager
def fused_layers(model: keras.Model) -> Iterator[int]:
    """Within the block, the model's GELU activations, last-axis layer norms and attention softmaxes
    run as XLA computations (see the module's docstring); after it, Keras's own again. Yields how many
    layers were patched (0 for a model with none of them: it trains as it is)."""
    undo: list[Callable[[], None]] = []
    try:
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.Dense) and getattr(layer, "activation", None) in GELUS:
                original = layer.activation
                layer.activation = GELUS[original]
                undo.append(functools.partial(setattr, layer, "activation", original))
            elif _fusable_norm(layer):
                layer.call = _norm_call(layer)
                undo.append(functools.partial(delattr, layer, "call"))
            elif _fusable_attention(layer):
                layer._masked_softmax = _softmax_call(layer)
                undo.append(functools.partial(delattr, layer, "_masked_softmax"))
        if undo:
            log.info("GELU, layer norm and attention softmax of %d layers compiled with XLA for training", len(undo))
        yield len(undo)
    finally:
        for restore in reversed(undo):
            restore()
