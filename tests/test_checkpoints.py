"""Resolving MODEL=: known names, folders of every kind, and a clear error for anything else."""

import pytest

from bertclf.pretrained import CheckpointError, catalog, known_names, resolve
from conftest import save_tiny_hf_bert
from tiny_tf1 import write_bert


def test_a_folder_resolves_by_its_files(tmp_path, tiny_preset):
    assert resolve(str(save_tiny_hf_bert(tmp_path / "hf"))).path == (tmp_path / "hf").resolve()
    assert resolve(str(tiny_preset)).path == tiny_preset.resolve()
    google = resolve(str(write_bert(tmp_path / "uncased_tiny")), tmp_path / "models")
    assert google.name == "uncased_tiny" and google.path.parent == (tmp_path / "models" / "pretrained" / "converted")


def test_unknown_name(tmp_path):
    with pytest.raises(CheckpointError, match=r"neither a known checkpoint .*MiniLM-L6-H384-uncased"):
        resolve("bert-huge", tmp_path)


def test_every_name_is_listed_once_and_nothing_is_cached_in_an_empty_folder(tmp_path):
    entries = catalog(tmp_path)
    assert [entry.name for entry in entries] == known_names()
    assert len(set(known_names())) == len(known_names()) == 12
    assert not any(entry.cached for entry in entries)
