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

Several machines: a standard `TF_CONFIG` naming two or more workers (or a chief and workers) makes
the run `tf.distribute.MultiWorkerMirroredStrategy` on every machine, each on all its local GPUs
(or its CPU); the global batch is split across every device of every machine. The chief (the task
of type chief, else worker 0) evaluates and exports; the others train in step and write nothing
into models/.
"""

import json
import logging
import os

import keras
import tensorflow as tf

from bertclf.errors import ConfigError

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


def _cluster() -> dict | None:
    """TF_CONFIG when it names a cluster of two or more training tasks (chief and workers), else None."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not JSON ({err}); see the README's 'Several machines' example") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(
            'TF_CONFIG needs "cluster" ({"worker": ["host:port", ...]}) and "task" ({"type": "worker", "index": 0}); '
            "see the README's 'Several machines' example"
        )
    members = {kind: cluster.get(kind) or [] for kind in ("chief", "worker")}
    if not all(isinstance(hosts, list) and all(isinstance(h, str) for h in hosts) for hosts in members.values()):
        raise ConfigError('TF_CONFIG: "chief" and "worker" must be lists of "host:port"')
    if sum(len(hosts) for hosts in members.values()) < 2:
        return None  # one task: an ordinary run
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in members or not isinstance(index, int) or not 0 <= index < len(members[kind]):
        raise ConfigError(
            f"TF_CONFIG task {task!r} is not one of the cluster's tasks (type chief or worker, index from 0)"
        )
    return config


def _fix_keras_multi_worker() -> None:
    """Two corrections Keras 3's fit needs under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    tensorflow/tensorflow#72388; written for keras 3.15.1, which pyproject.toml pins):
    - before the first step, fit builds the model from one batch by averaging the batch across every
      replica of the cluster; a worker's batch is a PerReplica, which that average cannot take. Any
      local replica's batch has the shapes the build needs.
    - after each step it averages the logged loss and metrics across workers with axis=0, which fails
      on the scalars they are. The average of the scalars is axis=None.
    Both replace code that only runs with several workers; one device and MirroredStrategy are untouched."""
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_bertclf_multi_worker", False):
        return
    if keras.__version__ != "3.15.1":
        log.warning("several machines: the Keras fixes were written for keras 3.15.1; this is %s", keras.__version__)

    def symbolic_build(self, iterator=None, data_batch=None):
        local = self.distribute_strategy.experimental_local_results
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(lambda value: local(value)[0], next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    reduce_per_replica = trainer.reduce_per_replica

    def reduce_across_workers(values, strategy, reduction):
        if trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):

            def mean(value):
                return strategy.reduce("MEAN", value, axis=None) if trainer._is_per_replica_instance(value) else value

            return tf.nest.map_structure(mean, values)
        return reduce_per_replica(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = symbolic_build
    trainer.reduce_per_replica = reduce_across_workers
    trainer._bertclf_multi_worker = True


def _multi_worker(config: dict, spec: str) -> tuple[tf.distribute.Strategy, dict]:
    if spec not in ("auto", "all"):
        raise ConfigError(
            f"devices {spec}: with TF_CONFIG (several machines) each machine trains on all its GPUs, or its CPU; "
            "use --devices auto, and CUDA_VISIBLE_DEVICES to hide GPUs"
        )
    _fix_keras_multi_worker()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    kind, index = config["task"]["type"], config["task"].get("index", 0)
    chief = kind == "chief" or (kind == "worker" and index == 0 and not config["cluster"].get("chief"))
    workers = sum(len(config["cluster"].get(k) or []) for k in ("chief", "worker"))
    log.info(
        "training on %d machines in step (MultiWorkerMirroredStrategy, %d devices in all); this is %s %d%s",
        workers,
        strategy.num_replicas_in_sync,
        kind,
        index,
        " (the chief: it evaluates and exports)" if chief else ", which trains and writes nothing into models/",
    )
    return strategy, {
        "strategy": "MultiWorkerMirroredStrategy",
        "workers": workers,
        "devices": strategy.num_replicas_in_sync,
        "task": f"{kind} {index}",
        "chief": chief,
    }


def is_chief(distribution: dict) -> bool:
    """Whether this process writes the run's outputs (every process but a non-chief worker of a cluster)."""
    return bool(distribution.get("chief", True))


def strategy_for(spec: str) -> tuple[tf.distribute.Strategy, dict]:
    """The distribution strategy `--devices` (and TF_CONFIG) asks for, and what model_config.json records of it."""
    spec = (spec or "auto").strip().lower()
    cluster = _cluster()
    if cluster is not None:
        return _multi_worker(cluster, spec)
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
