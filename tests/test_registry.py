"""Model folders appear whole or not at all; latest_model_config.json is replaced atomically."""

import json
from datetime import datetime

import pytest

from bertclf import registry
from bertclf.registry import (RegistryError, latest_model_folder, resolve_model_folder, run_folder,
                              update_latest, write_json_atomic)

CREATED = datetime(2026, 1, 6, 22, 6, 23)


def finished(models_dir, name="m"):
    with run_folder(models_dir, name, CREATED) as (work, final):
        (work / "model_config.json").write_text("{}")
    return final


def test_run_folder_is_renamed_when_complete(tmp_path):
    final = finished(tmp_path)
    assert final.name == "20260106-220623_m" and (final / "model_config.json").is_file()
    assert finished(tmp_path).name == "20260106-220623_m-2"  # same second: a new folder, not an overwrite


def test_failed_run_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with run_folder(tmp_path, "m", CREATED) as (work, _):
            (work / "partial.h5").write_text("half")
            raise KeyboardInterrupt
    assert list((tmp_path / "trained").iterdir()) == []


def test_latest_points_at_folder_and_keeps_config(tmp_path):
    final = finished(tmp_path)
    update_latest(tmp_path, final, {"id": "abc"})
    value = json.loads((tmp_path / "latest_model_config.json").read_text())
    assert value == {"model_dir": "trained/20260106-220623_m", "id": "abc"}
    assert latest_model_folder(tmp_path) == final.resolve()


def test_interrupted_write_keeps_previous_latest(tmp_path, monkeypatch):
    final = finished(tmp_path)
    update_latest(tmp_path, final, {"id": "old"})
    before = (tmp_path / "latest_model_config.json").read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry.json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        update_latest(tmp_path, final, {"id": "new"})
    assert (tmp_path / "latest_model_config.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_atomic_json_respects_umask(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").stat().st_mode & 0o044 == 0o044  # readable by others, like any file


def test_pointer_outside_models_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "latest_model_config.json").write_text(json.dumps({"model_dir": "../elsewhere"}))
    with pytest.raises(RegistryError, match="outside"):
        latest_model_folder(tmp_path / "models")


@pytest.mark.parametrize("content", ["{not json", json.dumps({"model": 1}), json.dumps({"model_dir": 5})])
def test_broken_pointer_names_the_fix(tmp_path, content):
    (tmp_path / "latest_model_config.json").write_text(content)
    with pytest.raises(RegistryError, match='"model_dir": "trained/<folder>"'):
        latest_model_folder(tmp_path)


def test_missing_pointer_says_train_first(tmp_path):
    with pytest.raises(RegistryError, match="make train"):
        latest_model_folder(tmp_path)


def test_folder_without_model_config_is_refused(tmp_path):
    (tmp_path / "trained" / "x").mkdir(parents=True)
    with pytest.raises(RegistryError, match="not a trained model folder"):
        resolve_model_folder(tmp_path, "trained/x")
