"""What the api image carries: one model folder (the latest, or MODEL_DIR in any --model_dir
spelling) and a pointer to it; nothing when no model was trained; never a folder holding code."""

import json
import shutil

import numpy as np
import pytest

from bertclf.errors import RegistryError, UnsafeModelError
from bertclf.registry import latest_model_folder
from bertclf.serve.bundle import bundle, main


@pytest.fixture
def project(tmp_path, trained_models, monkeypatch):
    models, folder = trained_models
    shutil.copytree(models, tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "models", folder.name


def test_bundles_the_latest_model_with_its_pointer(project, tmp_path):
    models, name = project
    copied = bundle(models, tmp_path / "bundle")
    assert copied == tmp_path / "bundle" / "trained" / name
    assert latest_model_folder(tmp_path / "bundle") == copied.resolve()
    assert [p.name for p in (tmp_path / "bundle" / "trained").iterdir()] == [name]
    # What serving reads, not the Keras weights or the logs; and it serves the same answers.
    assert not list(copied.glob("*.weights.h5")) and not (copied / "logs").exists()
    from bertclf.inference.predictor import Predictor

    texts = ["apple cat", "saw hammer", "lemon"]
    served = Predictor(copied).predict_proba(texts)
    np.testing.assert_allclose(served, Predictor(models / "trained" / name).predict_proba(texts), atol=1e-6)


def test_a_folder_without_its_serving_graph_is_refused(project, tmp_path):
    models, name = project
    (models / "trained" / name / "serving" / "model.onnx").unlink()
    with pytest.raises(RegistryError, match=r"has no serving/model.onnx, which the api image serves.*export-onnx"):
        bundle(models, tmp_path / "bundle")


@pytest.mark.parametrize("spelling", ["models/trained/{}", "trained/{}", "{}"])
def test_model_dir_in_every_spelling(project, tmp_path, spelling):
    models, name = project
    (models / "latest_model_config.json").unlink()
    copied = bundle(models, tmp_path / "bundle", spelling.format(name))
    assert copied is not None and copied.name == name
    assert json.loads((tmp_path / "bundle" / "latest_model_config.json").read_text())["model_dir"] == f"trained/{name}"


def test_no_model_bundles_nothing_and_a_wrong_name_fails(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    assert bundle(tmp_path / "models", tmp_path / "bundle") is None
    assert main([str(tmp_path / "models"), str(tmp_path / "b2"), "nope"]) == 1
    assert "no trained model folder 'nope'" in capsys.readouterr().err
    with pytest.raises(RegistryError):
        bundle(tmp_path / "models", tmp_path / "b3", "nope")


def test_a_folder_holding_code_is_refused_at_build_time(project, tmp_path):
    models, name = project
    (models / "trained" / name / "hook.pkl").write_bytes(b"cos\nsystem\n")
    with pytest.raises(UnsafeModelError, match=r"hook.pkl: refuses .pkl files"):
        bundle(models, tmp_path / "bundle")
    assert main([str(models), str(tmp_path / "b2")]) == 1
