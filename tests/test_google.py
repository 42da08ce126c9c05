"""Google's TF1 BERT/ALBERT checkpoints: tiny ones in Google's exact format, written here, convert
to KerasHub backbones that compute what the raw variables compute; downloads fail clearly."""

import functools
import http.server
import io
import json
import socket
import tarfile
import threading
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from bertclf import google
from bertclf.checkpoints import CheckpointError, resolve
from bertclf.cli import main as cli_main
from bertclf.google import GoogleCheckpoint, GoogleCheckpointError

from conftest import VOCAB, make_texts, write_csv

BERT_CONFIG = dict(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=16, max_position_embeddings=32, type_vocab_size=2, hidden_act="gelu",
                   hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, initializer_range=0.02)


def save_tf1_checkpoint(prefix, variables):
    """Write a name-based TF1 checkpoint (what Google's Saver wrote): prefix.index + prefix.data-*."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])


def _layer_variables(rng, g, attention, ln_attention, ffn_in, ffn_out, ln_ffn, hidden, inter):
    w = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)  # noqa: E731
    out = {}
    for k in ("query", "key", "value"):
        out[f"{g}/{attention}/self/{k}/kernel"] = w(hidden, hidden)
        out[f"{g}/{attention}/self/{k}/bias"] = w(hidden)
    out[f"{g}/{attention}/output/dense/kernel"] = w(hidden, hidden)
    out[f"{g}/{attention}/output/dense/bias"] = w(hidden)
    for name, size in ((ln_attention, hidden), (ln_ffn, hidden)):
        out[f"{g}/{name}/gamma"] = 1 + w(size)
        out[f"{g}/{name}/beta"] = w(size)
    out[f"{g}/{ffn_in}/kernel"], out[f"{g}/{ffn_in}/bias"] = w(hidden, inter), w(inter)
    out[f"{g}/{ffn_out}/kernel"], out[f"{g}/{ffn_out}/bias"] = w(inter, hidden), w(hidden)
    return out


def google_variables(family, config, seed=0):
    """Random variables with Google's names and shapes, pre-training heads and step included."""
    rng = np.random.default_rng(seed)
    w = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)  # noqa: E731
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    emb = config.get("embedding_size", hidden)
    v = {
        "bert/embeddings/word_embeddings": w(config["vocab_size"], emb),
        "bert/embeddings/position_embeddings": w(config["max_position_embeddings"], emb),
        "bert/embeddings/token_type_embeddings": w(config["type_vocab_size"], emb),
        "bert/embeddings/LayerNorm/gamma": 1 + w(emb),
        "bert/embeddings/LayerNorm/beta": w(emb),
        "bert/pooler/dense/kernel": w(hidden, hidden),
        "bert/pooler/dense/bias": w(hidden),
        # Pre-training heads and the step counter: present in Google's files, unused for fine-tuning.
        "cls/predictions/output_bias": w(config["vocab_size"]),
        "cls/predictions/transform/dense/kernel": w(hidden, hidden),
        "cls/seq_relationship/output_weights": w(2, hidden),
        "global_step": np.array(1000, np.int64),
    }
    if family == "BERT":
        for i in range(config["num_hidden_layers"]):
            v.update(_layer_variables(rng, f"bert/encoder/layer_{i}", "attention", "attention/output/LayerNorm",
                                      "intermediate/dense", "output/dense", "output/LayerNorm", hidden, inter))
    else:
        v["bert/encoder/embedding_hidden_mapping_in/kernel"] = w(emb, hidden)
        v["bert/encoder/embedding_hidden_mapping_in/bias"] = w(hidden)
        v.update(_layer_variables(rng, "bert/encoder/transformer/group_0/inner_group_0", "attention_1", "LayerNorm",
                                  "ffn_1/intermediate/dense", "ffn_1/intermediate/output/dense", "LayerNorm_1",
                                  hidden, inter))
    return v


def write_bert(folder, vocab=VOCAB, variables=None):
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(BERT_CONFIG, vocab_size=len(vocab))
    (folder / "bert_config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    save_tf1_checkpoint(folder / "bert_model.ckpt", variables or google_variables("BERT", config))
    return folder


def train_sentencepiece(path):
    """A tiny SentencePiece model with ALBERT's special pieces, trained on the test sentences."""
    import sentencepiece as spm

    texts, _ = make_texts(20)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=40, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="<pad>", unk_piece="<unk>",
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"], hard_vocab_limit=False)
    path.write_bytes(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()


def write_albert(folder, variables=None):
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = train_sentencepiece(folder / "30k-clean.model")
    config = dict(BERT_CONFIG, vocab_size=vocab_size, embedding_size=4, num_hidden_groups=1, inner_group_num=1,
                  net_structure_type=0, gap_size=0, num_memory_blocks=0, down_scale_factor=1)
    (folder / "albert_config.json").write_text(json.dumps(config))
    save_tf1_checkpoint(folder / "model.ckpt-best", variables or google_variables("ALBERT", config))
    return folder, config


# === The reference: Google's network written out in numpy from the raw variables ===
def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, v, name):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * v[f"{name}/gamma"] + v[f"{name}/beta"]


def reference_forward(family, config, v, ids, segments, mask):
    batch, length = ids.shape
    heads = config["num_attention_heads"]
    x = (v["bert/embeddings/word_embeddings"][ids] + v["bert/embeddings/position_embeddings"][:length]
         + v["bert/embeddings/token_type_embeddings"][segments])
    x = layer_norm(x, v, "bert/embeddings/LayerNorm")
    if family == "ALBERT":
        x = x @ v["bert/encoder/embedding_hidden_mapping_in/kernel"] + v["bert/encoder/embedding_hidden_mapping_in/bias"]
    hidden = x.shape[-1]
    for i in range(config["num_hidden_layers"]):
        if family == "BERT":
            g, att, ln1, f_in, f_out, ln2 = (f"bert/encoder/layer_{i}", "attention", "attention/output/LayerNorm",
                                             "intermediate/dense", "output/dense", "output/LayerNorm")
        else:  # every layer is the one shared layer
            g, att, ln1, f_in, f_out, ln2 = ("bert/encoder/transformer/group_0/inner_group_0", "attention_1",
                                             "LayerNorm", "ffn_1/intermediate/dense", "ffn_1/intermediate/output/dense",
                                             "LayerNorm_1")
        split = lambda t: t.reshape(batch, length, heads, hidden // heads).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, val = (split(x @ v[f"{g}/{att}/self/{n}/kernel"] + v[f"{g}/{att}/self/{n}/bias"])
                     for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hidden // heads) + (1 - mask[:, None, None, :]) * -1e9
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ val).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        attended = context @ v[f"{g}/{att}/output/dense/kernel"] + v[f"{g}/{att}/output/dense/bias"]
        x = layer_norm(x + attended, v, f"{g}/{ln1}")
        ffn = gelu(x @ v[f"{g}/{f_in}/kernel"] + v[f"{g}/{f_in}/bias"]) @ v[f"{g}/{f_out}/kernel"] + v[f"{g}/{f_out}/bias"]
        x = layer_norm(x + ffn, v, f"{g}/{ln2}")
    pooled = np.tanh(x[:, 0] @ v["bert/pooler/dense/kernel"] + v["bert/pooler/dense/bias"])
    return x, pooled


def check_against_reference(family, config, variables, files):
    backbone = google.build_backbone(family, config, google.read_variables(files.checkpoint))
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
    files = google.find_files(folder)
    assert (files.family, files.vocab.name) == ("BERT", "vocab.txt")
    check_against_reference("BERT", BERT_CONFIG, variables, files)


def test_albert_checkpoint_converts_to_the_same_network(tmp_path):
    folder, config = write_albert(tmp_path / "albert_tiny")
    variables = google_variables("ALBERT", config)
    save_tf1_checkpoint(folder / "model.ckpt-best", variables)
    files = google.find_files(folder)
    assert (files.family, files.vocab.name) == ("ALBERT", "30k-clean.model")
    check_against_reference("ALBERT", config, variables, files)


def test_missing_or_unexpected_backbone_variables_are_refused(tmp_path):
    variables = google_variables("BERT", BERT_CONFIG)
    missing = {k: v for k, v in variables.items() if k != "bert/encoder/layer_1/output/dense/bias"}
    files = google.find_files(write_bert(tmp_path / "missing", variables=missing))
    with pytest.raises(GoogleCheckpointError, match="lacks 1 backbone variable.*layer_1/output/dense/bias"):
        google.build_backbone("BERT", BERT_CONFIG, google.read_variables(files.checkpoint))
    extra = dict(variables, **{"bert/encoder/layer_2/output/dense/bias": np.zeros(8, np.float32)})
    files = google.find_files(write_bert(tmp_path / "extra", variables=extra))
    with pytest.raises(GoogleCheckpointError, match="map to no BERT backbone weight.*layer_2"):
        google.build_backbone("BERT", BERT_CONFIG, google.read_variables(files.checkpoint))
    wrong = dict(variables, **{"bert/pooler/dense/bias": np.zeros(9, np.float32)})
    files = google.find_files(write_bert(tmp_path / "wrong", variables=wrong))
    with pytest.raises(GoogleCheckpointError, match="shape"):
        google.build_backbone("BERT", BERT_CONFIG, google.read_variables(files.checkpoint))


def test_incomplete_folder_names_the_missing_files(tmp_path):
    (tmp_path / "bert_config.json").write_text(json.dumps(BERT_CONFIG))
    with pytest.raises(CheckpointError, match="no vocab.txt or bert_model.ckpt.index"):
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

    cased_vocab = VOCAB + ["Apple"]
    assert not google.vocabulary_is_lowercase(write_bert(tmp_path / "v", vocab=cased_vocab) / "vocab.txt")
    cased = resolve(str(write_bert(tmp_path / "tiny_model", vocab=cased_vocab)), tmp_path / "models")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(str(cased.path), sequence_length=16)
    assert tokens(pre, "Apple apple") == ["[CLS]", "Apple", "apple", "[SEP]"]
    # ALBERT lower-cases inside its SentencePiece model, as Google's tokenizer does before it.
    albert = resolve(str(write_albert(tmp_path / "albert_tiny")[0]), tmp_path / "models")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(str(albert.path), sequence_length=16)
    assert tokens(pre, "Apple CAT with a Big Saw") == tokens(pre, "apple cat with a big saw")
    assert "<unk>" not in tokens(pre, "Apple CAT")
    # The name wins over the vocabulary when it says "cased" or "uncased".
    assert google.casing_from_name("cased_L-12_H-768_A-12") is False
    assert google.casing_from_name("wwm_uncased_L-24_H-1024_A-16") is True


@pytest.mark.parametrize("family", ["BERT", "ALBERT"])
def test_trains_exports_and_reloads(family, tmp_path):
    from bertclf.config import TrainConfig
    from bertclf.predictor import Predictor
    from bertclf.train import train

    folder = write_bert(tmp_path / "bert_tiny") if family == "BERT" else write_albert(tmp_path / "albert_tiny")[0]
    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", list(zip(texts, labels)))
    cfg = TrainConfig(data=str(data), model=str(folder), models_dir=str(tmp_path / "models"), n_epochs=1,
                      batch_size=16, max_seq_len=16, max_learn_rate=1e-3)
    exported, model_config = train(cfg)
    assert model_config["family"] == family
    assert (tmp_path / "models" / "pretrained" / "converted").is_dir(), "the conversion is cached"
    predictor = Predictor(exported)
    labels_out, probabilities = predictor.predict(texts[:3])
    assert len(labels_out) == 3 and all(0 < p <= 1 for p in probabilities)
    assert predictor.engine == "onnx", "served on the fast graph (ALBERT: shared layers called repeatedly)"
    keras_path = Predictor(exported, engine="tensorflow")
    np.testing.assert_allclose(predictor.predict_proba(texts), keras_path.predict_proba(texts), atol=1e-5)


def test_max_seq_len_is_checked_against_the_checkpoint(tmp_path):
    from bertclf.config import ConfigError, TrainConfig
    from bertclf.train import train

    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", list(zip(texts, labels)))
    cfg = TrainConfig(data=str(data), model=str(write_bert(tmp_path / "bert_tiny")),
                      models_dir=str(tmp_path / "models"), max_seq_len=64)
    with pytest.raises((ConfigError, CheckpointError, ValueError), match="32"):
        train(cfg)


# === Downloads, served by a local HTTP server ===
@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on a free port; yields the base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def archive_of(folder, path, top):
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            for f in sorted(folder.iterdir()):
                z.write(f, f"{top}/{f.name}")
    else:
        with tarfile.open(path, "w:gz") as t:
            for f in sorted(folder.iterdir()):
                t.add(f, f"{top}/{f.name}")
    return path


@pytest.mark.parametrize("family", ["BERT", "ALBERT"])
def test_fetch_by_name_downloads_verifies_converts_and_caches(family, tmp_path, http_server, monkeypatch):
    base, root = http_server
    if family == "BERT":
        source, name, archive = write_bert(tmp_path / "src"), "tiny_uncased", "tiny_uncased.zip"
    else:
        source, name, archive = write_albert(tmp_path / "src")[0], "albert_tiny_v2", "albert_tiny_v2.tar.gz"
    archive_of(source, root / archive, name)
    spec = GoogleCheckpoint(name, f"{base}/{archive}", family, False, "1 kB", "test")
    monkeypatch.setitem(google.GOOGLE_CHECKPOINTS, name.lower(), spec)
    models = tmp_path / "models"
    checkpoint = resolve(name, models)
    assert (checkpoint.name, checkpoint.family) == (name, family)
    assert checkpoint.learn_rate == (2e-5 if family == "ALBERT" else 5e-5)
    assert (models / "pretrained" / name / "keras" / "source.json").is_file()
    assert not (models / "pretrained" / archive).exists(), "the verified archive is not kept twice"
    (root / archive).unlink()  # cached: no second download
    assert resolve(name, models).path == checkpoint.path


def test_truncated_archive_is_refused_and_removed(tmp_path, http_server, monkeypatch):
    base, root = http_server
    whole = archive_of(write_bert(tmp_path / "src"), tmp_path / "whole.zip", "tiny")
    (root / "tiny.zip").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    spec = GoogleCheckpoint("tiny", f"{base}/tiny.zip", "BERT", False, "1 kB", "test")
    monkeypatch.setitem(google.GOOGLE_CHECKPOINTS, "tiny", spec)
    with pytest.raises(GoogleCheckpointError, match="truncated or corrupt.*deleted it"):
        resolve("tiny", tmp_path / "models")
    assert not (tmp_path / "models" / "pretrained" / "tiny.zip").exists()


def test_offline_error_names_the_url_and_the_files_to_place(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/bert_models/uncased_L-12_H-768_A-12.zip"
    spec = GoogleCheckpoint("uncased_L-12_H-768_A-12", url, "BERT", False, "408 MB", "test")
    monkeypatch.setitem(google.GOOGLE_CHECKPOINTS, spec.name.lower(), spec)
    with pytest.raises(GoogleCheckpointError) as err:
        resolve("uncased_L-12_H-768_A-12", tmp_path / "models")
    message = str(err.value)
    assert url in message and "offline" in message
    assert "uncased_L-12_H-768_A-12/tf1" in message and "bert_model.ckpt.index" in message


def test_every_published_name_is_known_and_listed(capsys, tmp_path):
    names = ["uncased_L-12_H-768_A-12", "uncased_L-24_H-1024_A-16", "cased_L-12_H-768_A-12",
             "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12", "wwm_uncased_L-24_H-1024_A-16",
             "wwm_cased_L-24_H-1024_A-16", "albert_base_v2", "albert_large_v2", "albert_xlarge_v2",
             "albert_xxlarge_v2"]
    assert sorted(spec.name for spec in google.GOOGLE_CHECKPOINTS.values()) == sorted(names)
    for spec in google.GOOGLE_CHECKPOINTS.values():
        assert spec.url.startswith("https://storage.googleapis.com/") and spec.url.endswith(spec.archive_name)
    assert cli_main(["models", "--models_dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in names + ["MiniLM-L6-H384-uncased"])
