"""Pick the one model folder a serving image carries (used by api.Dockerfile at build time).

    python -m bertclf.serve.bundle <models dir> <target dir> [<model folder>]

Copies what serving reads of the model folder (default: the one <models dir>/latest_model_config.json
names; or the given folder, spelled as --model_dir takes it: models/trained/<folder>,
trained/<folder> or <folder>) to <target>/trained/<name>, and writes <target>/latest_model_config.json
pointing at it. The Keras weights and TensorBoard logs stay out: the image serves the folder's
serving/model.onnx without TensorFlow, so a folder without one is refused here. With no trained
model at all it writes an empty <target>: the image then serves whatever is mounted over
/app/models at run time.
"""

import json
import shutil
import sys
from pathlib import Path

from bertclf.errors import RegistryError
from bertclf.inference.runtime import SERVING_GRAPH
from bertclf.registry import LATEST_FILE, MODEL_CONFIG_FILE, chosen_model_folder, update_latest
from bertclf.safety import check_preset_is_data


def _training_only(folder: str, names: list[str]) -> list[str]:
    """What serving never reads: the Keras weights (the graph holds them) and the training logs."""
    return [name for name in names if name.endswith(".weights.h5") or name == "logs"]


def bundle(models_dir, target, model_dir=None) -> Path | None:
    """Copy one trained model into `target` with its pointer; returns the copied folder or None."""
    models_dir, target = Path(models_dir), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if not model_dir and not (models_dir / LATEST_FILE).is_file():
        return None
    # MODEL_DIR as for --model_dir: models/trained/<name>, trained/<name> or <name>.
    source = chosen_model_folder(models_dir, model_dir)
    check_preset_is_data(source)  # refuse at build time what the server would refuse at start
    if not (source / SERVING_GRAPH).is_file():
        raise RegistryError(
            f"{source} has no {SERVING_GRAPH}, which the api image serves (it has no TensorFlow): write it with "
            f"`python -m bertclf export-onnx --model_dir {source}`"
        )
    copied = target / "trained" / source.name
    shutil.copytree(source, copied, ignore=_training_only)
    config = json.loads((copied / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    update_latest(target, copied, config)
    return copied


def main(argv=None):
    args = (argv if argv is not None else sys.argv[1:]) + [""]
    if len(args) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        copied = bundle(args[0], args[1], args[2] or None)
    except (RegistryError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if copied is None:
        print(
            f"no trained model in {args[0]}: the image serves what is mounted at /app/models "
            '(docker run -v "$PWD/models:/app/models:ro" ...)'
        )
    else:
        print(f"bundled {copied.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
