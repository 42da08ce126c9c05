"""The learning-rate schedule: linear warmup to the peak, exponential decay to the floor."""

import numpy as np
import pytest

from bertclf.config import TrainConfig
from bertclf.errors import ConfigError
from bertclf.training.schedule import WarmupExponentialDecay, build_schedule


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in range(steps)])


def test_shape_warmup_peak_and_final_value():
    schedule = WarmupExponentialDecay(1e-3, 1e-6, total_steps=100, warmup_steps=10)
    lr = rates(schedule, 100)
    assert np.all(np.diff(lr[:10]) > 0), "warmup rises"
    assert lr[0] == pytest.approx(1e-4)
    assert lr[9] == pytest.approx(1e-3) and lr.max() == pytest.approx(1e-3)
    assert np.all(np.diff(lr[10:]) < 0), "decay falls monotonically"
    assert lr[-1] == pytest.approx(1e-6, rel=1e-4)
    ratios = lr[11:] / lr[10:-1]
    assert np.allclose(ratios, ratios[0], rtol=1e-3), "decay is exponential (constant ratio)"


def test_no_warmup_starts_at_peak():
    lr = rates(WarmupExponentialDecay(2e-5, 1e-7, total_steps=20, warmup_steps=0), 20)
    assert lr[0] == pytest.approx(2e-5) and lr[-1] == pytest.approx(1e-7, rel=1e-4)


def test_built_from_config_over_all_epochs():
    cfg = TrainConfig(n_epochs=4, warmup_proportion=0.25, max_learn_rate=1e-4, min_learn_rate=1e-6)
    schedule = build_schedule(cfg, steps_per_epoch=10)
    assert schedule.total_steps == 40 and schedule.warmup_steps == 10
    assert WarmupExponentialDecay(**schedule.get_config()).get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(min_learn_rate=1e-3, max_learn_rate=1e-4), "min_learn_rate"),
        (dict(warmup_proportion=1.5), "warmup_proportion"),
        (dict(batch_size=0), "batch_size"),
        (dict(validation_split=0.5, test_split=0.5), "too little to train on"),
    ],
)
def test_bad_settings_fail_fast(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)
