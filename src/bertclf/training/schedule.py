"""Learning rate: linear warmup to a peak, then exponential decay to a floor at the last step."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bertclf")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly to `max_learn_rate` over `warmup_steps`, then decays exponentially so the
    last step (`total_steps - 1`) uses exactly `min_learn_rate`.

    Args:
        max_learn_rate: peak rate, reached at the last warmup step.
        min_learn_rate: rate at the final step.
        total_steps: number of optimizer steps in the whole run.
        warmup_steps: steps of linear warmup (0 starts at the peak).
    """

    def __init__(self, max_learn_rate, min_learn_rate, total_steps, warmup_steps):
        self.max_learn_rate = float(max_learn_rate)
        self.min_learn_rate = float(min_learn_rate)
        self.total_steps = int(max(total_steps, 1))
        self.warmup_steps = int(min(max(warmup_steps, 0), self.total_steps - 1))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        # Step 0 already trains, so warmup reaches the peak at step warmup_steps - 1.
        warm = self.max_learn_rate * (step + 1.0) / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - 1 - self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        decay = self.max_learn_rate * ops.power(self.min_learn_rate / self.max_learn_rate, progress)
        return ops.where(step < self.warmup_steps, warm, decay)

    def get_config(self):
        return {
            "max_learn_rate": self.max_learn_rate,
            "min_learn_rate": self.min_learn_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def build_schedule(cfg, steps_per_epoch):
    """The schedule for a TrainConfig: warmup is `warmup_proportion` of all steps of all epochs."""
    total = steps_per_epoch * cfg.n_epochs
    return WarmupExponentialDecay(cfg.max_learn_rate, cfg.min_learn_rate, total, round(cfg.warmup_proportion * total))
