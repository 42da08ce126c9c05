"""Google's checkpoints by name and by folder: downloaded from a local server, verified, converted
once and cached; truncated archives and offline machines fail with what to do; a Google folder
trains, exports and serves on the fast graph."""

import functools
import http.server
import socket
import tarfile
import threading
import zipfile

import numpy as np
import pytest

from bertclf.cli import main as cli_main
from bertclf.pretrained import google, resolve
from bertclf.pretrained.google import GoogleCheckpoint, GoogleCheckpointError
from conftest import make_texts, train_tiny, write_csv
from tiny_tf1 import write_albert, write_bert


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
@pytest.mark.parametrize("family", ["BERT", "ALBERT"])
def test_trains_exports_and_reloads(family, tmp_path):
    from bertclf.inference.predictor import Predictor

    folder = write_bert(tmp_path / "bert_tiny") if family == "BERT" else write_albert(tmp_path / "albert_tiny")[0]
    texts, labels = make_texts(20)
    rows = list(zip(texts, labels, strict=True))
    _, exported, model_config = train_tiny(tmp_path, folder, rows, n_epochs=1, max_seq_len=16, max_learn_rate=1e-3)
    assert model_config["family"] == family
    assert (tmp_path / "models" / "pretrained" / "converted").is_dir(), "the conversion is cached"
    predictor = Predictor(exported, precision="fp32")  # compared with Keras to 1e-5 below
    labels_out, probabilities = predictor.predict(texts[:3])
    assert len(labels_out) == 3 and all(0 < p <= 1 for p in probabilities)
    assert predictor.engine == "onnx", "served on the fast graph (ALBERT: shared layers called repeatedly)"
    keras_path = Predictor(exported, engine="tensorflow")
    np.testing.assert_allclose(predictor.predict_proba(texts), keras_path.predict_proba(texts), atol=1e-5)


def test_max_seq_len_is_checked_against_the_checkpoint(tmp_path):
    from bertclf.config import TrainConfig
    from bertclf.errors import ConfigError
    from bertclf.training.run import train

    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", list(zip(texts, labels, strict=True)))
    cfg = TrainConfig(
        data=str(data),
        model=str(write_bert(tmp_path / "bert_tiny")),
        models_dir=str(tmp_path / "models"),
        max_seq_len=64,
    )
    with pytest.raises(
        ConfigError, match=r"^max_seq_len 64 is longer than the 32 positions bert_tiny was trained with; use 32 or less"
    ):
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
    assert checkpoint.learn_rate == (2e-5 if family == "ALBERT" else 1e-4)  # a 2-layer BERT is a small BERT
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
    with pytest.raises(GoogleCheckpointError, match=r"truncated or corrupt.*deleted it"):
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
    names = [
        "uncased_L-12_H-768_A-12",
        "uncased_L-24_H-1024_A-16",
        "cased_L-12_H-768_A-12",
        "cased_L-24_H-1024_A-16",
        "multi_cased_L-12_H-768_A-12",
        "wwm_uncased_L-24_H-1024_A-16",
        "wwm_cased_L-24_H-1024_A-16",
        "albert_base_v2",
        "albert_large_v2",
        "albert_xlarge_v2",
        "albert_xxlarge_v2",
    ]
    assert sorted(spec.name for spec in google.GOOGLE_CHECKPOINTS.values()) == sorted(names)
    for spec in google.GOOGLE_CHECKPOINTS.values():
        assert spec.url.startswith("https://storage.googleapis.com/") and spec.url.endswith(spec.archive_name)
    assert cli_main(["models", "--models_dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in [*names, "MiniLM-L6-H384-uncased"])
