"""--refit all (every label the user gave), global-norm clipping and label smoothing."""

import json

import numpy as np
import pytest

from bertclf.config import ConfigError, TrainConfig

ZEBRA = "zebra zebra zebra zebra"


@pytest.mark.integration  # trains three models
def test_refit_all_learns_from_the_held_out_splits_and_says_so(tmp_path, tiny_preset, capsys):
    """Training rows without the word zebra; validation and test rows of zebra alone. The first run
    (no refit) shows which label its model finds least likely for ZEBRA; the second gives the held-out
    zebra rows that label. Its split model is the first's (same training rows and seed), so only a
    model that learned from the validation and test splits says that label."""
    from bertclf.inference.predictor import Predictor
    from conftest import make_texts, train_tiny, write_csv

    texts, labels = make_texts(30, seed=3)
    train = [(t, label) for t, label in zip(texts, labels, strict=True) if "zebra" not in t]
    texts, labels = make_texts(4, seed=4)
    other = [(t, label) for t, label in zip(texts, labels, strict=True) if "zebra" not in t]

    def run(refit, zebra_label):
        root = tmp_path / refit
        root.mkdir()
        held = [(" ".join(["zebra"] * n), zebra_label) for n in range(2, 8)]
        validation = write_csv(root / "validation.csv", held[:3] + other[:6])
        test = write_csv(root / "test.csv", held[3:] + other[6:])
        _, folder, model_config = train_tiny(
            root, tiny_preset, train, validation_data=str(validation), test_data=str(test), refit=refit
        )
        predictor = Predictor(folder, precision="fp32")
        return folder, model_config, dict(zip(predictor.classes, predictor.predict_proba([ZEBRA])[0], strict=True))

    _, _, before = run("none", "tool")
    least = min(before, key=before.get)
    folder, model_config, after = run("all", least)
    assert after[least] > 0.5 and after[least] > before[least] + 0.3, (least, before, after)

    # What the folder says: the test numbers are the split model's; the refit's own history beside them.
    metrics = json.loads((folder / "metrics.json").read_text())
    record = model_config["training"]["refit"]
    assert metrics["refit"] == record
    assert record["texts"] == len(train) + 6 + len(other)
    assert record["epochs"] == model_config["training"]["best_epoch"] == len(record["history"]["loss"])
    assert "the test metrics describe the model trained on the training split" in record["note"]
    assert model_config["hyperparameters"]["refit"] == "all"
    assert (folder / "logs" / "refit").is_dir()
    assert any(row["stage"].startswith("fit: refit epoch") for row in metrics["time"]["stages"])

    # `evaluate` rebuilds the test split, which this model trained on: it says so.
    from bertclf.cli import main

    assert main(["evaluate", "--models_dir", str(folder.parent.parent), "--precision", "fp32"]) == 0
    assert "this model was refitted on train + validation + test" in capsys.readouterr().out


@pytest.mark.integration  # trains a model
def test_label_smoothing_global_clipping_and_a_moving_average_train_export_and_load(tmp_path, tiny_preset):
    from bertclf.inference.predictor import Predictor
    from conftest import make_texts, train_tiny

    texts, labels = make_texts(20, seed=5)
    _, folder, model_config = train_tiny(
        tmp_path,
        tiny_preset,
        zip(texts, labels, strict=True),
        n_epochs=2,
        label_smoothing=0.1,
        gradient_clipping="global",
        ema=0.9,
    )
    assert model_config["hyperparameters"]["label_smoothing"] == 0.1
    assert model_config["hyperparameters"]["ema"] == 0.9
    assert model_config["hyperparameters"]["gradient_clipping"] == "global"
    keras_model = Predictor(folder, engine="tensorflow")  # the Keras model loads under safe mode
    graph = Predictor(folder, precision="fp32")
    np.testing.assert_allclose(keras_model.predict_proba(texts[:4]), graph.predict_proba(texts[:4]), atol=1e-5)


def test_smoothed_sparse_crossentropy_is_keras_label_smoothing_on_one_hot_targets():
    import keras

    from bertclf.training.model import training_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32) * 3
    labels = np.array([0, 3, 1, 2, 2, 0])
    ours = training_loss(multi_label=False, label_smoothing=0.1)(labels, logits)
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    expected = keras_loss(np.eye(4, dtype=np.float32)[labels], logits)
    np.testing.assert_allclose(float(ours), float(expected), rtol=1e-6)
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert float(ours) != pytest.approx(float(plain))  # smoothing changes the loss
    assert isinstance(training_loss(False, 0.0), keras.losses.SparseCategoricalCrossentropy)


@pytest.mark.parametrize(
    ("setting", "clipnorm", "global_clipnorm"), [("tensor", 1.0, None), ("global", None, 1.0), ("none", None, None)]
)
def test_gradient_clipping_setting_picks_the_optimizer_clip(tiny_preset, setting, clipnorm, global_clipnorm):
    import keras_hub

    from bertclf.training.model import compile_classifier

    classifier = keras_hub.models.TextClassifier.from_preset(str(tiny_preset), num_classes=3)
    compile_classifier(classifier, 1e-3, gradient_clipping=setting)
    assert classifier.optimizer.clipnorm == clipnorm
    assert classifier.optimizer.global_clipnorm == global_clipnorm


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1), got 1.0 (try 0.1)"),
        ({"refit": "yes"}, "refit must be one of none, all, got 'yes'"),
        ({"ema": 1.0}, "ema must be in [0, 1), got 1.0 (try 0.99)"),
        ({"gradient_clipping": "layer"}, "gradient_clipping must be one of tensor, global, none, got 'layer'"),
    ],
)
def test_bad_settings_say_what_is_allowed(settings, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(data="x.csv", **settings)
    assert message in str(err.value)
