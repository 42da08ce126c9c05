"""Where a training run's time goes: each stage's wall time, the fit's epochs apart, as a table
printed at the end of `make train` and a record in the model folder's metrics.json."""

import contextlib
import re
import time
from collections.abc import Callable, Iterator

import keras

FIT = "fit"  # the stages whose names start with this are the fit itself (training steps, validation)


class Stages:
    """Wall time per named stage, in the order they first ran; a stage run twice adds up."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.started = clock()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.add(name, self.clock() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def record(self) -> dict:
        """{"wall_seconds", "fit_seconds", "other_share", "stages": [{"stage", "seconds", "share"}]};
        time no stage claims is the stage "other"."""
        wall = self.clock() - self.started
        seconds = dict(self.seconds)
        seconds["other"] = max(wall - sum(seconds.values()), 0.0)
        fit = sum(s for name, s in seconds.items() if name.startswith(FIT))
        return {
            "wall_seconds": round(wall, 2),
            "fit_seconds": round(fit, 2),
            "other_share": round(1 - fit / wall, 4) if wall > 0 else 0.0,
            "stages": [
                {"stage": name, "seconds": round(s, 2), "share": round(s / wall, 4) if wall > 0 else 0.0}
                for name, s in seconds.items()
            ],
        }


def table(record: dict) -> str:
    """The record as a plain-text table, the fit's epochs summed into one line per kind."""
    rows: dict[str, list[float]] = {}
    for row in record["stages"]:
        name = row["stage"]
        epoch = re.fullmatch(rf"{FIT}: (refit )?epoch \d+ (\w+)", name)
        if epoch:  # "fit: epoch 3 training" -> "fit: training (N epochs)"; "fit: refit epoch 2 training" likewise
            name = f"{FIT}: {epoch.group(1) or ''}{epoch.group(2)}"
        rows.setdefault(name, []).append(row["seconds"])
    wall = record["wall_seconds"] or 1.0
    width = max(len(name) for name in rows) + 12
    lines = [f"{'stage':<{width}}{'seconds':>9}{'share':>8}"]
    for name, values in rows.items():
        label = f"{name} ({len(values)} epochs)" if name.startswith(f"{FIT}:") and len(values) > 1 else name
        lines.append(f"{label:<{width}}{sum(values):>9.1f}{100 * sum(values) / wall:>7.1f}%")
    lines.append(f"{'total':<{width}}{record['wall_seconds']:>9.1f}{100.0:>7.1f}%")
    lines.append(f"everything but the fit: {100 * record['other_share']:.1f}% of the run")
    return "\n".join(lines)


class EpochTimes(keras.callbacks.Callback):
    """Each epoch's training steps and its validation pass as stages "fit: epoch N training" and
    "fit: epoch N validation" (N from 1); `refit`: "fit: refit epoch N training" (--refit all)."""

    def __init__(self, stages: Stages, refit: bool = False):
        super().__init__()
        self.stages = stages
        self.label = "refit epoch" if refit else "epoch"
        self._epoch, self._phase, self._start = 0, "", 0.0

    def _close(self) -> None:
        if self._phase:
            self.stages.add(f"{FIT}: {self.label} {self._epoch} {self._phase}", time.perf_counter() - self._start)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._phase, self._start = epoch + 1, "training", time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._phase == "training":  # fit's validation; evaluate() outside an epoch has nothing to close
            self._close()
            self._phase, self._start = "validation", time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._close()
        self._phase = ""
