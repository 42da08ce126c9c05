"""Training that survives interruption (a kill, a preempted VM, a closed laptop, an OOM).

A run keeps its fit's state in a run folder outside models/trained/, written at each epoch end and
every `checkpoint_every` steps:

    models/runs/<model>-<fingerprint>/
        state.json                  where the fit is, early stopping's state, the history so far;
                                    written last and atomically: what it names is the checkpoint
        fit-<epoch>-<step>.weights.h5   the model with the optimizer's moments and step count
                                    (Keras's own weights file: HDF5 arrays, no code)
        best-<epoch>.npz            early stopping's best weights (numpy arrays, read without pickle)
        logs/                       TensorBoard, copied into the model folder at the export
        lock                        held by the process training this run

`make train` again with the same data and options finds the folder by its fingerprint (the data's
texts and labels as split, every option that changes the fit, and the bertclf version) and
continues where the checkpoint left off: the learning rate from the optimizer's restored step
count, the dropout generators from their saved states, and the data order because each epoch's
order depends on (seed, epoch) only (pipeline.epoch_generator) and a resumed epoch skips the
batches it already trained on.
The folder is removed once the model is exported; an unfinished export (a half-written
`.incomplete-` folder) is removed by the next run.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bertclf import __version__
from bertclf.config import TrainConfig
from bertclf.errors import ConfigError
from bertclf.files import read_json_object, write_json_atomic
from bertclf.registry import INCOMPLETE_PREFIX, folder_slug

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
LOGS_DIR = "logs"
FORMAT = 1
# Options that do not change what the fit computes: a run may resume with other values of these.
# The data files are fingerprinted by their content as split (a moved file still resumes).
NOT_FINGERPRINTED = frozenset(
    ["resume", "checkpoint_every", "devices", "models_dir", "data", "validation_data", "test_data", "feedback_db"]
)


class RunBusy(ConfigError):
    """Another process is training the same run (same data and options) right now."""


def fingerprint(cfg: TrainConfig, splits) -> str:
    """What makes two runs the same fit: the texts and labels of each split, the options that change
    the fit (resolved: max_seq_len and max_learn_rate as used) and the bertclf version."""
    digest = hashlib.sha256()
    options = {k: v for k, v in cfg.to_dict().items() if k not in NOT_FINGERPRINTED}
    digest.update(json.dumps({"bertclf": __version__, "options": options}, sort_keys=True).encode())
    for part in ("train", "validation", "test"):
        examples = getattr(splits, part)
        digest.update(json.dumps([part, list(examples.texts), list(examples.labels)], ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _rng_variables(model) -> list:
    """The model's random-generator states (dropout's SeedGenerators): variables that are not weights,
    which Keras's weights file leaves out."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


@dataclasses.dataclass
class Position:
    """Where a fit is: `epoch` epochs done and `step` steps into the next one."""

    epoch: int = 0
    step: int = 0


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping whose state carries over: from a saved run, and between the fits of one
    run (a resumed epoch is fitted on its own first). It leaves restoring the best weights
    (`best_weights`) to the caller, after the run's last fit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.carried: dict | None = None

    def carry(self, state: dict, best_weights: list | None) -> None:
        """Continue from a saved state (`state()`) and best weights."""
        self.carried = {**state, "best_weights": best_weights}
        self._take_carried()

    def _take_carried(self) -> None:
        for name, value in (self.carried or {}).items():
            setattr(self, name, value)

    def on_train_begin(self, logs=None):
        if self.carried is None:
            super().on_train_begin(logs)
        else:
            self._take_carried()

    def on_train_end(self, logs=None):
        self.carried = {**self.state(), "best_weights": self.best_weights}

    def state(self) -> dict:
        best = None if self.best is None else float(self.best)
        return {
            "wait": int(self.wait),
            "stopped_epoch": int(self.stopped_epoch),
            "best": best,
            "best_epoch": int(self.best_epoch),
        }

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch > 0


class EpochClock(keras.callbacks.Callback):
    """The epoch `fit` is in, for the training dataset to draw that epoch's order (`now`)."""

    def __init__(self, epoch: int = 0):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def now(self) -> int:
        return self.epoch


class Run:
    """One training run's folder of state; `open_run` makes one."""

    def __init__(self, folder: Path, digest: str, state: dict):
        self.folder = folder
        self.fingerprint = digest
        self.state = state
        self.resumed_from: Position | None = None
        self._best_saved: int | None = state.get("best_epoch_saved")

    @property
    def has_checkpoint(self) -> bool:
        return self.state.get("weights") is not None

    @property
    def logs(self) -> Path:
        return self.folder / LOGS_DIR

    @property
    def position(self) -> Position:
        return Position(self.state.get("epoch", 0), self.state.get("step", 0))

    @property
    def history(self) -> dict[str, list[float]]:
        return self.state.setdefault("history", {})

    def begin(self, created: datetime, short_id: str) -> tuple[datetime, str]:
        """The run's creation time and id: this process's for a new run, the first process's for a resumed one."""
        if not self.state:
            self.state = {
                "format": FORMAT,
                "fingerprint": self.fingerprint,
                "created": created.isoformat(),
                "short_id": short_id,
            }
            return created, short_id
        return datetime.fromisoformat(self.state["created"]), self.state["short_id"]

    def restore(self, model, stopping: ResumableEarlyStopping) -> None:
        """Load the checkpoint into a built, compiled model, its optimizer and `stopping`."""
        if not self.has_checkpoint:
            return
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so its moments and step count can be loaded
        try:
            model.load_weights(self.folder / self.state["weights"])
            rngs = _rng_variables(model)
            saved = self.state.get("rng", [])
            # By order: their names count the generators made before in the process, so they differ between runs.
            if [tuple(v.shape) for v in rngs] != [np.shape(value) for _, value in saved]:
                raise ValueError("its dropout generators are not this model's")
            for variable, (_, value) in zip(rngs, saved, strict=True):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            best_weights = None
            if self.state.get("best_weights"):
                with np.load(self.folder / self.state["best_weights"], allow_pickle=False) as arrays:
                    best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(
                f"cannot resume from {self.folder} ({err}); start over with --resume never (make train RESUME=never), "
                "which discards it"
            ) from None
        stopping.carry(self.state["early_stopping"], best_weights)
        self.resumed_from = self.position
        log.info(
            "resuming the interrupted run in %s: %d epoch(s) done%s (checkpoint of %s)",
            self.folder,
            self.position.epoch,
            f", {self.position.step} step(s) into epoch {self.position.epoch + 1}" if self.position.step else "",
            self.state.get("saved", "?"),
        )

    def save(self, model, position: Position, stopping: ResumableEarlyStopping, seconds: float) -> None:
        """Write a checkpoint at `position`: weights (and best weights when they changed) first, under
        names of their own, then state.json naming them, then remove what it no longer names. A save
        that fails (a full disk) is logged and training goes on: the previous checkpoint stays."""
        started = time.perf_counter()
        weights = f"fit-{position.epoch:04d}-{position.step:06d}.weights.h5"
        temporary: list[Path] = []

        def written(name: str, write) -> None:
            tmp = self.folder / f".{uuid.uuid4().hex}{''.join(Path(name).suffixes)}"  # Keras wants .weights.h5
            temporary.append(tmp)
            write(tmp)
            os.replace(tmp, self.folder / name)

        try:
            written(weights, model.save_weights)
            state = {**self.state, "epoch": position.epoch, "step": position.step, "weights": weights}
            if stopping.best_weights is not None and stopping.best_epoch != self._best_saved:
                best = f"best-{stopping.best_epoch:04d}.npz"
                written(best, lambda path: np.savez(path, *stopping.best_weights))
                state["best_weights"], state["best_epoch_saved"] = best, stopping.best_epoch
            state["early_stopping"] = stopping.state()
            state["rng"] = [[v.path, np.asarray(v.numpy()).tolist()] for v in _rng_variables(model)]
            state["seconds"] = round(seconds, 1)
            state["saved"] = datetime.now().isoformat(timespec="seconds")
            write_json_atomic(self.folder / STATE_FILE, state)
        except OSError as err:
            for tmp in temporary:
                tmp.unlink(missing_ok=True)
            log.warning(
                "checkpoint: could not save the run's state at %d epoch(s) and %d step(s) in %s (%s); training goes "
                "on, and an interruption would resume from the checkpoint before",
                position.epoch,
                position.step,
                self.folder,
                err,
            )
            return
        self.state, self._best_saved = state, state.get("best_epoch_saved")
        log.info(
            "checkpoint: %d epoch(s)%s done, saved in %.1f s (%s)",
            position.epoch,
            f" and {position.step} step(s)" if position.step else "",
            time.perf_counter() - started,
            self.folder,
        )
        named = {STATE_FILE, LOCK_FILE, LOGS_DIR, weights, state.get("best_weights")}
        for path in self.folder.iterdir():
            if path.name not in named and path.suffix in (".h5", ".npz") and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def exporting(self, staging: Path) -> None:
        """Remember the half-written model folder, so the next run removes it if this one dies in the export."""
        self.state = {**self.state, "staging": str(staging)}
        write_json_atomic(self.folder / STATE_FILE, self.state)


class Checkpointer(keras.callbacks.Callback):
    """Saves the run at each epoch end and every `every` steps (0: epoch ends only), and keeps the
    history of every epoch the run has trained, in this process or before it."""

    def __init__(self, run: Run, stopping: ResumableEarlyStopping, steps_per_epoch: int, every: int, clock):
        super().__init__()
        self.run, self.stopping, self.steps_per_epoch, self.every = run, stopping, steps_per_epoch, every
        self.position = run.position
        self.clock = clock  # seconds the fit has taken, in this process and before it

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.position.epoch:
            self.position = Position(epoch, 0)

    def on_train_batch_end(self, batch, logs=None):
        self.position = Position(self.position.epoch, self.position.step + 1)
        if self.every and self.position.step % self.every == 0 and self.position.step < self.steps_per_epoch:
            self.run.save(self.model, self.position, self.stopping, self.clock())

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.run.history.setdefault(name, []).append(float(value))
        self.position = Position(epoch + 1, 0)
        self.run.save(self.model, self.position, self.stopping, self.clock())


def _lock(folder: Path):
    """Hold the run's lock for this process, or raise RunBusy naming the process that holds it."""
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held open until the run ends (closed by open_run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunBusy(
            f"another training run with the same data and options is running ({holder}, in {folder}); wait for it "
            "to finish or stop it, then run again to resume it"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _state(folder: Path, digest: str) -> dict:
    """The saved state of a run folder, or {} (nothing usable: starting over, said in the log)."""
    path = folder / STATE_FILE
    if not path.exists():
        return {}
    try:
        state = read_json_object(path)
        fields = {"format": int, "fingerprint": str, "created": str, "short_id": str, "epoch": int, "step": int}
        wrong = [name for name, kind in fields.items() if not isinstance(state.get(name), kind)]
        if wrong or state["format"] != FORMAT or state["fingerprint"] != digest:
            raise ValueError(f"unexpected {', '.join(wrong) or 'format or fingerprint'}")
        datetime.fromisoformat(state["created"])
        for name in ("weights", "best_weights"):
            value = state.get(name)
            if value is not None and (not isinstance(value, str) or Path(value).name != value):
                raise ValueError(f"{name} is not a file name in the run folder")
    except ValueError as err:
        log.warning("%s: cannot resume from it (%s); starting over", path, err)
        return {}
    return state


def _remove_half_export(models_dir: Path, state: dict) -> None:
    """Remove the model folder an interrupted export left half-written: only a `.incomplete-` folder
    directly in models/trained/, whatever state.json says."""
    staging = state.get("staging")
    if not isinstance(staging, str):
        return
    path = Path(staging)
    ours = path.parent.resolve() == (models_dir / "trained").resolve() and path.name.startswith(INCOMPLETE_PREFIX)
    if ours and path.is_dir() and not path.is_symlink():
        log.info("removing %s, the model folder the interrupted run did not finish writing", path)
        shutil.rmtree(path, ignore_errors=True)


def _mention_others(runs: Path, mine: Path) -> None:
    others = [p for p in sorted(runs.iterdir()) if p.is_dir() and p != mine and (p / STATE_FILE).exists()]
    if others:
        size = sum(f.stat().st_size for p in others for f in p.rglob("*") if f.is_file())
        log.info(
            "%s also holds %d interrupted run(s) of other data or options (%.0f MB): %s; `make train` with their "
            "data and options resumes one, deleting its folder discards it",
            runs,
            len(others),
            size / 1e6,
            ", ".join(p.name for p in others),
        )


@contextlib.contextmanager
def open_run(cfg: TrainConfig, model_name: str, digest: str) -> Iterator[Run]:
    """The run folder for these data and options, locked for this process: with --resume auto the
    interrupted run's state (if any), with never a fresh one. Removed when the block completes (the
    model is exported); kept, to resume from, when it fails or is interrupted."""
    models_dir = Path(cfg.models_dir)
    runs = models_dir / RUNS_DIR
    folder = runs / f"{folder_slug(model_name)}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    handle = _lock(folder)
    try:
        state = _state(folder, digest)
        _remove_half_export(models_dir, state)
        for path in folder.glob(".*"):  # temporary files of a save the interruption cut short
            if path.is_file():
                path.unlink()
        if state and cfg.resume == "never":
            log.info("--resume never: discarding the interrupted run's checkpoint in %s", folder)
            state = {}
        if not state:  # nothing to resume: an empty folder (old files of a broken state go)
            for path in folder.iterdir():
                if path.name != LOCK_FILE:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        _mention_others(runs, folder)
        run = Run(folder, digest, state)

        def discard() -> None:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                runs.rmdir()  # only if no other run is left in it

        try:
            yield run
        except BaseException:
            if run.has_checkpoint:
                log.warning("training state kept in %s: run the same command again to resume", folder)
            else:  # it failed before its first checkpoint: nothing to resume from
                discard()
            raise
        discard()
    finally:
        handle.close()


def config_record(run: Run) -> dict[str, Any] | None:
    """What model_config.json records of a resumed run: where it resumed from."""
    if run.resumed_from is None:
        return None
    return {"epoch": run.resumed_from.epoch, "step": run.resumed_from.step, "run_folder": run.folder.name}
