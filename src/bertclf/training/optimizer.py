"""AdamW as one compiled update: clipping, weight decay and Adam over every weight in a single XLA
computation.

Keras's AdamW on TensorFlow runs each weight's update as a dozen separate ops, each its own pass
over the weight; on the word-embedding table (MiniLM: 11.7M of 22.7M weights) each pass costs
tens of milliseconds, and its sparse gradient (IndexedSlices, a row per token of the batch) is
summed into a dense table again by each op that reads it. `make bench-torch`'s profile put that at
a third of our training step. Compiled with XLA, the whole update is a few fused loops that read
each weight and moment once, and the table's rows are added into its moments in place. The
weights' shapes never change, so it compiles once per run, whatever the batch widths; the forward
and backward passes stay on TensorFlow's own kernels (oneDNN on x86), which XLA's CPU backend
does not beat on every CPU.

The arithmetic is Keras's AdamW's (tests/test_optimizer.py compares the two), including
layer-wise learning-rate decay (a factor per weight) and Keras's `clipnorm` (each gradient
clipped to norm 1 alone) or `global_clipnorm` (all of them together, as BERT and PyTorch's
`clip_grad_norm_` do).
"""

import re

import keras
import tensorflow as tf

# Layers below the transformer stack: they get the smallest learning rate under layer-wise decay.
EMBEDDING_LAYERS = frozenset(
    ["token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm", "embedding_projection"]
)


def layer_scale(path: str, num_layers: int, decay: float) -> float:
    """The learning-rate factor of a variable under layer-wise decay: 1 for the head and pooler,
    decay**(L - i) for transformer layer i of L, decay**(L + 1) for the embeddings."""
    top = path.split("/")[0]
    layer = re.fullmatch(r"transformer_layer_(\d+)", top)
    if layer:
        return decay ** (num_layers - int(layer.group(1)))
    return decay ** (num_layers + 1) if top in EMBEDDING_LAYERS else 1.0


class FusedAdamW(keras.optimizers.AdamW):
    """Keras's AdamW, its update compiled into one XLA computation (see the module's docstring).

    Args:
        num_layers, layer_decay: layer-wise learning-rate decay (layer_decay 1: none); see layer_scale.
        fused: compile the update (False: Keras's own update, op by op, e.g. to compare).
        **kwargs: keras.optimizers.AdamW's (learning_rate, weight_decay, clipnorm or global_clipnorm, ...).

    With `use_ema=True` (keras's exponential moving average of the weights, `ema_momentum`) the
    compiled update keeps the averages too, as keras does (the first step copies the weights).
    Keras puts the averages into the model at the end of every `fit`; here that is the caller's
    choice (`use_averages`): a resumed run fits twice, and must go on from its own weights.

    The compiled path is taken on one device without gradient accumulation; elsewhere (several
    replicas of a distribution strategy) Keras's update runs, with the same layer-wise factors.
    """

    def __init__(self, num_layers: int = 0, layer_decay: float = 1.0, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.layer_decay, self.fused = num_layers, layer_decay, fused
        self._scales: list[float] = []
        self._update = tf.function(self._fused_update, jit_compile=True, autograph=False)

    def build(self, variables):
        super().build(variables)
        self._scales = [layer_scale(v.path, self.num_layers, self.layer_decay) for v in variables]

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "layer_decay": self.layer_decay}

    def update_step(self, gradient, variable, learning_rate):
        """Keras's path (several replicas, or fused=False): its update with this weight's factor."""
        scale = self._scales[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, learning_rate * scale)

    def _compiled_path(self) -> bool:
        one_device = tf.distribute.get_strategy().num_replicas_in_sync == 1
        return self.fused and one_device and not self.gradient_accumulation_steps and not self.ema_overwrite_frequency

    def finalize_variable_values(self, var_list):
        """Keras calls this at the end of each fit to put the moving averages into the model: not
        here (see the class docstring); `use_averages` does it when the caller wants."""

    def averages(self) -> dict[int, "tf.Variable"]:
        """id(trainable variable) -> its moving average (use_ema), else empty."""
        if not self.use_ema or not self.built:
            return {}
        return {id(v): a for v, a in zip(self._trainable_variables, self._model_variables_moving_average, strict=True)}

    def use_averages(self, variables) -> None:
        """Set each of `variables` that has a moving average to it."""
        averages = self.averages()
        for variable in variables:
            if id(variable) in averages:
                variable.assign(averages[id(variable)])

    def _backend_apply_gradients(self, grads, trainable_variables):
        if not self._compiled_path():
            return super()._backend_apply_gradients(grads, trainable_variables)
        # An embedding table's gradient (IndexedSlices) has a row per token of the batch: its rows
        # and their token ids go in as they are, and are added into the table's moments in place.
        dense = [None if isinstance(g, tf.IndexedSlices) else g for g in grads]
        rows = [g.values if isinstance(g, tf.IndexedSlices) else None for g in grads]
        tokens = [g.indices if isinstance(g, tf.IndexedSlices) else None for g in grads]
        indices = [self._get_variable_index(v) for v in trainable_variables]
        averages = [self._model_variables_moving_average[i].value for i in indices] if self.use_ema else None
        self._update(
            dense,
            rows,
            tokens,
            [v.value for v in trainable_variables],
            [self._momentums[i].value for i in indices],
            [self._velocities[i].value for i in indices],
            tf.cast(self.learning_rate, tf.float32),
            tf.cast(self.iterations + 1, tf.float32),
            tuple(self._scales[i] for i in indices),
            tuple(self.weight_decay is not None and self._use_weight_decay(v) for v in trainable_variables),
            averages,
            # keras's: the first step's average is the weights themselves
            tf.cast(self.iterations > 0, tf.float32) * float(self.ema_momentum or 0.0),
        )

    def _fused_update(
        self, grads, rows, tokens, variables, momentums, velocities, learning_rate, step, scales, decays, averages, ema
    ):
        """Clip, decay and update every weight (traced once: the Python loop unrolls into one graph),
        and (averages not None) each weight's moving average with momentum `ema`.

        grads[i]: a dense gradient, or None for an embedding table, whose gradient is rows[i], a row
        per token of the batch, for the table rows tokens[i]. Keras's ops on such a gradient sum a
        repeated token's rows for the first moment, but square (and clip, and measure for the
        norm) each row before summing for the second: that is the update reproduced here.
        """
        grads, rows = list(grads), list(rows)
        clip_value = self.clipvalue and self.clipvalue > 0 and not (self.clipnorm or self.global_clipnorm)
        for i, var in enumerate(variables):
            if grads[i] is not None:
                grads[i] = tf.cast(grads[i], var.dtype)
                if clip_value:
                    grads[i] = tf.clip_by_value(grads[i], -self.clipvalue, self.clipvalue)
                continue
            rows[i] = tf.cast(rows[i], var.dtype)
            if clip_value:  # each row, before a repeated token's rows are summed
                rows[i] = tf.clip_by_value(rows[i], -self.clipvalue, self.clipvalue)
        norms = [tf.reduce_sum(tf.square(g if g is not None else r)) for g, r in zip(grads, rows, strict=True)]
        if self.clipnorm and self.clipnorm > 0:  # each gradient to norm clipnorm, as tf.clip_by_norm
            factors = [self.clipnorm / tf.maximum(tf.sqrt(n), self.clipnorm) for n in norms]
        elif self.global_clipnorm and self.global_clipnorm > 0:  # all together, as keras's clip_by_global_norm
            total = tf.sqrt(tf.add_n(norms))
            factor = self.global_clipnorm * tf.minimum(1.0 / total, 1.0 / self.global_clipnorm) + (total - total)
            factors = [factor] * len(grads)
            for i, var in enumerate(variables):  # keras's scaling there makes a table's gradient dense
                if grads[i] is None:
                    grads[i] = tf.math.unsorted_segment_sum(rows[i], tokens[i], var.shape[0])
        else:
            factors = [None] * len(grads)
        beta_1, beta_2 = float(self.beta_1), float(self.beta_2)
        correction = tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        for i, (var, m, v) in enumerate(zip(variables, momentums, velocities, strict=True)):
            value = var.read_value()
            if decays[i]:  # Keras decays with the schedule's rate, before the Adam step, without the layer factor
                value = value - value * (float(self.weight_decay) * learning_rate)
            if grads[i] is not None:
                g = grads[i] if factors[i] is None else grads[i] * factors[i]
                m_new = m.read_value() + (g - m.read_value()) * (1 - beta_1)
                v_new = v.read_value() + (tf.square(g) - v.read_value()) * (1 - beta_2)
            else:  # every row's moments decay; the batch's tokens' rows add in place
                r = rows[i] if factors[i] is None else rows[i] * factors[i]
                at = tf.expand_dims(tokens[i], 1)
                m_new = tf.tensor_scatter_nd_add(m.read_value() * beta_1, at, r * (1 - beta_1))
                v_new = tf.tensor_scatter_nd_add(v.read_value() * beta_2, at, tf.square(r) * (1 - beta_2))
            m.assign(m_new)
            v.assign(v_new)
            updated = value - m_new * (learning_rate * scales[i] * correction) / (tf.sqrt(v_new) + self.epsilon)
            var.assign(updated)
            if averages is not None:
                averages[i].assign(ema * averages[i].read_value() + (1 - ema) * updated)
