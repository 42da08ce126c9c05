"""Tokenize once, group texts of similar length, and pad each batch only as far as it needs.

Most real texts are far shorter than max_seq_len, and on a CPU the padding is most of the cost:
a batch of 30-token questions padded to 128 does four times the work it needs.
"""

import numpy as np

# Batches are sorted by length within pools of this many batches, so each batch holds texts of
# similar length while the pool is still a random draw (the "group by length" of HF's Trainer).
POOL_BATCHES = 50
# Trim lengths to a multiple of this: a handful of distinct shapes, friendly to SIMD kernels.
LENGTH_MULTIPLE = 8
# With XLA every batch shape is compiled apart (seconds each): widths in steps of this many tokens
# bound the compilations to max_seq_len / XLA_WIDTH (4 at 128) per run.
XLA_WIDTH = 32
# Inference batches: what one extra forward call costs, in padded tokens (measured on a 2-core
# CPU with ONNX Runtime and MiniLM: ~2.5 ms fixed cost per call, ~0.2 ms per token).
CALL_COST_TOKENS = 16


def _padded(length, multiple=LENGTH_MULTIPLE):
    """Length(s) rounded up to a multiple of `multiple`."""
    return np.ceil(np.asarray(length) / multiple).astype(int) * multiple


class Encoded:
    """Token arrays for a list of texts, padded to max_seq_len, plus each text's true length (and,
    where the encoder knows it, how many texts were cut at max_seq_len). With windows, a row is one
    window and `owners` gives the text each row belongs to."""

    def __init__(self, features: dict, lengths: np.ndarray, truncated: int = 0, owners: np.ndarray | None = None):
        self.features = features
        self.lengths = lengths
        self.truncated = truncated
        self.owners = owners

    def __len__(self):
        return len(self.lengths)

    def subset(self, index: np.ndarray) -> "Encoded":
        """The texts at `index` (of a split encoded without windows)."""
        return Encoded({key: value[index] for key, value in self.features.items()}, self.lengths[index])

    def batch(self, index: np.ndarray, multiple: int = LENGTH_MULTIPLE) -> dict:
        """The rows at `index`, cut to the longest of them rounded up to `multiple` (at most the width)."""
        width = min(int(_padded(self.lengths[index].max(), multiple)), self.width)
        return {key: value[index, :width] for key, value in self.features.items()}

    @property
    def width(self):
        return next(iter(self.features.values())).shape[1]


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


def fixed_order(lengths: np.ndarray, batch_size: int) -> list:
    """Batch indices for inference in the shapes training uses: texts sorted by length, cut into
    batches of exactly `batch_size` (the last one the rest). Where each shape costs a compilation
    (bertclf.training.fused's XLA kernels) this gives at most max_seq_len / LENGTH_MULTIPLE + 1 shapes, the
    fit's own, where `sorted_order`'s batches of every size give one per (size, width)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def predict_in_order(forward, encoded: Encoded, batch_size: int, fixed: bool = False) -> np.ndarray:
    """Outputs for every text, run in length-sorted batches padded per batch, in input order.

    Args:
        forward: callable(features) -> outputs, e.g. `traced_forward(model)`.
        encoded: output of `encode` (at least one text).
        batch_size: texts per call.
        fixed: batches of exactly batch_size texts (`fixed_order`), not `sorted_order`'s cut.
    """
    outputs = None
    for index in (fixed_order if fixed else sorted_order)(encoded.lengths, batch_size):
        values = np.asarray(forward(encoded.batch(index)))
        if outputs is None:
            outputs = np.empty((len(encoded), *values.shape[1:]), values.dtype)
        outputs[index] = values
    if outputs is None:
        raise ValueError("predict_in_order needs at least one text")
    return outputs
