"""The TensorFlow side of batching: KerasHub's preprocessor over all texts at once, tf.data
batches padded per batch for training, and the classifier traced once for inference. Serving
imports none of this (see batches.py for the numpy side)."""

import itertools
import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from bertclf.inference.batches import LENGTH_MULTIPLE, Encoded, fixed_order, training_order
from bertclf.inference.pieces import pack, windows


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


def epoch_generator(seed, epoch: int, lengths, batch_size) -> np.random.Generator:
    """The random generator that draws epoch `epoch`'s training order: one generator seeded with
    `seed`, past the draws of the epochs before it. So epoch e gets the order it got when one
    generator ran through a whole run in one process (the order every measured run in the README
    trained on), and a resumed run recomputes it without having run those epochs (cheap: a
    permutation per epoch skipped). `seed` None: a fresh random generator."""
    rng = np.random.default_rng(seed)
    if seed is not None:
        for _ in range(epoch):
            training_order(lengths, batch_size, rng)
    return rng


def balanced_draw(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """len(labels) text indices drawn with replacement so that each class is as likely as any other
    (a text's chance is 1 / (classes x its class's count)): class-balanced sampling."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    chance = 1.0 / (len(counts) * counts[inverse])
    return rng.choice(len(labels), size=len(labels), replace=True, p=chance / chance.sum())


def dataset(
    encoded: Encoded,
    labels,
    batch_size,
    seed=None,
    shuffle=True,
    pad_to_max=False,
    epoch: Callable[[], int] | None = None,
    skip: int = 0,
    multiple: int = LENGTH_MULTIPLE,
    balance: bool = False,
) -> tf.data.Dataset:
    """A tf.data pipeline of (features, labels) batches padded per batch.

    Args:
        encoded: output of `encode`.
        labels: int class indices, one per text; or (multi-label) a 0/1 row of classes per text.
        batch_size: examples per batch.
        seed: shuffling seed (None: a random order each epoch).
        shuffle: False gives the fixed, length-sorted order used for evaluation.
        pad_to_max: pad every batch to max_seq_len (the slow way; for benchmarks only).
        epoch: says which epoch an iteration is (resume.EpochClock.now); epoch e's order depends on
            (seed, e) only, not on how many epochs ran before in this process, so a resumed run trains
            the order an uninterrupted one does (epoch_generator). Default: iterations counted from 0.
        skip: leave out the first `skip` batches of the (one) epoch: the steps a resumed epoch has done.
        multiple: batch widths are multiples of this many tokens (XLA_WIDTH: fewer shapes to compile).
        balance: (single-label, with shuffle) each epoch is len(encoded) texts drawn with replacement,
            every class equally likely (`balanced_draw`), then grouped by length as usual.
    """
    labels = np.asarray(labels, dtype=np.float32 if np.ndim(labels) == 2 else np.int32)
    label_spec = tf.TensorSpec((None, *labels.shape[1:]), tf.float32 if labels.ndim == 2 else tf.int32)
    now = epoch or itertools.count().__next__

    def generate():
        if shuffle and balance:
            epoch_now = now()
            drawn = balanced_draw(labels, np.random.default_rng(None if seed is None else [seed, epoch_now, 1]))
            order = training_order(
                encoded.lengths[drawn], batch_size, epoch_generator(seed, epoch_now, encoded.lengths, batch_size)
            )
            batches = [drawn[index] for index in order]
        elif shuffle:
            batches = training_order(
                encoded.lengths, batch_size, epoch_generator(seed, now(), encoded.lengths, batch_size)
            )
        else:  # fixed-size batches (the step count is declared below), sorted by length
            batches = fixed_order(encoded.lengths, batch_size)
        for index in batches[skip:]:
            features = (
                {key: value[index] for key, value in encoded.features.items()}
                if pad_to_max
                else encoded.batch(index, multiple)
            )
            yield features, labels[index]

    spec = {key: tf.TensorSpec((None, None), tf.int32) for key in encoded.features}
    steps = math.ceil(len(encoded) / batch_size) - skip
    ds = tf.data.Dataset.from_generator(generate, output_signature=(spec, label_spec))
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def traced_forward(model):
    """`model(features, training=False)` as one graph for every (batch, length) shape: traced once,
    and a call costs no tf.data pipeline or Keras predict loop (model.predict adds ~100 ms a call)."""
    signature = {tensor.name: tf.TensorSpec((None, None), tf.int32) for tensor in model.inputs}
    return tf.function(lambda features: model(features, training=False), input_signature=[signature])


def token_ids(preprocessor, texts, chunk=1024) -> list[np.ndarray]:
    """Each text's token ids, uncut and without [CLS] and [SEP]."""
    # Traced: called eagerly, KerasHub's tokenizer turns its ragged ids into Python lists (~10x slower).
    ids = tf.function(
        lambda batch: (lambda ragged: (ragged.flat_values, ragged.row_splits))(preprocessor.tokenizer(batch)),
        input_signature=[tf.TensorSpec((None,), tf.string)],
    )
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), chunk):
        values, splits = (np.asarray(t) for t in ids(tf.constant(texts[start : start + chunk])))
        rows.extend(np.split(values.astype(np.int32), splits[1:-1]))
    return rows


def token_counts(preprocessor, texts, chunk=1024) -> np.ndarray:
    """Each text's tokens with [CLS] and [SEP], uncut: how long it is before max_seq_len truncates it."""
    return np.array([len(ids) + 2 for ids in token_ids(preprocessor, texts, chunk)], dtype=int)


def encode_windows(preprocessor, texts, keys) -> Encoded:
    """Like `encode`, but a text longer than the preprocessor's sequence length becomes overlapping
    windows (pieces.windows; Encoded.owners says whose), as `--long_text window` reads it."""
    tokenizer, length = preprocessor.tokenizer, preprocessor.sequence_length
    rows, owners = windows([list(ids) for ids in token_ids(preprocessor, texts)], length)
    features = pack(rows, length, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    features = {key: np.asarray(value, dtype=np.int32) for key, value in features.items() if key in keys}
    return Encoded(features, features["padding_mask"].sum(axis=1).astype(np.int32), owners=owners)
