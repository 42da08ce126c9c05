"""Tokenize once, pad each batch only to its longest text, restore input order."""

import numpy as np

from bertclf.batches import LENGTH_MULTIPLE, dataset, encode, predict_in_order, traced_forward, training_order
from conftest import detached_classifier


def tiny(tiny_preset):
    return detached_classifier(tiny_preset, max_seq_len=32)


def test_batches_are_cut_to_their_longest_text(tiny_preset):
    _, preprocessor = tiny(tiny_preset)
    texts = ["apple"] * 20 + ["apple cat dog horse tiger whale zebra saw drill hammer"] * 4
    encoded = encode(preprocessor, texts)
    assert list(encoded.lengths[:2]) == [3, 3] and encoded.lengths[-1] == 12
    widths = [x["token_ids"].shape[1] for x, _ in dataset(encoded, np.zeros(24), 8, shuffle=False)]
    assert widths == [LENGTH_MULTIPLE, LENGTH_MULTIPLE, 16]
    padded = [x["token_ids"].shape[1] for x, _ in dataset(encoded, np.zeros(24), 8, shuffle=False, pad_to_max=True)]
    assert padded == [32, 32, 32]


def test_training_order_covers_every_example_once_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 100, 1000)
    rng = np.random.default_rng(1)
    first = training_order(lengths, 32, rng)
    second = training_order(lengths, 32, rng)
    assert sorted(np.concatenate(first)) == list(range(1000))
    assert [list(b) for b in first] != [list(b) for b in second], "a new order each epoch"
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < 10, "batches group texts of similar length"


def test_predictions_come_back_in_input_order(tiny_preset):
    classifier, preprocessor = tiny(tiny_preset)
    texts = ["apple cat dog horse tiger whale", "saw", "lemon mango", "the big cat", "hammer"] * 3
    forward = traced_forward(classifier)
    batched = predict_in_order(forward, encode(preprocessor, texts), batch_size=4)
    one_by_one = np.concatenate([predict_in_order(forward, encode(preprocessor, [t]), 1) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
