"""Where the fit runs: one device, or several in step with TensorFlow's own engine for it,
`tf.distribute.MirroredStrategy` (data parallel: each device takes its share of every global batch,
the gradients are summed across them, and every device keeps the same weights).

`--devices` (make train GPUS=0,1):
- `auto`: one device, as TensorFlow picks it (the first GPU, else the CPU);
- `all`: every visible GPU, mirrored;
- `0,1`: those GPUs (indices among the visible ones), mirrored;
- `cpu:N`: the CPU split into N logical devices, mirrored: the multi-device path on a machine
  without GPUs (tests, and a check before renting GPUs). It is no faster than one CPU device.

The global batch stays `batch_size`, so steps per epoch, the learning-rate schedule, early stopping
and the export are those of a single-device run.
"""

import logging

import tensorflow as tf

from bertclf.config import ConfigError

log = logging.getLogger(__name__)


def _split_cpu(count: int) -> list[str]:
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != count:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # TensorFlow has already set up its devices in this process
            raise ConfigError(
                f"devices cpu:{count}: the CPU can only be split before TensorFlow starts computing; pass --devices "
                "to `python -m bertclf train` (a fresh process)"
            ) from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _gpus(spec: str) -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        raise ConfigError(
            f"devices {spec}: TensorFlow sees no GPU here (check nvidia-smi, and CUDA_VISIBLE_DEVICES); use --devices "
            "auto for the CPU"
        )
    if spec == "all":
        return [gpu.name for gpu in gpus]
    try:
        indices = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"devices must be auto, all, cpu:N or GPU indices such as 0,1; got {spec!r}") from None
    unknown = [i for i in indices if not 0 <= i < len(gpus)]
    if unknown or len(set(indices)) != len(indices) or not indices:
        raise ConfigError(f"devices {spec}: TensorFlow sees {len(gpus)} GPU(s), numbered 0-{len(gpus) - 1}")
    return [gpus[i].name for i in indices]


def strategy_for(spec: str) -> tuple[tf.distribute.Strategy, dict]:
    """The distribution strategy `--devices` asks for, and what model_config.json records of it."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return tf.distribute.get_strategy(), {"strategy": "one device", "devices": 1}
    if spec.startswith("cpu:"):
        try:
            count = int(spec[4:])
        except ValueError:
            count = 0
        if not 1 <= count <= 64:
            raise ConfigError(f"devices {spec}: write cpu:N with N from 1 to 64, e.g. cpu:2")
        names = _split_cpu(count)
    else:
        names = _gpus(spec)
    if len(names) == 1:
        return tf.distribute.OneDeviceStrategy(names[0]), {"strategy": "one device", "devices": 1, "names": names}
    strategy = tf.distribute.MirroredStrategy(names)
    log.info("training on %d devices in step (MirroredStrategy): %s", len(names), ", ".join(names))
    return strategy, {"strategy": "MirroredStrategy", "devices": len(names), "names": names}
