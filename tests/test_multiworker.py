"""Several machines, tried on one: two worker processes with a standard TF_CONFIG on 127.0.0.1
ports train a tiny model together with MultiWorkerMirroredStrategy (each on its own models/
folder, as on two machines); they finish together, only the chief exports and points
latest_model_config.json at the model, the other writes nothing into its models/, and the model
predicts."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import largest_weight_difference, make_texts, save_tiny_bert_preset, write_csv


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


SETTINGS = {
    "max_seq_len": 32,
    "batch_size": 16,
    "n_epochs": 8,
    "patience": 8,
    "max_learn_rate": 1e-2,
    "min_learn_rate": 1e-3,
    "dropout": 0.0,
    "calibration": "none",
    "precision": "float32",  # the comparison below is of float32 sums (auto: bfloat16 on AMX CPUs)
}
# As tests/test_devices.py: the replicas' gradients are summed in another order, and Adam can turn
# that float noise in near-zero gradients into a step of up to the learning rate (measured: 1.8e-4).
LOSS_TOLERANCE = 1e-3
WEIGHT_TOLERANCE = 5e-3


# 35-45 s (two trainings in step): in `make test-slow`, to keep `make test` well under 15 minutes.
@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_exports(tmp_path):
    from bertclf.config import TrainConfig
    from bertclf.inference.predictor import Predictor
    from bertclf.training.run import train

    # No dropout anywhere: each replica would draw its own masks, which no single device reproduces.
    preset = save_tiny_bert_preset(tmp_path / "preset", dropout=0.0)
    texts, labels = make_texts(40)
    data = write_csv(tmp_path / "data.csv", zip(texts, labels, strict=True))
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in range(2):
        models = tmp_path / f"machine{index}" / "models"
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}),
        }
        command = [sys.executable, "-m", "bertclf", "train", "--data", str(data), "--model", str(preset)]
        command += ["--models_dir", str(models), *[f"--{k}={v}" for k, v in SETTINGS.items()]]
        log = open(tmp_path / f"worker{index}.log", "w")  # noqa: SIM115 - closed below, after the process
        workers.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    finished = []
    for process, log in workers:
        try:
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        finished.append(time.monotonic())
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p, _ in workers] == [0, 0], "\n\n".join(text[-3000:] for text in logs)
    assert finished[1] - finished[0] < 30  # together: the second was waiting on the first's steps, not behind it

    chief, other = tmp_path / "machine0" / "models", tmp_path / "machine1" / "models"
    (folder,) = (chief / "trained").iterdir()
    pointer = json.loads((chief / "latest_model_config.json").read_text())
    assert pointer["model_dir"] == f"trained/{folder.name}"
    assert pointer["training"]["distribution"] == {
        "strategy": "MultiWorkerMirroredStrategy",
        "workers": 2,
        "devices": 2,
        "task": "worker 0",
        "chief": True,
    }
    assert not other.exists() or not any(other.iterdir())  # the other machine's models/ got nothing
    assert "worker 1: trained 8 epochs" in logs[1] and "the chief exports" in logs[1]
    assert "exported to" in logs[0]
    # The model one device trains on the same global batches.
    single, reference = train(
        TrainConfig(data=str(data), model=str(preset), models_dir=str(tmp_path / "one"), **SETTINGS)
    )
    assert pointer["training"]["history"]["loss"] == pytest.approx(
        reference["training"]["history"]["loss"], abs=LOSS_TOLERANCE
    )
    assert single is not None
    assert largest_weight_difference(folder, single) < WEIGHT_TOLERANCE
    answers = Predictor(folder).predict_proba(texts)
    assert answers.shape == (len(texts), 3)
    assert ((answers >= 0) & (answers <= 1)).all() and abs(answers.sum(axis=1) - 1).max() < 1e-5
    assert (answers.argmax(axis=1) == [sorted(set(labels)).index(label) for label in labels]).mean() > 0.6


@pytest.mark.parametrize(
    "tf_config, fragment",
    [
        ("{not json", "TF_CONFIG is not JSON"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}}', 'needs "cluster"'),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "not one of the cluster"),
        ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', "must be lists"),
    ],
)
def test_a_tf_config_that_cannot_work_is_a_clear_error(monkeypatch, tf_config, fragment):
    from bertclf.errors import ConfigError
    from bertclf.training.devices import strategy_for

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=fragment):
        strategy_for("auto")


def test_one_task_in_tf_config_is_an_ordinary_run(monkeypatch):
    from bertclf.training.devices import strategy_for

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}')
    assert strategy_for("auto")[1] == {"strategy": "one device", "devices": 1}
