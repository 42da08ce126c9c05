"""A model folder is data: configs naming code, and code-carrying files, are refused."""

import json

import pytest

from bertclf.safety import UnsafeModelError, check_preset_is_data


def preset(tmp_path, task):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "module": "keras_hub.src.models.bert.bert_backbone",
                "class_name": "BertBackbone",
                "registered_name": "keras_hub>BertBackbone",
                "config": {},
            }
        )
    )
    (tmp_path / "task.json").write_text(json.dumps(task))
    return tmp_path


def test_keras_hub_classes_pass(tiny_preset):
    # Every config of a saved backbone + tokenizer preset was read and passed.
    assert check_preset_is_data(tiny_preset) == ["config.json", "tokenizer.json", "metadata.json"]


def test_lambda_layer_refused(tmp_path):
    task = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {"module": "keras.layers", "class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}}
            ]
        },
    }
    with pytest.raises(UnsafeModelError, match=r"Lambda"):
        check_preset_is_data(preset(tmp_path, task))


def test_foreign_module_refused(tmp_path):
    task = {"module": "os", "class_name": "system", "config": {}}
    with pytest.raises(UnsafeModelError, match=r"refuses module 'os'"):
        check_preset_is_data(preset(tmp_path, task))


def test_foreign_registered_name_refused(tmp_path):
    task = {"class_name": "Evil", "registered_name": "evilpkg>Evil", "config": {}}
    with pytest.raises(UnsafeModelError, match=r"evilpkg>Evil"):
        check_preset_is_data(preset(tmp_path, task))


@pytest.mark.parametrize("name", ["weights.pkl", "model.keras", "saved_model.pb", "hook.py"])
def test_code_carrying_files_refused(tmp_path, name):
    folder = preset(tmp_path, {"class_name": "BertTextClassifier", "config": {}})
    (folder / name).write_bytes(b"x")
    with pytest.raises(UnsafeModelError, match=r"can run code"):
        check_preset_is_data(folder)


def test_symlink_refused(tmp_path):
    folder = preset(tmp_path, {"class_name": "BertTextClassifier", "config": {}})
    (folder / "link.json").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeModelError, match=r"symbolic links"):
        check_preset_is_data(folder)
