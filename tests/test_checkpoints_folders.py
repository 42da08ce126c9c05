"""Hugging Face-format folders and KerasHub presets: recognised by their files, refused with the fix
when something is missing or would run code."""

import json

import pytest

from bertclf.errors import UnsafeModelError
from bertclf.pretrained import CheckpointError, resolve
from bertclf.pretrained.folders import inspect_folder
from conftest import save_tiny_hf_bert


def test_hf_folder_is_recognised_with_its_depth_and_positions(tmp_path):
    checkpoint = resolve(str(save_tiny_hf_bert(tmp_path / "hf")))
    assert (checkpoint.name, checkpoint.family, checkpoint.num_layers, checkpoint.max_sequence_length) == (
        "hf",
        "BERT",
        2,
        64,
    )


def test_pickle_only_hf_folder_is_refused(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match=r"no model.safetensors.*pytorch_model.bin.*never load"):
        resolve(str(folder))


def test_hf_folder_without_vocabulary(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    (folder / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match=r"no vocab.txt: the BERT tokenizer needs it"):
        resolve(str(folder))


def test_unsupported_model_type(tmp_path):
    folder = save_tiny_hf_bert(tmp_path / "hf")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match=r"model_type 'gpt2' is not supported"):
        resolve(str(folder))


def test_keras_hub_preset_folder(tiny_preset):
    checkpoint = inspect_folder(tiny_preset)
    assert (checkpoint.family, checkpoint.num_layers, checkpoint.max_sequence_length) == ("BERT", 2, 64)


def test_preset_of_another_backbone_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "module": "keras_hub.src.models.gpt2.gpt2_backbone",
                "class_name": "GPT2Backbone",
                "registered_name": "keras_hub>GPT2Backbone",
                "config": {"num_layers": 2},
            }
        )
    )
    with pytest.raises(UnsafeModelError, match=r"refuses to load class 'GPT2Backbone'; only the BERT, ALBERT"):
        inspect_folder(tmp_path)
