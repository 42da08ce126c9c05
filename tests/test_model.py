"""The classifier: built on a checkpoint within its positions; a linear-probe head starts better than a random one."""

import keras
import numpy as np
import pytest

from bertclf.errors import ConfigError
from bertclf.pretrained import resolve
from bertclf.pretrained.folders import inspect_folder
from bertclf.training.model import build_classifier, compile_classifier, init_head_from_probe, probe_sample
from bertclf.training.pipeline import encode
from conftest import make_texts, save_tiny_hf_bert


def loss_with_head(preset, probe, labels_fn=lambda y: y):
    keras.utils.set_random_seed(0)
    classifier = build_classifier(inspect_folder(preset), 3, 32, 0.0)
    texts, labels = make_texts(30)
    y = labels_fn(np.array([["animal", "fruit", "tool"].index(label) for label in labels]))
    encoded = encode(classifier.preprocessor, texts)
    classifier.preprocessor = None
    if probe:
        init_head_from_probe(classifier, encoded, y, batch_size=16)
    compile_classifier(classifier, 1e-3)
    return classifier.evaluate(encoded.features, y, verbose=0)[0]


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_probe_head_starts_with_lower_loss(tiny_pretrained_preset):
    random_head = loss_with_head(tiny_pretrained_preset, probe=False)
    assert random_head > 1.0  # about log(3): a random head knows nothing
    assert loss_with_head(tiny_pretrained_preset, probe=True) < 0.7 * random_head


def test_probe_head_handles_two_classes_in_a_three_way_head(tiny_pretrained_preset):
    # Binary training labels: scikit-learn returns one coefficient row; both logits must be set.
    loss = loss_with_head(tiny_pretrained_preset, probe=True, labels_fn=lambda y: np.minimum(y, 1))
    assert np.isfinite(loss) and loss < 0.5


def test_the_probe_draws_about_its_limit_keeping_every_class():
    labels = np.array([0] * 900 + [1] * 97 + [2] * 3)  # a class of 3 texts in 1,000
    chosen = probe_sample(labels, 100, seed=0)
    assert 95 <= len(chosen) <= 105 and len(set(chosen)) == len(chosen)
    assert set(labels[chosen]) == {0, 1, 2}, "a rare class keeps a text: its head row is fitted, not -10"
    assert np.bincount(labels[chosen])[0] == 90
    assert list(probe_sample(labels, 100, seed=0)) == list(chosen) != list(probe_sample(labels, 100, seed=1))
    assert list(probe_sample(labels, 1000, seed=0)) == list(range(1000)), "at most the limit: every text"
    multi = np.zeros((1000, 3), int)
    multi[:, 0], multi[:5, 1] = 1, 1  # label 2: no text has it
    picked = multi[probe_sample(multi, 100, seed=0)]
    assert picked[:, 1].sum() >= 1 and picked[:, 0].all()


def test_a_probe_on_a_sample_still_starts_better_than_a_random_head(tiny_pretrained_preset):
    keras.utils.set_random_seed(0)
    classifier = build_classifier(inspect_folder(tiny_pretrained_preset), 3, 32, 0.0)
    texts, labels = make_texts(60)
    y = np.array([["animal", "fruit", "tool"].index(label) for label in labels])
    encoded = encode(classifier.preprocessor, texts)
    classifier.preprocessor = None
    init_head_from_probe(classifier, encoded, y, batch_size=16, limit=24)
    compile_classifier(classifier, 1e-3)
    assert classifier.evaluate(encoded.features, y, verbose=0)[0] < 0.7 * np.log(3)


def test_hf_folder_loads_and_trains_shape(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    checkpoint = resolve(str(folder))
    assert (checkpoint.family, checkpoint.max_sequence_length) == ("BERT", 64)
    classifier = build_classifier(checkpoint, num_classes=3, max_seq_len=16, dropout=0.1)
    assert classifier.predict(["apple and cat"], verbose=0).shape == (1, 3)


def test_max_seq_len_longer_than_checkpoint_is_refused(tmp_path):
    checkpoint = resolve(str(save_tiny_hf_bert(tmp_path / "hf")))
    with pytest.raises(ConfigError, match=r"max_seq_len 128 is longer than the 64 positions.*use 64 or less"):
        build_classifier(checkpoint, 3, 128, 0.1)


def test_layer_scales_shrink_from_the_head_to_the_embeddings():
    from bertclf.training.optimizer import layer_scale

    assert layer_scale("logits/kernel", 2, 0.5) == layer_scale("pooled_dense/bias", 2, 0.5) == 1.0
    assert layer_scale("transformer_layer_1/self_attention_layer/query/kernel", 2, 0.5) == 0.5
    assert layer_scale("transformer_layer_0/feedforward_output_dense/kernel", 2, 0.5) == 0.25
    assert layer_scale("token_embedding/embeddings", 2, 0.5) == 0.125


def first_step_moves(preset, layer_decay):
    """How far one training step moves each variable (largest change), by path."""
    from conftest import detached_classifier

    keras.utils.set_random_seed(0)
    classifier, preprocessor = detached_classifier(preset, 16)
    texts, labels = make_texts(8)
    y = np.array([["animal", "fruit", "tool"].index(label) for label in labels])
    encoded = encode(preprocessor, texts)
    compile_classifier(classifier, 1e-2, layer_decay=layer_decay, num_layers=2)
    before = {v.path: np.array(v.numpy()) for v in classifier.trainable_variables}
    classifier.train_on_batch(encoded.features, y)
    return {v.path: float(np.abs(v.numpy() - before[v.path]).max()) for v in classifier.trainable_variables}


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_layer_decay_slows_the_lower_layers_only(tiny_preset):
    plain, decayed = first_step_moves(tiny_preset, 1.0), first_step_moves(tiny_preset, 0.1)
    # Adam's first step is the learning rate times a factor of the gradient's sign pattern, so the
    # ratio to the plain run is each variable's learning-rate scale.
    assert decayed["logits/kernel"] == pytest.approx(plain["logits/kernel"], rel=1e-3)
    top = "transformer_layer_1/feedforward_output_dense/kernel"
    assert decayed[top] == pytest.approx(0.1 * plain[top], rel=0.05)
    assert decayed["token_embedding/embeddings"] == pytest.approx(1e-3 * plain["token_embedding/embeddings"], rel=0.05)
