"""ALBERT's SentencePiece ids without TensorFlow equal those of the KerasHub preprocessor the model
was trained with (traced, as training runs it), on text chosen to break tokenizers; and packing
matches KerasHub's."""

import numpy as np

from bertclf.inference.pieces import SentencePieces, pack
from conftest import make_texts
from test_wordpiece import HOSTILE, random_texts
from tiny_tf1 import sentencepiece_proto, write_albert


def test_albert_ids_equal_the_keras_hub_preprocessor(tmp_path):
    import keras_hub
    import tensorflow as tf

    from bertclf.pretrained import resolve
    from bertclf.training.pipeline import traced_preprocessor

    albert = resolve(str(write_albert(tmp_path / "albert_tiny")[0]), tmp_path / "models")
    sequence_length = 64
    preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
        str(albert.path), sequence_length=sequence_length
    )
    texts = [*HOSTILE, "Apple CAT with a Big Saw", "APPLE, cat; saw!", *random_texts(1000, seed=4)]
    expected = traced_preprocessor(preprocessor)(tf.constant(texts))
    ours = SentencePieces.from_preset(albert.path).encode(texts, sequence_length)
    for key in ("token_ids", "segment_ids", "padding_mask"):
        want = np.asarray(expected[key])
        differ = [i for i in range(len(texts)) if not np.array_equal(want[i], ours[key][i])]
        assert not differ, f"{key} differ for {[texts[i] for i in differ[:5]]}"
    apple = SentencePieces.from_preset(albert.path)
    assert apple.tokenize("Apple CAT") == apple.tokenize("apple cat"), "the model folds case itself"


def test_pack_cuts_to_fit_and_pads():
    packed = pack([[5, 6, 7, 8], []], 4, cls_id=1, sep_id=2, pad_id=0)
    assert packed["token_ids"].tolist() == [[1, 5, 6, 2], [1, 2, 0, 0]]
    assert packed["padding_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert packed["segment_ids"].tolist() == [[0] * 4] * 2


def test_a_real_sized_sentencepiece_model_gives_the_keras_hub_ids():
    """A case-folding unigram model of up to 1,000 pieces trained on the hostile corpus and sentences,
    so most of them are spelled by real pieces rather than <unk>; random texts add unknown ones."""
    import keras_hub
    import tensorflow as tf

    from bertclf.training.pipeline import traced_preprocessor

    sentences, _ = make_texts(100)
    texts = [*HOSTILE, *sentences, *random_texts(500, seed=5)]
    proto = sentencepiece_proto(
        [*HOSTILE, *sentences] * 3, vocab_size=1000, normalization_rule_name="nmt_nfkc_cf", minloglevel=2
    )
    tokenizer = keras_hub.models.AlbertTokenizer(proto=proto)
    preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor(tokenizer, sequence_length=96)
    expected = np.asarray(traced_preprocessor(preprocessor)(tf.constant(texts))["token_ids"])
    ours = SentencePieces(proto).encode(texts, 96)["token_ids"]
    differ = [texts[i] for i in range(len(texts)) if not np.array_equal(expected[i], ours[i])]
    assert not differ, differ[:5]
    spelled = ours[: len(HOSTILE) + len(sentences)]
    assert (spelled > 4).sum() > 5 * (spelled == 1).sum(), "mostly real pieces, not <unk>"
    assert (ours == 1).any(), "and some unknown ones"
