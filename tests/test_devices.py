"""Several devices, one command: the CPU split into two logical devices trains with
MirroredStrategy (in a fresh process: TensorFlow splits its devices only before it starts) and
gives the model a single-device run gives on the same global batches, to a stated tolerance."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertclf.errors import ConfigError
from conftest import largest_weight_difference

# Both runs in one process: the split comes first, then each run picks its devices.
RUNS = """
import json, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from bertclf.training.startup import import_tensorflow
import_tensorflow()
from bertclf.training.devices import strategy_for
strategy_for("cpu:2")
from conftest import make_texts, save_tiny_bert_preset, train_tiny
root = Path(sys.argv[1])
# No dropout anywhere: replicas draw their own dropout masks, which no single device reproduces.
save_tiny_bert_preset(root / "preset", dropout=0.0)
texts, labels = make_texts(20)
settings = dict(dropout=0.0, n_epochs=1, calibration="none", max_learn_rate=1e-3, min_learn_rate=1e-4)
out = {}
for name, devices in (("mirrored", "cpu:2"), ("single", "auto")):
    (root / name).mkdir()
    _, folder, config = train_tiny(root / name, root / "preset", zip(texts, labels), devices=devices, **settings)
    out[name] = {"folder": str(folder), "distribution": config["training"]["distribution"],
                 "loss": config["training"]["history"]["loss"]}
print(json.dumps(out))
"""
LEARN_RATE = 1e-3
# Adam turns float noise in a near-zero gradient (the two devices sum in another order) into a
# step of about the learning rate, so weights may differ by a few steps; the answers hardly move.
WEIGHT_TOLERANCE = 5 * LEARN_RATE
PROBABILITY_TOLERANCE = 5e-3


# 35-45 s (two trainings in step): in `make test-slow`, to keep `make test` well under 15 minutes.
@pytest.mark.slow
def test_two_logical_devices_train_the_model_one_device_trains(tmp_path):
    from bertclf.inference.predictor import Predictor
    from conftest import make_texts

    result = subprocess.run(
        [sys.executable, "-c", RUNS, str(tmp_path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["mirrored"]["distribution"] == {
        "strategy": "MirroredStrategy",
        "devices": 2,
        "names": ["/device:CPU:0", "/device:CPU:1"],
    }
    assert runs["single"]["distribution"]["devices"] == 1
    assert runs["mirrored"]["loss"] == pytest.approx(runs["single"]["loss"], abs=1e-3)
    assert largest_weight_difference(runs["mirrored"]["folder"], runs["single"]["folder"]) < WEIGHT_TOLERANCE
    texts, _ = make_texts(20)
    mirrored, single = Predictor(runs["mirrored"]["folder"]), Predictor(runs["single"]["folder"])
    np.testing.assert_allclose(mirrored.predict_proba(texts), single.predict_proba(texts), atol=PROBABILITY_TOLERANCE)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("0,1", "sees no GPU"),
        ("all", "sees no GPU"),
        ("cpu:0", "cpu:N with N from 1 to 64"),
        ("cpu:3", "only be split"),
    ],
)
def test_devices_that_cannot_be_had_are_clear_errors(spec, fragment):
    import tensorflow as tf

    from bertclf.training.devices import strategy_for

    tf.config.list_logical_devices("CPU")  # TensorFlow has set up its devices, as in any test process
    with pytest.raises(ConfigError, match=fragment):
        strategy_for(spec)  # this process's TensorFlow is running already: cpu:3 cannot split it now
