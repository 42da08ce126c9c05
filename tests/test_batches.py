"""Tokenize once, pad each batch only to its longest text, restore input order."""

import numpy as np

from bertclf.inference.batches import LENGTH_MULTIPLE, fixed_order, predict_in_order, sorted_order, training_order
from bertclf.training.pipeline import dataset, encode, traced_forward
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
    in_fixed_batches = predict_in_order(forward, encode(preprocessor, texts), batch_size=4, fixed=True)
    np.testing.assert_allclose(in_fixed_batches, batched, atol=1e-5)
    one_by_one = np.concatenate([predict_in_order(forward, encode(preprocessor, [t]), 1) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def padded_tokens(lengths, batches):
    return sum(len(b) * int(np.ceil(lengths[b].max() / LENGTH_MULTIPLE) * LENGTH_MULTIPLE) for b in batches)


def test_inference_batches_cover_every_text_once_and_pad_less_than_fixed_batches():
    lengths = np.minimum(np.random.default_rng(0).lognormal(np.log(35), 1.0, 500).astype(int) + 2, 128)
    batches = sorted_order(lengths, 32)
    assert sorted(np.concatenate(batches)) == list(range(500))
    assert max(len(b) for b in batches) <= 32
    fixed = fixed_order(lengths, 32)
    assert [len(b) for b in fixed] == [32] * 15 + [20] and sorted(np.concatenate(fixed)) == list(range(500))
    widths = {int(np.ceil(lengths[b].max() / LENGTH_MULTIPLE)) for b in fixed}
    assert len(widths) <= 128 // LENGTH_MULTIPLE, "a shape per width at most: what a compiled kernel is built for"
    assert padded_tokens(lengths, batches) < 0.97 * padded_tokens(lengths, fixed)


def test_a_long_text_does_not_pad_the_short_ones():
    lengths = np.array([6] * 20 + [120])
    batches = sorted_order(lengths, 32)
    assert [len(b) for b in batches] == [20, 1]
    assert list(batches[1]) == [20]


def test_token_counts_are_taken_before_truncation(tiny_preset):
    from bertclf.training.pipeline import token_counts

    _, preprocessor = tiny(tiny_preset)  # cuts at 32
    counts = token_counts(preprocessor, ["apple", "apple " * 50, ""])
    assert counts.tolist() == [3, 52, 2]  # [CLS] and [SEP] included
    assert encode(preprocessor, ["apple " * 50]).lengths.tolist() == [32]


def test_each_epoch_draws_the_order_one_generator_running_through_the_run_draws():
    from bertclf.training.pipeline import epoch_generator

    lengths = np.random.default_rng(0).integers(1, 100, 200)
    rng = np.random.default_rng(42)  # how every epoch was drawn before runs could resume
    for epoch in range(4):
        expected = training_order(lengths, 16, rng)
        drawn = training_order(lengths, 16, epoch_generator(42, epoch, lengths, 16))
        assert [list(b) for b in drawn] == [list(b) for b in expected]


def test_balanced_draw_draws_every_class_about_equally_often():
    from bertclf.training.pipeline import balanced_draw

    labels = np.repeat(np.arange(3), [3000, 300, 100])
    drawn = balanced_draw(labels, np.random.default_rng(0))
    assert len(drawn) == len(labels)
    shares = np.bincount(labels[drawn], minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.03)  # against 0.88 / 0.09 / 0.03 as given


def test_a_balanced_epoch_is_its_own_draw_of_the_texts_and_the_same_again_for_its_seed():
    from bertclf.inference.batches import Encoded

    n = 120
    labels = np.repeat(np.arange(2), [110, 10])
    lengths = np.random.default_rng(1).integers(3, 16, n).astype(np.int32)
    encoded = Encoded({"token_ids": np.tile(np.arange(16, dtype=np.int32), (n, 1))}, lengths)

    def epoch_labels(seed):
        return np.concatenate([y for _, y in dataset(encoded, labels, 8, seed=seed, balance=True)])

    first = epoch_labels(7)
    assert len(first) == n and 40 < (first == 1).sum() < 80  # the 10 rare texts drawn about half the time
    np.testing.assert_array_equal(first, epoch_labels(7))  # (seed, epoch) decides: a resumed run draws it again
    plain = np.concatenate([y for _, y in dataset(encoded, labels, 8, seed=7)])
    assert (plain == 1).sum() == 10
