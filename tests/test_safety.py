"""A model folder is data: configs naming code, and code-carrying files, are refused."""

import functools
import json
import os

import pytest

from bertclf import safety
from bertclf.errors import UnsafeModelError
from bertclf.safety import check_preset_is_data


def preset(tmp_path, task):
    tmp_path.mkdir(parents=True, exist_ok=True)
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
        "class_name": "BertTextClassifier",
        "config": {
            "layers": [
                {"module": "keras.layers", "class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}}
            ]
        },
    }
    with pytest.raises(UnsafeModelError, match=r"refuses to load class 'Lambda'"):
        check_preset_is_data(preset(tmp_path, task))


@pytest.mark.parametrize("module", ["os", "keras_anything.evil", "kerasx", "builtins"])
def test_foreign_module_refused(tmp_path, module):
    task = {"module": module, "class_name": "BertTextClassifier", "config": {}}
    with pytest.raises(UnsafeModelError, match=rf"refuses module '{module}'"):
        check_preset_is_data(preset(tmp_path, task))


@pytest.mark.parametrize("name", ["system", "Functional", "Dense", "TFSMLayer", ["BertBackbone"]])
def test_classes_outside_the_allowlist_refused(tmp_path, name):
    task = {"module": "keras.layers", "class_name": name, "config": {}}
    with pytest.raises(UnsafeModelError, match=r"refuses to load class"):
        check_preset_is_data(preset(tmp_path, task))


def test_foreign_registered_name_refused(tmp_path):
    task = {"class_name": "BertTextClassifier", "registered_name": "evilpkg>Evil", "config": {}}
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
    with pytest.raises(UnsafeModelError, match=r"link.json: a symbolic link"):
        check_preset_is_data(folder)


def test_fifos_devices_and_links_are_refused_before_anything_reads_them(tmp_path):
    folder = preset(tmp_path / "fifo", {"class_name": "BertTextClassifier", "config": {}})
    os.mkfifo(folder / "labels.json")  # open() on it would block the loader for good
    with pytest.raises(UnsafeModelError, match=r"labels.json: a FIFO"):
        check_preset_is_data(folder)
    folder = preset(tmp_path / "hard", {"class_name": "BertTextClassifier", "config": {}})
    (tmp_path / "outside.txt").write_text("secret")
    os.link(tmp_path / "outside.txt", folder / "vocab.txt")
    with pytest.raises(UnsafeModelError, match=r"vocab.txt: a hard link"):
        check_preset_is_data(folder)
    folder = preset(tmp_path / "dirlink", {"class_name": "BertTextClassifier", "config": {}})
    (folder / "assets").symlink_to("/etc")
    with pytest.raises(UnsafeModelError, match=r"assets: a symbolic link"):
        check_preset_is_data(folder)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        (json.dumps(functools.reduce(lambda inner, _: {"a": inner}, range(100), 0)), "nested deeper than 64 levels"),
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_or_deep_json_anywhere_is_a_clean_refusal(tmp_path, content, message):
    folder = preset(tmp_path, {"class_name": "BertTextClassifier", "config": {}})
    target = folder / "assets" / "extra.json"
    target.parent.mkdir()
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    with pytest.raises(UnsafeModelError, match=message):
        check_preset_is_data(folder)


def test_size_caps(tmp_path, monkeypatch):
    folder = preset(tmp_path, {"class_name": "BertTextClassifier", "config": {}})
    (folder / "model.weights.h5").write_bytes(b"\0" * 5000)
    with pytest.raises(UnsafeModelError, match=r"more than 4096 bytes"):
        check_preset_is_data(folder, max_folder_bytes=4096)
    monkeypatch.setattr(safety, "MAX_JSON_BYTES", 100)
    (folder / "metrics.json").write_text(json.dumps({"a": "b" * 200}))
    with pytest.raises(UnsafeModelError, match=r"metrics.json: \d+ bytes, more than the 100"):
        check_preset_is_data(folder)


def test_a_label_named_like_a_keras_key_is_only_data(tmp_path):
    folder = preset(tmp_path, {"class_name": "BertTextClassifier", "config": {}})
    (folder / "metrics.json").write_text(json.dumps({"per_class": {"class_name": {"recall": 1.0}}}))
    (folder / "labels.json").write_text(json.dumps(["class_name", "module"]))
    assert check_preset_is_data(folder) == ["config.json", "task.json"]


def test_keras_safe_mode_holds_even_after_a_process_turned_it_off():
    import keras
    from keras.src.saving import serialization_lib

    from bertclf.training.keras_engine import keras_safe_mode

    config = keras.saving.serialize_keras_object(keras.layers.Lambda(lambda x: x * 2))
    keras.config.enable_unsafe_deserialization()  # what some other library in the process may do
    try:
        with keras_safe_mode(), pytest.raises(ValueError, match=r"lambda"):
            keras.saving.deserialize_keras_object(config)
        assert serialization_lib.in_safe_mode() is False, "the process's own setting is restored after"
    finally:
        serialization_lib.SafeModeScope(None).__enter__()  # back to Keras's default for other tests
