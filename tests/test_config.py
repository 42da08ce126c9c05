"""Settings: one learning-rate policy, min <= max checked once the maximum is known, fast failure
on bad values, and the environment read only by the server's settings."""

import dataclasses

import pytest

from bertclf.config import LABEL_COLUMNS, TEXT_COLUMNS, PredictConfig, ServeConfig, TrainConfig, default_max_learn_rate
from bertclf.errors import ConfigError
from bertclf.pretrained import resolve
from conftest import save_tiny_hf_bert


@pytest.mark.parametrize(
    "family, layers, rate",
    [
        ("BERT", 6, 1e-4),  # MiniLM and other small BERTs
        ("BERT", 12, 5e-5),  # BERT-Base
        ("BERT", 24, 3e-5),  # BERT-Large, also a user's own folder
        ("ALBERT", 12, 2e-5),
        ("ALBERT", 24, 2e-5),
        ("DistilBERT", 6, 5e-5),
    ],
)
def test_one_policy_decides_the_default_learning_rate(family, layers, rate):
    assert default_max_learn_rate(family, layers) == rate


def test_a_users_24_layer_bert_folder_gets_the_24_layer_rate(tmp_path):
    checkpoint = resolve(str(save_tiny_hf_bert(tmp_path / "my-bert", layers=24)))
    assert (checkpoint.num_layers, checkpoint.learn_rate) == (24, 3e-5)
    resolved = TrainConfig().with_max_learn_rate(checkpoint.family, checkpoint.num_layers)
    assert resolved.max_learn_rate == 3e-5


def test_min_learn_rate_is_checked_against_the_maximum_actually_used():
    # The default model's maximum is 1e-4, so 2e-5 is a valid floor (it was refused against 1e-5).
    cfg = TrainConfig(min_learn_rate=2e-5)
    assert cfg.with_max_learn_rate("BERT", 6).max_learn_rate == 1e-4
    with pytest.raises(
        ConfigError,
        match=r"min_learn_rate 0.0002 is above the default max_learn_rate 0.0001 of "
        r"this 6-layer BERT checkpoint; lower min_learn_rate or set max_learn_rate",
    ):
        TrainConfig(min_learn_rate=2e-4).with_max_learn_rate("BERT", 6)
    with pytest.raises(ConfigError, match=r"min_learn_rate 0.001 is above max_learn_rate 0.0001"):
        TrainConfig(min_learn_rate=1e-3, max_learn_rate=1e-4)
    # A value the user set wins over the policy.
    assert TrainConfig(max_learn_rate=7e-5).with_max_learn_rate("ALBERT", 12).max_learn_rate == 7e-5


@pytest.mark.parametrize(
    "settings, fragment",
    [
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(max_seq_len=4), "max_seq_len must be auto or between 8 and 4096"),
        (dict(warmup_proportion=1.0), "warmup_proportion must be in [0, 1)"),
        (dict(head_init="zeros"), "head_init must be probe or random"),
        (dict(validation_split=0.5, test_split=0.5), "keep their sum below 0.9"),
        (dict(validation_split=0.0), "validation_split is 0 but no validation_data"),
    ],
)
def test_bad_training_settings_name_the_fix(settings, fragment):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**settings)
    assert fragment in str(err.value)


def test_column_help_names_every_column_we_guess():
    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
    assert all(name in help_text["text_column"] for name in TEXT_COLUMNS) and "content" in help_text["text_column"]
    assert all(name in help_text["label_column"] for name in LABEL_COLUMNS) and "labels" in help_text["label_column"]


def test_serve_settings_from_the_environment_then_overrides():
    cfg = ServeConfig.from_env(
        {"BERTCLF_PORT": "8080", "BERTCLF_PRECISION": "int8", "BERTCLF_MODEL_DIR": ""}, workers=3
    )
    assert (cfg.port, cfg.precision, cfg.model_dir, cfg.workers) == (8080, "int8", None, 3)
    assert isinstance(cfg, PredictConfig), "serve takes every predict setting"
    with pytest.raises(ConfigError, match=r"^BERTCLF_PORT='http': expected a whole number$"):
        ServeConfig.from_env({"BERTCLF_PORT": "http"})
    with pytest.raises(ConfigError, match=r"^precision must be one of auto, fp32, int8, bf16, got 'fp16'$"):
        ServeConfig.from_env({"BERTCLF_PRECISION": "fp16"})
    # A yes/no variable names itself and the words it takes (once: "is not a valid parse_bool").
    with pytest.raises(ConfigError, match=r"^BERTCLF_PROTECT_METRICS: expected true or false .*got 'maybe'$"):
        ServeConfig.from_env({"BERTCLF_PROTECT_METRICS": "maybe"})
    with pytest.raises(ConfigError, match=r"^BERTCLF_FEEDBACK_MAX_ROWS='lots': expected a whole number$"):
        ServeConfig.from_env({"BERTCLF_FEEDBACK_MAX_ROWS": "lots"})


def test_max_seq_len_auto_is_the_length_most_training_texts_fit():
    from bertclf.config import choose_max_seq_len, seq_len_setting

    assert seq_len_setting("auto") == "auto" and seq_len_setting(" AUTO ") == "auto" and seq_len_setting("96") == 96
    assert TrainConfig(max_seq_len="auto").max_seq_len == "auto"
    lengths = [10] * 95 + [500] * 5  # 95% fit in 10 tokens
    assert choose_max_seq_len(lengths, 512) == 32  # rounded up to 32, never below it
    assert choose_max_seq_len([70] * 90 + [300] * 10, 512) == 320
    assert choose_max_seq_len([70] * 100, 64) == 64  # never past the model's positions
    assert choose_max_seq_len([], 512) == 128
