"""A trained folder loads, predicts in input order, reloads to the same outputs, and runs on ONNX
with a TensorFlow fallback."""

import json
import shutil

import numpy as np
import pytest

from bertclf.config import PredictConfig
from bertclf.errors import ConfigError, RegistryError
from bertclf.inference.predictor import Predictor
from bertclf.inference.runtime import SERVING_GRAPH
from bertclf.training import onnx_writer as graph_module
from bertclf.training.onnx_writer import UnsupportedModel
from bertclf.training.pipeline import encode
from conftest import make_texts

TEXTS = ["apple cat dog horse tiger whale zebra saw drill hammer", "saw", "lemon mango", "the big cat", "hammer"]


def test_predictor_uses_the_folders_graph_and_falls_back_to_tensorflow(trained_models, tmp_path, monkeypatch):
    _, folder = trained_models
    fast = Predictor(folder, precision="fp32")
    assert (fast.engine, fast.precision, fast.classifier) == ("onnx", "fp32", None), "no Keras model loaded"
    slow = Predictor(folder, engine="tensorflow")
    np.testing.assert_allclose(fast.predict_proba(TEXTS), slow.predict_proba(TEXTS), atol=1e-5)

    # A folder without a graph whose backbone has none either (as DistilBERT) runs on TensorFlow.
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    (old / SERVING_GRAPH).unlink()

    def unsupported(*args, **kwargs):
        raise UnsupportedModel("no ONNX graph for AlbertBackbone yet")

    monkeypatch.setattr(graph_module, "build_graph", unsupported)
    fallback = Predictor(old)
    assert fallback.engine == "tensorflow"
    np.testing.assert_allclose(fallback.predict_proba(TEXTS), slow.predict_proba(TEXTS), atol=1e-6)
    with pytest.raises(ConfigError, match=r"^engine onnx: no ONNX graph for AlbertBackbone yet; use engine auto"):
        Predictor(old, engine="onnx")
    with pytest.raises(ConfigError, match=r"int8 needs the ONNX engine"):
        Predictor(old, precision="int8")


def test_max_seq_len_override_truncates(trained_models):
    _, folder = trained_models
    short = Predictor(folder, max_seq_len=8)
    assert short._encode(["apple " * 50]).lengths[0] == 8
    assert len(short.predict(["apple " * 50])[0]) == 1
    with pytest.raises(ConfigError, match=r"max_seq_len 65 is longer than the 64 positions this model has; use 64"):
        Predictor(folder, max_seq_len=65)


def test_reload_gives_identical_predictions(tiny_run):
    cfg, folder, _ = tiny_run
    texts, _ = make_texts(3, seed=5)
    first = Predictor(folder)
    again = Predictor.latest(cfg.models_dir)
    np.testing.assert_allclose(first.predict_proba(texts), again.predict_proba(texts), atol=1e-6)
    labels, probabilities = first.predict(texts)
    assert set(labels) <= {"animal", "fruit", "tool"} and all(0 < p <= 1 for p in probabilities)
    assert first.predict_proba([]).shape == (0, 3)


def test_from_config_takes_the_folder_in_any_spelling(trained_models, monkeypatch):
    models, folder = trained_models
    monkeypatch.chdir(models.parent)
    for spelling in (f"{models.name}/trained/{folder.name}", f"trained/{folder.name}", folder.name):
        chosen = Predictor.from_config(PredictConfig(models_dir=models.name, model_dir=spelling, precision="int8"))
        assert (chosen.folder, chosen.precision) == (folder.resolve(), "int8")


def test_labels_that_do_not_match_the_output_layer_are_refused(trained_models, tmp_path):
    _, folder = trained_models
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    (copy / "labels.json").write_text(json.dumps(["animal", "fruit"]))
    with pytest.raises(RegistryError, match=r"model(.int8)?.onnx outputs 3 classes but labels.json names 2"):
        Predictor(copy)
    with pytest.raises(RegistryError, match=r"labels.json names 2 classes but the model outputs 3"):
        Predictor(copy, engine="tensorflow")


def test_the_served_graph_gives_the_keras_models_probabilities_on_the_test_split(tiny_run):
    from bertclf.training.data import load_splits

    cfg, folder, _ = tiny_run
    texts = load_splits(cfg).test.texts
    served, keras = Predictor(folder, precision="fp32"), Predictor(folder, engine="tensorflow")
    assert served.engine == "onnx" and served.classifier is None, "from serving/model.onnx, no Keras model"
    np.testing.assert_allclose(served.predict_proba(texts), keras.predict_proba(texts), atol=1e-4)


@pytest.mark.parametrize("engine", ["onnx", "tensorflow"])
def test_bert_folders_tokenize_without_tensorflow_to_the_same_probabilities(trained_models, engine):
    from bertclf.inference.batches import predict_in_order
    from bertclf.training.pipeline import traced_preprocessor

    predictor = Predictor(trained_models[1], engine=engine, max_seq_len=16)
    keras = predictor if engine == "tensorflow" else Predictor(trained_models[1], engine="tensorflow", max_seq_len=16)
    texts = [*TEXTS, "Apple, CAT!", "", "zebra " * 40, "中文 émoji 👍 \u200b"]
    through_keras_hub = encode(traced_preprocessor(keras.preprocessor), texts)
    expected = predict_in_order(keras._forward, through_keras_hub, 64)
    assert np.array_equal(predictor._encode(texts).features["token_ids"], through_keras_hub.features["token_ids"])
    np.testing.assert_allclose(predictor.predict_proba(texts), expected, atol=1e-5)


def test_a_distilbert_folder_tokenizes_without_tensorflow_to_the_same_probabilities(tmp_path):
    """DistilBERT's tokenizer is BERT's WordPiece; its model takes no segment_ids."""
    import keras_hub

    from bertclf.inference.batches import predict_in_order
    from bertclf.training.pipeline import traced_preprocessor
    from conftest import VOCAB

    folder = tmp_path / "distil"
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=VOCAB, lowercase=True)
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8, max_sequence_length=16
    )
    keras_hub.models.DistilBertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor).save_to_preset(
        str(folder)
    )
    (folder / "labels.json").write_text(json.dumps(["a", "b"]))
    (folder / "model_config.json").write_text(json.dumps({"name": "DistilBERT test"}))
    predictor = Predictor(folder)
    assert predictor.engine == "onnx"  # the graph built in memory: this folder was saved without one
    keras = Predictor(folder, engine="tensorflow")
    texts = [*TEXTS, "Apple, CAT!", "", "zebra " * 40]
    through_keras_hub = encode(traced_preprocessor(keras.preprocessor), texts)
    assert set(predictor._encode(texts).features) == set(through_keras_hub.features) == {"token_ids", "padding_mask"}
    assert np.array_equal(predictor._encode(texts).features["token_ids"], through_keras_hub.features["token_ids"])
    expected = predict_in_order(keras._forward, through_keras_hub, 64)
    np.testing.assert_allclose(predictor.predict_proba(texts), expected, atol=1e-5)
