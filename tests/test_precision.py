"""Mixed-precision training: bfloat16 compute on a CPU (emulated without avx512_bf16/amx_bf16),
a model exported in float32 that serves like any other, and float16 refused without a GPU."""

import json

import numpy as np
import pytest

from bertclf.config import TrainConfig
from bertclf.errors import ConfigError
from bertclf.training.model import choose_precision, cpu_flags, set_training_precision
from conftest import make_texts, train_tiny


def test_float16_without_a_gpu_is_refused_with_the_alternative():
    import keras

    with pytest.raises(ConfigError, match=r"mixed_float16 needs a GPU.*mixed_bfloat16"):
        set_training_precision("mixed_float16")
    assert keras.mixed_precision.global_policy().name == "float32", "a refusal changes nothing"
    with pytest.raises(ConfigError, match="precision must be one of auto, float32, mixed_float16, mixed_bfloat16"):
        TrainConfig(precision="float16")


@pytest.mark.parametrize(
    ("flags", "gpus", "chosen", "why"),
    [
        ({"avx2", "fma"}, [], "float32", "neither avx512_bf16 nor amx_bf16"),  # AMD EPYC, older Intel
        ({"avx512f", "avx512_bf16"}, [], "mixed_bfloat16", "in hardware (avx512_bf16)"),  # Cooper Lake, Zen 4
        ({"avx512_bf16", "amx_bf16", "amx_tile"}, [], "mixed_bfloat16", "(amx_bf16, avx512_bf16)"),  # Sapphire Rapids
        ({"amx_bf16"}, [(7, 5)], "float32", "compute capability 7.5 has no bfloat16"),  # a T4 beside any CPU
        (set(), [(8, 0), (9, 0)], "mixed_bfloat16", "natively (compute capability 8.0)"),  # A100 + H100
        (set(), [(8, 6), (7, 0)], "float32", "7.0"),  # the oldest GPU decides: every replica computes alike
    ],
)
def test_auto_precision_is_bfloat16_only_where_the_hardware_computes_it(flags, gpus, chosen, why):
    precision, reason = choose_precision("auto", flags, gpus)
    assert precision == chosen
    assert why in reason and reason.startswith("auto: ")


def test_a_precision_asked_for_is_kept_and_auto_is_the_default():
    assert TrainConfig().precision == "auto"
    for asked in ("float32", "mixed_bfloat16"):
        assert choose_precision(asked, {"amx_bf16"}, []) == (asked, "as asked (--precision)")
        assert choose_precision(asked, set(), []) == (asked, "as asked (--precision)")


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_an_auto_run_says_what_it_chose_and_records_it(tmp_path, tiny_preset, monkeypatch, caplog):
    import logging

    monkeypatch.setattr("bertclf.training.model.cpu_flags", lambda: {"avx2"})  # as on a CPU without bfloat16
    texts, labels = make_texts(10)
    with caplog.at_level(logging.INFO, logger="bertclf.training.run"):
        _, _, model_config = train_tiny(
            tmp_path, tiny_preset, zip(texts, labels, strict=True), n_epochs=1, precision="auto"
        )
    assert model_config["hyperparameters"]["precision"] == model_config["training"]["precision"] == "float32"
    assert "neither avx512_bf16 nor amx_bf16" in model_config["training"]["precision_reason"]
    assert "precision float32 (auto: this CPU has neither" in caplog.text


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_a_bfloat16_fit_exports_a_float32_model_that_serves(tmp_path, tiny_pretrained_preset, caplog):
    import keras

    from bertclf.inference.predictor import Predictor

    # A random head on features that tell the classes apart: what the bfloat16 fit must learn, it
    # learns with room to spare (loss 1.08 -> 0.12, accuracy 1.0, oneDNN on and off). From random
    # features a bfloat16 fit stalled at 2 of 3 classes (0.67 against 0.6).
    texts, labels = make_texts(30)
    rows = zip(texts, labels, strict=True)
    _, folder, model_config = train_tiny(
        tmp_path, tiny_pretrained_preset, rows, precision="mixed_bfloat16", head_init="random"
    )
    assert keras.mixed_precision.global_policy().name == "float32", "the run leaves the policy as it found it"
    assert model_config["training"]["precision"] == "mixed_bfloat16"
    assert model_config["hyperparameters"]["precision"] == "mixed_bfloat16"
    if not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        assert "bfloat16 is emulated" in caplog.text
    saved = json.loads((folder / "config.json").read_text())
    assert saved["config"]["dtype"]["config"]["name"] == "float32", "the exported model is float32"
    keras_model, served = Predictor(folder, engine="tensorflow"), Predictor(folder)
    np.testing.assert_allclose(served.predict_proba(texts[:20]), keras_model.predict_proba(texts[:20]), atol=1e-4)
    accuracy = np.mean(np.array(served.predict(texts)[0]) == np.array(labels))
    assert accuracy > 0.9, f"the bfloat16 fit learned the task ({accuracy:.2f})"
    losses = model_config["training"]["history"]["loss"]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.slow  # XLA compiles the step once per batch width: ~40 s even for the tiny model
def test_xla_compiles_the_training_step_and_the_model_is_the_same_kind(tmp_path, tiny_preset):
    texts, labels = make_texts(10)
    _, folder, config = train_tiny(tmp_path, tiny_preset, zip(texts, labels, strict=True), xla=True, n_epochs=1)
    assert config["hyperparameters"]["xla"] is True
    assert (folder / "serving" / "model.onnx").exists()  # exported and checked as any other run


def test_mixed_precision_keeps_the_residual_stream_and_the_logits_in_float32(tiny_preset):
    import keras
    import keras_hub
    import tensorflow as tf

    from bertclf.training.fused import fused_layers
    from bertclf.training.model import float32_residuals
    from conftest import detached_classifier

    set_training_precision("mixed_bfloat16")
    try:
        classifier, preprocessor = detached_classifier(tiny_preset, 16)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    encoders = [layer for layer in classifier.backbone.layers if isinstance(layer, keras_hub.layers.TransformerEncoder)]
    encoder = encoders[0]
    for layer in (encoder, encoder._self_attention_layer_norm, encoder._feedforward_dropout, classifier.output_dense):
        assert layer.compute_dtype == "float32", layer.name
    for layer in (encoder._feedforward_intermediate_dense, encoder._self_attention_layer._dropout_layer):
        assert layer.compute_dtype == "bfloat16", f"{layer.name}: the matrix products and attention stay 16-bit"
    x = preprocessor(["the cat sat on a mat", "a dog"])
    x["padding_mask"] = tf.cast(x["padding_mask"], tf.int32)
    stream = keras.Model(classifier.inputs, classifier.backbone.output["sequence_output"])
    with fused_layers(classifier):
        with tf.GradientTape() as tape:
            logits = classifier(x, training=True)
            total = tf.reduce_sum(logits)
        assert logits.dtype == tf.float32 and stream(x).dtype == tf.float32
        gradients = tape.gradient(total, classifier.trainable_variables)
    assert [v.path for v, g in zip(classifier.trainable_variables, gradients, strict=True) if g is None] == []
    assert float32_residuals(detached_classifier(tiny_preset, 16)[0]) == 0, "a float32 model has nothing to change"
