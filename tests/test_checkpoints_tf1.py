"""Google's TF1 checkpoint format: tiny checkpoints written here convert to KerasHub backbones that
compute what the raw variables compute; missing, extra or mis-shaped variables are refused by name;
tokenizers follow the checkpoint's casing."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bertclf.pretrained import CheckpointError, resolve, tf1
from bertclf.pretrained.tf1 import GoogleCheckpointError
from conftest import VOCAB
from tiny_tf1 import BERT_CONFIG, google_variables, reference_forward, save_tf1_checkpoint, write_albert, write_bert


def check_against_reference(family, config, variables, files):
    backbone = tf1.build_backbone(family, config, tf1.read_variables(files.checkpoint))
    rng = np.random.default_rng(1)
    ids = rng.integers(5, config["vocab_size"], (3, 7)).astype(np.int32)
    segments = np.zeros_like(ids)
    segments[:, 4:] = 1
    mask = np.ones_like(ids)
    mask[1, 5:] = 0  # a padded row
    got = backbone({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    sequence, pooled = reference_forward(family, config, variables, ids, segments, mask)
    np.testing.assert_allclose(np.asarray(got["sequence_output"])[mask == 1], sequence[mask == 1], atol=2e-5)
    np.testing.assert_allclose(np.asarray(got["pooled_output"]), pooled, atol=2e-5)


def test_bert_checkpoint_converts_to_the_same_network(tmp_path):
    variables = google_variables("BERT", BERT_CONFIG)
    folder = write_bert(tmp_path / "uncased_tiny", variables=variables)
    files = tf1.find_files(folder)
    assert (files.family, files.vocab.name) == ("BERT", "vocab.txt")
    check_against_reference("BERT", BERT_CONFIG, variables, files)


def test_albert_checkpoint_converts_to_the_same_network(tmp_path):
    folder, config = write_albert(tmp_path / "albert_tiny")
    variables = google_variables("ALBERT", config)
    save_tf1_checkpoint(folder / "model.ckpt-best", variables)
    files = tf1.find_files(folder)
    assert (files.family, files.vocab.name) == ("ALBERT", "30k-clean.model")
    check_against_reference("ALBERT", config, variables, files)


def test_missing_or_unexpected_backbone_variables_are_refused(tmp_path):
    variables = google_variables("BERT", BERT_CONFIG)
    missing = {k: v for k, v in variables.items() if k != "bert/encoder/layer_1/output/dense/bias"}
    files = tf1.find_files(write_bert(tmp_path / "missing", variables=missing))
    with pytest.raises(GoogleCheckpointError, match=r"lacks 1 backbone variable.*layer_1/output/dense/bias"):
        tf1.build_backbone("BERT", BERT_CONFIG, tf1.read_variables(files.checkpoint))
    extra = dict(variables, **{"bert/encoder/layer_2/output/dense/bias": np.zeros(8, np.float32)})
    files = tf1.find_files(write_bert(tmp_path / "extra", variables=extra))
    with pytest.raises(GoogleCheckpointError, match=r"map to no BERT backbone weight.*layer_2"):
        tf1.build_backbone("BERT", BERT_CONFIG, tf1.read_variables(files.checkpoint))
    wrong = dict(variables, **{"bert/pooler/dense/bias": np.zeros(9, np.float32)})
    files = tf1.find_files(write_bert(tmp_path / "wrong", variables=wrong))
    shape = r"bert/pooler/dense/bias has shape \(9,\), the backbone expects \(8,\)"
    with pytest.raises(GoogleCheckpointError, match=shape):
        tf1.build_backbone("BERT", BERT_CONFIG, tf1.read_variables(files.checkpoint))


def test_incomplete_folder_names_the_missing_files(tmp_path):
    (tmp_path / "bert_config.json").write_text(json.dumps(BERT_CONFIG))
    with pytest.raises(CheckpointError, match=r"no vocab.txt or bert_model.ckpt.index"):
        resolve(str(tmp_path), tmp_path / "models")


def tokens(preprocessor, text):
    out = preprocessor(tf.constant([text]))
    ids = np.asarray(out["token_ids"])[0]
    return [preprocessor.tokenizer.id_to_token(int(i)) for i in ids[: int(np.asarray(out["padding_mask"])[0].sum())]]


def test_tokenization_follows_the_casing(tmp_path):
    import keras_hub

    uncased = resolve(str(write_bert(tmp_path / "uncased_L-2_H-8_A-2")), tmp_path / "models")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(str(uncased.path), sequence_length=16)
    assert tokens(pre, "Apple CAT!") == ["[CLS]", "apple", "cat", "[UNK]", "[SEP]"]

    cased_vocab = [*VOCAB, "Apple"]
    assert not tf1.vocabulary_is_lowercase(write_bert(tmp_path / "v", vocab=cased_vocab) / "vocab.txt")
    cased = resolve(str(write_bert(tmp_path / "tiny_model", vocab=cased_vocab)), tmp_path / "models")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(str(cased.path), sequence_length=16)
    assert tokens(pre, "Apple apple") == ["[CLS]", "Apple", "apple", "[SEP]"]
    # ALBERT lower-cases inside its SentencePiece model, as Google's tokenizer does before it.
    albert = resolve(str(write_albert(tmp_path / "albert_tiny")[0]), tmp_path / "models")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(str(albert.path), sequence_length=16)
    assert tokens(pre, "Apple CAT with a Big Saw") == tokens(pre, "apple cat with a big saw")
    assert "<unk>" not in tokens(pre, "Apple CAT")
    # The name wins over the vocabulary when it says "cased" or "uncased".
    assert tf1.casing_from_name("cased_L-12_H-768_A-12") is False
    assert tf1.casing_from_name("wwm_uncased_L-24_H-1024_A-16") is True
