"""Model folders appear whole or not at all; latest_model_config.json is replaced atomically;
--model_dir names a folder inside models/ in any of its documented spellings."""

import json
from datetime import datetime

import pytest

from bertclf import files
from bertclf.errors import RegistryError
from bertclf.registry import (
    chosen_model_folder,
    find_model_folder,
    latest_model_folder,
    load_labels,
    run_folder,
    save_labels,
    update_latest,
)

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
    with pytest.raises(KeyboardInterrupt), run_folder(tmp_path, "m", CREATED) as (work, _):
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

    monkeypatch.setattr(files.os, "fsync", crash)  # the temp file is written, not yet in place
    with pytest.raises(KeyboardInterrupt):
        update_latest(tmp_path, final, {"id": "new"})
    assert (tmp_path / "latest_model_config.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_pointer_outside_models_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "latest_model_config.json").write_text(json.dumps({"model_dir": "../elsewhere"}))
    with pytest.raises(RegistryError, match=r"outside"):
        latest_model_folder(tmp_path / "models")


@pytest.mark.parametrize("content", ["{not json", json.dumps({"model": 1}), json.dumps({"model_dir": 5})])
def test_broken_pointer_names_the_fix(tmp_path, content):
    (tmp_path / "latest_model_config.json").write_text(content)
    with pytest.raises(RegistryError, match='"model_dir": "trained/<folder>"'):
        latest_model_folder(tmp_path)


def test_missing_pointer_says_train_first(tmp_path):
    with pytest.raises(RegistryError, match=r"make train"):
        latest_model_folder(tmp_path)


def test_pointer_to_a_folder_without_model_config_is_refused(tmp_path):
    (tmp_path / "trained" / "x").mkdir(parents=True)
    (tmp_path / "latest_model_config.json").write_text(json.dumps({"model_dir": "trained/x"}))
    with pytest.raises(RegistryError, match=r"x is not a trained model folder \(no model_config.json\)"):
        latest_model_folder(tmp_path)


def test_model_dir_is_found_in_every_documented_spelling(tmp_path, monkeypatch):
    models = tmp_path / "models"
    final = finished(models)
    monkeypatch.chdir(tmp_path)
    expected = final.resolve()
    for spelling in (
        "models/trained/20260106-220623_m",
        "trained/20260106-220623_m",
        "20260106-220623_m",
        str(final.resolve()),
        "./models/trained/20260106-220623_m/",
    ):
        assert find_model_folder("models", spelling) == expected, spelling
    # From another folder: the path from there, or the spellings inside models_dir.
    monkeypatch.chdir(models / "trained")
    assert find_model_folder(models, "20260106-220623_m") == expected
    assert find_model_folder(models, "trained/20260106-220623_m") == expected
    update_latest(models, final, {"id": "x"})
    assert chosen_model_folder(models) == chosen_model_folder(models, "20260106-220623_m") == expected


def test_model_dir_outside_models_or_missing_is_refused(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    outside = finished(tmp_path / "elsewhere")
    with pytest.raises(RegistryError, match=r"lies outside .*models.*set models_dir"):
        find_model_folder(models, str(outside))
    with pytest.raises(RegistryError, match=r"no trained model folder 'nope' .*ls .*trained"):
        find_model_folder(models, "nope")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError, match=r"lies outside"):
        find_model_folder("models", "../elsewhere/trained/20260106-220623_m")


def test_two_spellings_naming_two_models_is_refused(tmp_path, monkeypatch):
    models = tmp_path / "models"
    first = finished(models, "a")  # models/trained/20260106-220623_a
    # models/trained/trained/20260106-220623_a: "trained/<name>" now names a second folder too
    (models / "trained" / "trained" / first.name).mkdir(parents=True)
    (models / "trained" / "trained" / first.name / "model_config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError, match=r"could mean"):
        find_model_folder(models, f"trained/{first.name}")


def test_labels_roundtrip_and_refuse_garbage(tmp_path):
    save_labels(["b", "a"], tmp_path / "labels.json")
    assert load_labels(tmp_path / "labels.json") == ["b", "a"]
    for bad in (json.dumps({"0": "a"}), json.dumps(["only"]), json.dumps(["a", 1]), "[" * 5000, "{not json"):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(RegistryError, match=r"bad.json: (expected a JSON list|not a readable JSON)"):
            load_labels(tmp_path / "bad.json")
