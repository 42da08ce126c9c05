"""The app factory: a worker that loads and answers with a model imports nothing of training."""

import json
import subprocess
import sys

from bertclf.errors import TRAINING_MODULES as TRAIN_EXTRA

SERVE_AND_LIST_MODULES = """
import json, sys, time
from bertclf.config import ServeConfig
from bertclf.serve.app import create_app

app = create_app(ServeConfig(models_dir=sys.argv[1], reload_interval=3600))
deadline = time.monotonic() + 120
while not app.extensions["bertclf"].manager.ready and time.monotonic() < deadline:
    time.sleep(0.05)
response = app.test_client().post("/predict", json={"x": ["apple banana"]})
print(json.dumps({"status": response.status_code, "modules": sorted(sys.modules)}))
"""
# Training, evaluation and checkpoint fetching (the training and pretrained packages): never needed
# to serve a trained folder.
TRAINING_PACKAGES = ("bertclf.training", "bertclf.pretrained")


def test_serving_imports_nothing_of_training(trained_models):
    models, _ = trained_models
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(models)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    assert "bertclf.inference.predictor" in answer["modules"], "the check ran with a loaded model"
    training = [name for name in answer["modules"] if name.startswith(TRAINING_PACKAGES)]
    assert not training, training
    # Nor any package of the `train` extra (TensorFlow, Keras, KerasHub, pandas, ...): nothing even
    # tries to import them (tests/test_serving_install.py shows it works without them installed).
    loaded = {name.partition(".")[0] for name in answer["modules"]}
    assert not loaded & TRAIN_EXTRA, sorted(loaded & TRAIN_EXTRA)
