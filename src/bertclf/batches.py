"""Tokenize once, group texts of similar length, and pad each batch only as far as it needs.

Most real texts are far shorter than max_seq_len, and on a CPU the padding is most of the cost:
a batch of 30-token questions padded to 128 does four times the work it needs.
"""

import math

import numpy as np
import tensorflow as tf

# Batches are sorted by length within pools of this many batches, so each batch holds texts of
# similar length while the pool is still a random draw (the "group by length" of HF's Trainer).
POOL_BATCHES = 50
# Trim lengths to a multiple of this: a handful of distinct shapes, friendly to SIMD kernels.
LENGTH_MULTIPLE = 8
# Inference batches: what one extra forward call costs, in padded tokens (measured on a 2-core
# CPU with ONNX Runtime and MiniLM: ~2.5 ms fixed cost per call, ~0.2 ms per token).
CALL_COST_TOKENS = 16


def _padded(length):
    """Length(s) rounded up to a multiple of LENGTH_MULTIPLE."""
    return np.ceil(np.asarray(length) / LENGTH_MULTIPLE).astype(int) * LENGTH_MULTIPLE


class Encoded:
    """Token arrays for a list of texts, padded to max_seq_len, plus each text's true length."""

    def __init__(self, features: dict, lengths: np.ndarray):
        self.features = features
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def batch(self, index: np.ndarray) -> dict:
        """The rows at `index`, cut to the longest of them (rounded up to LENGTH_MULTIPLE)."""
        width = min(int(_padded(self.lengths[index].max())), self.width)
        return {key: value[index, :width] for key, value in self.features.items()}

    @property
    def width(self):
        return next(iter(self.features.values())).shape[1]


def traced_preprocessor(preprocessor):
    """The preprocessor as one graph over a batch of strings: ~15x faster than calling it eagerly
    for 32 texts. Trace it once per preprocessor and sequence length, and keep it beside the
    preprocessor: a cache keyed by the preprocessor would keep every model alive (the graph holds
    the preprocessor), so hot swaps would leak ~14 MB each."""
    return tf.function(preprocessor, input_signature=[tf.TensorSpec((None,), tf.string)])


def encode(preprocessor, texts, chunk=1024) -> Encoded:
    """Run a KerasHub text-classifier preprocessor over all texts once.

    Args:
        preprocessor: e.g. BertTextClassifierPreprocessor (tokenizes, adds [CLS]/[SEP], truncates),
            or `traced_preprocessor` of one (much faster when called more than once).
        texts: list of strings.
        chunk: texts per preprocessor call (bounds memory, keeps the calls vectorised).
    """
    parts = []
    for start in range(0, len(texts), chunk):
        out = preprocessor(tf.constant(texts[start : start + chunk]))
        parts.append({key: np.asarray(value, dtype=np.int32) for key, value in out.items()})
    features = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    lengths = features["padding_mask"].sum(axis=1).astype(np.int32)
    return Encoded(features, lengths)


def training_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch of batch indices: random pools, sorted by length inside, batches in random order."""
    order = rng.permutation(len(lengths))
    pool = batch_size * POOL_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_order(lengths: np.ndarray, batch_size: int, call_cost=CALL_COST_TOKENS) -> list:
    """Batch indices for inference: texts sorted by length, cut into batches of at most
    `batch_size` so that the padded tokens plus `call_cost` per batch are fewest.

    Fixed-size batches of sorted texts still pad a 30-token text to 128 where lengths change
    fast (the long tail); the cut here is the exact optimum over contiguous runs (dynamic
    programming, O(n * batch_size)), so short texts share big batches and long ones get small
    batches of their own. Restore input order with the returned indices.
    """
    order = np.argsort(lengths, kind="stable")
    width = _padded(np.asarray(lengths)[order])
    n = len(order)
    best = np.full(n + 1, np.inf)  # best[j]: cost of batching the j shortest texts
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        starts = np.arange(max(0, j - batch_size), j)
        costs = best[starts] + (j - starts) * width[j - 1] + call_cost
        k = int(np.argmin(costs))
        best[j], cut[j] = costs[k], starts[k]
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def dataset(encoded: Encoded, labels, batch_size, seed=None, shuffle=True, pad_to_max=False) -> tf.data.Dataset:
    """A tf.data pipeline of (features, labels) batches padded per batch.

    Args:
        encoded: output of `encode`.
        labels: int class indices, one per text.
        batch_size: examples per batch.
        seed: shuffling seed; each epoch draws a new order from the same generator.
        shuffle: False gives the fixed, length-sorted order used for evaluation.
        pad_to_max: pad every batch to max_seq_len (the slow way; for benchmarks only).
    """
    labels = np.asarray(labels, dtype=np.int32)
    rng = np.random.default_rng(seed)

    def generate():
        if shuffle:
            batches = training_order(encoded.lengths, batch_size, rng)
        else:  # fixed-size batches (the step count is declared below), sorted by length
            order = np.argsort(encoded.lengths, kind="stable")
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for index in batches:
            features = (
                {key: value[index] for key, value in encoded.features.items()} if pad_to_max else encoded.batch(index)
            )
            yield features, labels[index]

    spec = {key: tf.TensorSpec((None, None), tf.int32) for key in encoded.features}
    steps = math.ceil(len(encoded) / batch_size)
    ds = tf.data.Dataset.from_generator(generate, output_signature=(spec, tf.TensorSpec((None,), tf.int32)))
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def traced_forward(model):
    """`model(features, training=False)` as one graph for every (batch, length) shape: traced once,
    and a call costs no tf.data pipeline or Keras predict loop (model.predict adds ~100 ms a call)."""
    signature = {tensor.name: tf.TensorSpec((None, None), tf.int32) for tensor in model.inputs}
    return tf.function(lambda features: model(features, training=False), input_signature=[signature])


def predict_in_order(forward, encoded: Encoded, batch_size: int) -> np.ndarray:
    """Outputs for every text, run in length-sorted batches padded per batch, in input order.

    Args:
        forward: callable(features) -> outputs, e.g. `traced_forward(model)`.
        encoded: output of `encode` (at least one text).
        batch_size: texts per call.
    """
    outputs = None
    for index in sorted_order(encoded.lengths, batch_size):
        values = np.asarray(forward(encoded.batch(index)))
        if outputs is None:
            outputs = np.empty((len(encoded), *values.shape[1:]), values.dtype)
        outputs[index] = values
    if outputs is None:
        raise ValueError("predict_in_order needs at least one text")
    return outputs
