"""Resume after interruption: a tiny training run killed with SIGKILL (kill -9) at an epoch end, in
the middle of an epoch, or in the middle of its export, then run again, gives the model an
uninterrupted run gives, in one model folder and with nothing half-written left behind."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertclf.config import TrainConfig
from conftest import largest_weight_difference, make_texts, write_csv

# The killed run: a real training process that kills itself with SIGKILL (what kill -9 sends, no
# clean-up of any kind) right after the checkpoint at the given position is on disk, or in the export.
KILLED = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[2])
from bertclf.training.startup import import_tensorflow
import_tensorflow()
from bertclf.training import resume
from bertclf.training import export, run as train
from bertclf.config import TrainConfig
settings, at = json.loads(sys.argv[1]), sys.argv[3]
save = resume.Run.save
def save_then_die(self, model, position, stopping, seconds):
    save(self, model, position, stopping, seconds)
    if f"{position.epoch}.{position.step}" == at:
        os.kill(os.getpid(), signal.SIGKILL)
resume.Run.save = save_then_die
if at == "export":
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    export.write_serving_graph = die
train.train(TrainConfig(**settings))
print("finished without being killed")
"""
# Same seed, data and options: only the interruption differs. Adam at 1e-2 with dropout (whose
# generators the checkpoint restores) on CPU: a resumed run repeats the same float operations.
WEIGHT_TOLERANCE = 1e-5


def settings(root: Path, preset: Path, data: Path, **extra) -> dict:
    return {
        "data": str(data),
        "model": str(preset),
        "models_dir": str(root / "models"),
        "max_seq_len": 32,
        "batch_size": 16,
        "n_epochs": 3,
        "patience": 3,
        "max_learn_rate": 1e-2,
        "min_learn_rate": 1e-3,
        "calibration": "none",
        **extra,
    }


def kill_run(run: dict, at: str):
    result = subprocess.run(
        [sys.executable, "-c", KILLED, json.dumps(run), str(Path(__file__).parent), at],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    texts, labels = make_texts(40)
    return write_csv(tmp_path_factory.mktemp("data") / "data.csv", zip(texts, labels, strict=True))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_preset, data):
    from bertclf.training.run import train

    root = tmp_path_factory.mktemp("uninterrupted")
    folder, config = train(TrainConfig(**settings(root, tiny_preset, data)))
    assert not (root / "models" / "runs").exists()  # removed once the model is exported
    return folder, config


@pytest.mark.parametrize(
    "at, extra, resumed_from",
    [
        # After its first epoch: the path of "1.2" without the position inside an epoch; slow (23 s)
        # to keep make test short.
        pytest.param("1.0", {}, {"epoch": 1, "step": 0}, marks=pytest.mark.slow),
        ("1.2", {"checkpoint_every": 2}, {"epoch": 1, "step": 2}),  # 2 steps into the second epoch
        ("export", {}, None),  # fitted, half-way through writing the model folder
    ],
)
def test_a_killed_run_resumes_to_the_model_an_uninterrupted_run_gives(
    tmp_path, tiny_preset, data, uninterrupted, at, extra, resumed_from, caplog
):
    from bertclf.inference.predictor import Predictor
    from bertclf.training.run import train

    run = settings(tmp_path, tiny_preset, data, **extra)
    kill_run(run, at)
    runs = tmp_path / "models" / "runs"
    (folder_left,) = runs.iterdir()
    state = json.loads((folder_left / "state.json").read_text())
    trained = tmp_path / "models" / "trained"
    if at == "export":
        assert state["epoch"] == 3 and [p.name[:12] for p in trained.iterdir()] == [".incomplete-"]
    else:
        assert [state["epoch"], state["step"]] == [resumed_from["epoch"], resumed_from["step"]]
        assert not trained.exists() or not any(trained.iterdir())  # no model folder before the fit ends

    caplog.set_level("INFO")
    folder, config = train(TrainConfig(**run))
    reference_folder, reference = uninterrupted

    # One whole model folder; the run folder and the half-written export are gone.
    assert [p.name for p in trained.iterdir()] == [folder.name]
    assert not runs.exists()
    if resumed_from is not None:
        assert config["training"]["resumed_from"] == {**resumed_from, "run_folder": folder_left.name}
        assert "resuming the interrupted run" in caplog.text
    else:  # nothing was left to fit: straight to the evaluation and export
        assert config["training"]["resumed_from"] == {"epoch": 3, "step": 0, "run_folder": folder_left.name}
        assert "removing" in caplog.text and ".incomplete-" in caplog.text
    # The same run: the one name, the history of every epoch, the same model.
    assert (config["id"], config["created"]) == (state["short_id"], state["created"][:19])
    assert config["training"]["epochs_run"] == reference["training"]["epochs_run"] == 3
    for name, values in reference["training"]["history"].items():
        resumed = config["training"]["history"][name]
        if at == "1.2" and name in ("loss", "accuracy"):  # the resumed epoch reports its remaining steps only
            resumed, values = resumed[:1] + resumed[2:], values[:1] + values[2:]
        assert resumed == pytest.approx(values, abs=1e-5), name
    assert largest_weight_difference(folder, reference_folder) < WEIGHT_TOLERANCE
    texts, _ = make_texts(10, seed=5)
    resumed_answers, reference_answers = (Predictor(f).predict_proba(texts) for f in (folder, reference_folder))
    np.testing.assert_allclose(resumed_answers, reference_answers, atol=1e-5)


# === The run folder on its own ===
def splits(texts=("a b", "c d", "e f")):
    from types import SimpleNamespace

    part = SimpleNamespace(texts=list(texts), labels=["x", "y", "x"][: len(texts)])
    return SimpleNamespace(train=part, validation=part, test=part)


def test_the_fingerprint_is_the_data_and_what_changes_the_fit_not_where_it_runs(tmp_path):
    from bertclf.training.resume import fingerprint

    base = TrainConfig(models_dir=str(tmp_path / "a"))
    same = [
        TrainConfig(models_dir=str(tmp_path / "b"), devices="cpu:2", resume="never", checkpoint_every=10),
        TrainConfig(models_dir=str(tmp_path / "a"), data="moved/elsewhere.csv"),  # the content is what counts
    ]
    other = [
        TrainConfig(models_dir=str(tmp_path / "a"), n_epochs=3),
        TrainConfig(models_dir=str(tmp_path / "a"), seed=1),
    ]
    assert {fingerprint(cfg, splits()) for cfg in [base, *same]} == {fingerprint(base, splits())}
    assert len({fingerprint(cfg, splits()) for cfg in [base, *other]}) == 3
    assert fingerprint(base, splits(("a b", "c d", "e g"))) != fingerprint(base, splits())


def test_a_run_is_locked_while_it_trains(tmp_path):
    from bertclf.training.resume import RunBusy, open_run

    cfg = TrainConfig(models_dir=str(tmp_path))
    with open_run(cfg, "m", "f" * 16) as run:
        with pytest.raises(RunBusy, match=r"same data and options is running .pid \d+"), open_run(cfg, "m", "f" * 16):
            pass
        assert run.folder.exists()
    assert not (tmp_path / "runs").exists()  # completed: removed
    with open_run(cfg, "m", "f" * 16):  # and free again
        pass


def saved_run(tmp_path, cfg, digest="f" * 16, **state):
    """A run folder as an interrupted run leaves it (state.json only; what it names is made up)."""
    from datetime import datetime

    from bertclf.training.resume import open_run

    with pytest.raises(KeyboardInterrupt), open_run(cfg, "m", digest) as run:
        run.begin(datetime(2026, 1, 2, 3, 4, 5), "abcd1234")
        run.state.update({"epoch": 1, "step": 0, "weights": "fit-0001-000000.weights.h5", **state})
        (run.folder / run.state["weights"]).write_bytes(b"not really weights")
        (run.folder / "state.json").write_text(json.dumps(run.state))
        raise KeyboardInterrupt  # as Ctrl-C or a kill leaves it
    return run.folder


def test_never_discards_the_checkpoint_and_auto_keeps_it(tmp_path):
    from bertclf.training.resume import open_run

    cfg = TrainConfig(models_dir=str(tmp_path))
    folder = saved_run(tmp_path, cfg)
    with pytest.raises(KeyboardInterrupt), open_run(cfg, "m", "f" * 16) as run:
        assert run.has_checkpoint and run.position.epoch == 1
        raise KeyboardInterrupt
    with open_run(TrainConfig(models_dir=str(tmp_path), resume="never"), "m", "f" * 16) as run:
        assert not run.state and sorted(p.name for p in folder.iterdir()) == ["lock"]


@pytest.mark.parametrize(
    "state, reason",
    [
        ({"fingerprint": "0" * 16}, "fingerprint"),
        ({"epoch": "1"}, "epoch"),
        ({"weights": "../../elsewhere.weights.h5"}, "weights is not a file name"),
        ({"created": "yesterday"}, "isoformat"),
    ],
)
def test_a_broken_state_starts_over_and_says_why(tmp_path, caplog, state, reason):
    from bertclf.training.resume import open_run

    cfg = TrainConfig(models_dir=str(tmp_path))
    folder = saved_run(tmp_path, cfg, **state)
    with open_run(cfg, "m", "f" * 16) as run:
        assert not run.state
        assert sorted(p.name for p in folder.iterdir()) == ["lock"]
    assert "cannot resume from it" in caplog.text and reason in caplog.text


def test_only_a_half_written_model_folder_is_removed(tmp_path):
    from bertclf.training.resume import open_run

    cfg = TrainConfig(models_dir=str(tmp_path))
    keep = tmp_path / "trained" / "20260101-000000_m"
    keep.mkdir(parents=True)
    for staging in (keep, tmp_path / "elsewhere", tmp_path / "trained" / ".incomplete-x"):
        staging.mkdir(exist_ok=True)
        saved_run(tmp_path, cfg, staging=str(staging))
        with open_run(cfg, "m", "f" * 16):
            pass
    assert keep.exists() and (tmp_path / "elsewhere").exists()
    assert not (tmp_path / "trained" / ".incomplete-x").exists()


def test_a_checkpoint_that_cannot_be_written_is_logged_and_training_goes_on(tmp_path, caplog):
    from types import SimpleNamespace

    from bertclf.training.resume import Position, ResumableEarlyStopping, open_run

    def full_disk(path):
        Path(path).write_bytes(b"half")  # what a write cut short by a full disk leaves
        raise OSError(28, "No space left on device")

    model = SimpleNamespace(save_weights=full_disk, weights=[], variables=[])
    with open_run(TrainConfig(models_dir=str(tmp_path)), "m", "f" * 16) as run:
        before = dict(run.state)
        run.save(model, Position(1, 0), ResumableEarlyStopping(), 1.0)
        assert run.state == before and sorted(p.name for p in run.folder.iterdir()) == ["lock"]
    assert "could not save the run's state at 1 epoch(s) and 0 step(s)" in caplog.text
    assert "No space left on device" in caplog.text


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_run_folder(tmp_path):
    from bertclf.training.resume import open_run

    with pytest.raises(RuntimeError), open_run(TrainConfig(models_dir=str(tmp_path)), "m", "f" * 16):
        raise RuntimeError("out of memory in the first epoch")
    assert not (tmp_path / "runs").exists()
