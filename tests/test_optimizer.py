"""The compiled AdamW update against Keras's own, op by op, on a model with an embedding table."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bertclf.training.optimizer import FusedAdamW


def tiny_model():
    inputs = keras.Input((None,), dtype="int32")  # any width
    x = keras.layers.Embedding(50, 8, name="token_embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, name="transformer_layer_0")(x)
    x = keras.layers.LayerNormalization(name="layer_norm")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def trained_weights(fused: bool, jit_compile: bool = False, **settings):
    keras.utils.set_random_seed(3)
    model = tiny_model()
    optimizer = FusedAdamW(
        num_layers=1,
        fused=fused,
        learning_rate=keras.optimizers.schedules.ExponentialDecay(0.05, 4, 0.5),
        weight_decay=0.1,
        **settings,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (64, 5)).astype("int32")  # rows 20-49 of the table get no gradient: decay only
    y = rng.integers(0, 3, 64)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    assert int(optimizer.iterations.numpy()) == 12
    return [w.numpy() for w in model.weights] + [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize(
    "settings",
    [
        {"clipnorm": 0.05},
        {"global_clipnorm": 0.05},
        {"clipvalue": 0.01},
        {"clipnorm": 1.0, "layer_decay": 0.5},
        {"clipnorm": 1.0, "use_ema": True, "ema_momentum": 0.8},
    ],
    ids=["clipnorm", "global_clipnorm", "clipvalue", "layer_decay", "moving_average"],
)
def test_the_compiled_update_is_keras_adamw(settings):
    keras_way = trained_weights(fused=False, **settings)
    compiled = trained_weights(fused=True, **settings)
    assert len(keras_way) == len(compiled)
    moved = 0
    for ours, theirs in zip(compiled, keras_way, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-6)
        moved += 1
    assert moved > 10


def test_the_compiled_update_runs_inside_an_xla_training_step():
    np.testing.assert_allclose(
        trained_weights(fused=True, jit_compile=True, clipnorm=1.0)[0],
        trained_weights(fused=False, clipnorm=1.0)[0],
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_the_update_is_traced_once_whatever_the_batch_widths():
    model = tiny_model()
    optimizer = FusedAdamW(learning_rate=0.01, weight_decay=0.01, clipnorm=1.0)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = tf.data.Dataset.from_generator(
        lambda: ((np.ones((4, width), "int32"), np.zeros(4, "int32")) for width in (3, 5, 7, 9)),
        output_signature=(tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.int32)),
    ).apply(tf.data.experimental.assert_cardinality(4))
    model.fit(batches, epochs=2, verbose=0, shuffle=False)
    assert int(optimizer.iterations.numpy()) == 8
    assert optimizer._update.experimental_get_tracing_count() == 1


def test_with_a_moving_average_validation_and_the_best_weights_are_the_average():
    from bertclf.training.fit import AverageIsBest

    keras.utils.set_random_seed(3)
    model = tiny_model()
    optimizer = FusedAdamW(learning_rate=0.05, weight_decay=0.01, clipnorm=1.0, use_ema=True, ema_momentum=0.9)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 20, (64, 5)).astype("int32"), rng.integers(0, 3, 64)
    stopping = keras.callbacks.EarlyStopping(restore_best_weights=True, patience=5)
    raw: list = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: raw.extend(w.numpy() for w in model.weights))
    callbacks = [keras.callbacks.SwapEMAWeights(), stopping, AverageIsBest(stopping), record]
    history = model.fit(
        x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, validation_data=(x, y), callbacks=callbacks
    )
    averages = optimizer.averages()
    assert averages and all(id(v) in averages for v in model.trainable_variables)
    for weight, best in zip(model.weights, stopping.best_weights, strict=True):
        np.testing.assert_array_equal(best, averages[id(weight)].numpy())
    # the model trained on from its own weights, not the average
    assert any(not np.allclose(a, b) for a, b in zip(raw, stopping.best_weights, strict=True))
    optimizer.use_averages(model.trainable_variables)
    loss = model.evaluate(x, y, batch_size=16, verbose=0)
    assert loss == pytest.approx(history.history["val_loss"][0], rel=1e-5)  # validation scored the average
