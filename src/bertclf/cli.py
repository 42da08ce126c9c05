"""Command line: `python -m bertclf train|predict|evaluate|serve|feedback|token|models|fetch|export-onnx|data`.

Each subcommand's options are generated from its settings dataclass in config.py, so an option is
declared once, with its help and default, and the CLI and BERTCLF_* variables agree.
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertclf.config import (
    DEFAULT_MODEL,
    DataConfig,
    FeedbackConfig,
    LabelConfig,
    ModelChoice,
    PredictConfig,
    ServeConfig,
    SuggestConfig,
    TokenConfig,
    TrainConfig,
    Workspace,
    env_name,
    option_type,
)
from bertclf.errors import USER_ERRORS, ConfigError, training_install_missing

log = logging.getLogger("bertclf")

EPILOG = """examples:
  python -m bertclf train                                 # sample data, default model
  python -m bertclf train --data my.csv --text_column body --label_column team --n_epochs 3
  python -m bertclf predict "How do I reverse a list?"    # uses models/latest_model_config.json
  echo "git push was rejected" | python -m bertclf predict
  python -m bertclf predict --input issues.csv --output labelled.csv --top_k 3
  python -m bertclf evaluate --precision int8             # the latest model's test split, in int8
  python -m bertclf suggest --input pool.csv --output to_label.csv --n 200   # what to label next
  python -m bertclf serve --port 5000                     # POST /predict {"x": ["..."]}
  python -m bertclf feedback export --output data/feedback.csv   # corrections sent to POST /feedback
  python -m bertclf token --note "ci bot"                 # then: serve --api_tokens_file secrets/api_tokens.txt
  python -m bertclf fetch albert_base_v2                  # download and convert ahead of training
  python -m bertclf export-onnx --all                     # serving graphs for older model folders

`python -m bertclf <command> --help` lists a command's options with their defaults.
"""


def add_options(parser: argparse.ArgumentParser, config_cls: type, env: bool = False) -> None:
    """One option per field of a settings dataclass, with its help and default.

    Options the user does not give are left out of the parsed namespace (SUPPRESS), so the
    dataclass (and for `serve` the BERTCLF_* environment) supplies every default in one place.
    """
    for f in dataclasses.fields(config_cls):
        text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if "(default:" not in text:  # a help that explains its default says it better than the value
            text += f" (default: {f.default})"
        if env:
            text += f" [env {env_name(f.name)}]"
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        # A yes/no setting: `--feedback` alone means true; `--feedback false` works too (the same for a
        # setting with its own `const`: `--multi_label` alone means on).
        const = True if isinstance(f.default, bool) else f.metadata.get("const")
        flag: dict[str, Any] = {} if const is None else {"nargs": "?", "const": const}
        parser.add_argument(
            *names,
            dest=f.name,
            type=option_type(f),
            default=argparse.SUPPRESS,
            choices=f.metadata.get("choices"),
            metavar=f.name.upper(),
            help=text,
            **flag,
        )


def given(config_cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The options of `config_cls` the user gave, by name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}


def settings(config_cls: type, args: argparse.Namespace) -> Any:
    """The dataclass built from the options given (the others keep their defaults)."""
    return config_cls(**given(config_cls, args))


def _cmd_train(args: argparse.Namespace) -> int:
    import importlib.util

    from bertclf.files import existing_file

    cfg = settings(TrainConfig, args)
    if importlib.util.find_spec("tensorflow") is None:  # a serving-only install: that first, not the files
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    for path, option in ((cfg.data, "DATA"), (cfg.validation_data, "VALIDATION_DATA"), (cfg.test_data, "TEST_DATA")):
        if path is not None:
            existing_file(path, option)
    # TensorFlow (seconds) once the options and files hold: a typo answers at once.
    from bertclf.training.startup import import_tensorflow

    import_tensorflow(verbose=args.verbose)
    from bertclf.training.run import train

    folder, model_config = train(cfg)
    if folder is None:  # a worker of several machines: the chief prints the evaluation and exports
        training = model_config["training"]
        task = training["distribution"]["task"]
        print(f"{task}: trained {training['epochs_run']} epochs in {training['seconds']:.0f} s; the chief exports")
        return 0
    report = (folder / "classification_report.txt").read_text(encoding="utf-8")
    training, metrics = model_config["training"], model_config["metrics"]
    print(f"\n{report}")
    baseline = metrics["baseline"]
    if "micro_f1" in metrics:  # multi-label: accuracy is subset accuracy (every label of a text right)
        print(
            f"test subset accuracy {metrics['accuracy']:.3f}, micro-F1 {metrics['micro_f1']:.3f}, macro-F1 "
            f"{metrics['macro_f1']:.3f} (TF-IDF + logistic regression per label on the same split: "
            f"{baseline['accuracy']:.3f}, {baseline['micro_f1']:.3f}, {baseline['macro_f1']:.3f})"
        )
    else:
        print(
            f"test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
            f"(TF-IDF + logistic regression on the same split: accuracy {baseline['accuracy']:.3f}, "
            f"macro-F1 {baseline['macro_f1']:.3f})"
        )
    speed = training["examples_per_second"]  # None: resumed, and no whole epoch ran in this process
    print(
        f"trained {training['epochs_run']} epochs in {training['seconds']:.0f} s"
        + (f" ({speed:.1f} examples/s)" if speed else "")
        + (" (resumed after an interruption)" if training.get("resumed_from") else "")
    )
    timing = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("time")
    if timing:
        from bertclf.training.stages import table

        print(f"\nwhere the run's time went:\n{table(timing)}\n")
    print(f"model: {model_config['name']}")
    print(f"exported to {folder}")
    return 0


def _load_predictor(args: argparse.Namespace, refuse_drift: bool = True) -> Any:
    """The Predictor the options choose (it loads TensorFlow only for a model that needs it)."""
    from bertclf.inference.predictor import Predictor

    return Predictor.from_config(settings(PredictConfig, args), refuse_drift=refuse_drift)


def _cmd_predict(args: argparse.Namespace) -> int:
    cfg = settings(LabelConfig, args)
    if cfg.input is not None:
        if args.texts:
            raise ConfigError("give texts or --input, not both")
        return _label_file(cfg)
    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("no texts to classify: pass them as arguments or one per line on stdin")
    predictor = _load_predictor(args)
    labels, probabilities = predictor.predict(texts)
    print(f"model: {predictor.name}")
    if cfg.explain:
        return _print_explanations(predictor, texts, labels, probabilities, cfg.explain_label)
    if predictor.min_confidence > 0:
        print(f"min_confidence {predictor.min_confidence:g}: below it the answer is (abstain), for a person to label")
    for text, label, probability in zip(texts, labels, probabilities, strict=True):
        shown = text if len(text) <= 70 else text[:67] + "..."
        if isinstance(label, list):  # multi-label: every label at or above its threshold
            answer = ", ".join(f"{name} {p:.3f}" for name, p in zip(label, probability, strict=True)) or "(no label)"
            print(f"{answer:<40}  {shown}")
        else:
            print(f"{label or '(abstain)':>15}  {probability:6.3f}  {shown}")
    return 0


def _print_explanations(predictor: Any, texts: list[str], labels: list, probabilities: list, label: str | None) -> int:
    """Each text's answer, then its words with their weights for the label explained (explain.py)."""
    from bertclf.inference.explain import explain

    for text, answer, probability, why in zip(
        texts, labels, probabilities, explain(predictor, texts, label), strict=True
    ):
        shown = ", ".join(answer) if isinstance(answer, list) else (answer or "(abstain)")
        print(f"\n{shown} ({probability if isinstance(probability, list) else round(probability, 3)}): {text}")
        print(f"  why {why.label} ({why.probability:.3f}), each word's weight (the drop in probability without it):")
        read = [w for w in why.words if w["read"]]
        print("  " + "  ".join(f"{w['word']} {w['weight']:+.3f}" for w in read))
        unread = len(why.words) - len(read)
        if unread:
            print(f"  ({unread} more words lie past max_seq_len {predictor.sequence_length}: not read, weight 0)")
    return 0


def _label_file(cfg: LabelConfig) -> int:
    from bertclf.inference.labelfile import label_file
    from bertclf.inference.predictor import Predictor

    assert cfg.input is not None and cfg.output is not None  # LabelConfig checks they come together
    if cfg.engine == "ray":
        return _label_files_on_ray(cfg)
    predictor = Predictor.from_config(cfg, threads=os.cpu_count())
    print(
        f"model: {predictor.name} ({predictor.precision} on {predictor.runtime}: {predictor.precision_reason})",
        file=sys.stderr,
    )
    done = label_file(
        predictor,
        cfg.input,
        cfg.output,
        cfg.text_column,
        cfg.top_k,
        cfg.chunk_rows,
        escape_formulas=cfg.escape_formulas,
        output_format=cfg.format,
        explain=cfg.explain,
    )
    print(
        f"labelled {done['rows']:,} rows (column {done['text_column']!r}) in {done['seconds']:.1f} s "
        f"({done['rows_per_second']:,.0f} rows/s) into {cfg.output}",
        file=sys.stderr,
    )
    if "label_config" in done:
        print(
            f"Label Studio: import {cfg.output} into a project whose labeling config is {done['label_config']} "
            "(Settings > Labeling Interface > Code)",
            file=sys.stderr,
        )
    return 0


def _label_files_on_ray(cfg: LabelConfig) -> int:
    from bertclf.ray import label_files
    from bertclf.registry import chosen_model_folder

    assert cfg.input is not None and cfg.output is not None
    folder = chosen_model_folder(cfg.models_dir, cfg.model_dir)
    print(f"model: {folder.name}; labelling {cfg.input} with Ray ...", file=sys.stderr)
    done = label_files(
        folder,
        cfg.input,
        cfg.output,
        text_column=cfg.text_column,
        top_k=cfg.top_k,
        address=cfg.address,
        workers=cfg.workers,
        worker_cpus=cfg.worker_cpus,
        chunk_rows=cfg.chunk_rows,
        escape_formulas=cfg.escape_formulas,
        precision=cfg.precision,
        min_confidence=cfg.min_confidence,
        max_seq_len=cfg.max_seq_len,
        long_text=cfg.long_text,
    )
    print(
        f"labelled {done['rows']:,} rows (column {done['text_column']!r}) in {done['seconds']:.1f} s "
        f"({done['rows_per_second']:,.0f} rows/s, {done['workers']} Ray workers) into {done['files']} files in "
        f"{cfg.output}",
        file=sys.stderr,
    )
    return 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from bertclf.inference.predictor import Predictor
    from bertclf.inference.suggest import suggest

    cfg = settings(SuggestConfig, args)
    predictor = Predictor.from_config(cfg, threads=os.cpu_count())
    done = suggest(
        predictor,
        cfg.input,
        cfg.output,
        cfg.n,
        cfg.strategy,
        cfg.text_column,
        cfg.chunk_rows,
        cfg.format,
        cfg.escape_formulas,
    )
    print(
        f"suggested {done['suggested']:,} of {done['pool']:,} texts (strategy {done['strategy']}, column "
        f"{done['text_column']!r}) in {done['seconds']:.1f} s into {cfg.output}: label them from the top, correcting "
        f"the model's guess in 'prediction'",
        file=sys.stderr,
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bertclf.training.evaluate import DATA_ROLES, evaluate_saved_model

    predictor = _load_predictor(args, refuse_drift=False)  # a drifted engine is what evaluate is for
    scores = evaluate_saved_model(predictor, {role: getattr(args, role) for role in DATA_ROLES})
    recorded = predictor.config.get("metrics", {})
    print(f"model: {predictor.name} ({predictor.engine}, {predictor.precision} on {predictor.runtime})")
    print(f"precision: {predictor.precision_reason}")
    print(
        f"test split ({scores['n_test']} texts): accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}"
        f" (recorded at training: accuracy {recorded.get('accuracy', float('nan')):.4f}, "
        f"macro-F1 {recorded.get('macro_f1', float('nan')):.4f})"
    )
    if predictor.config.get("training", {}).get("refit"):
        print(
            "note: this model was refitted on train + validation + test (--refit all), so it has seen these test "
            "texts: the scores above are not a held-out measure; the recorded ones are the split model's"
        )
    checked = predictor.golden
    if checked:
        moved = checked["max_difference"]
        verdict = "within" if moved is not None and moved <= checked["tolerance"] else "PAST (serving refuses it)"
        print(
            f"golden texts ({checked['texts']}): probabilities moved by up to {checked['max_difference']} from the "
            f"trained model's, {verdict} the tolerance {checked['tolerance']}"
        )
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from bertclf.pretrained import catalog

    workspace = settings(Workspace, args)
    print(f"{'name':<30} {'family':<7} {'casing':<8} {'download':>9}  {'cached':<6}  description")
    for entry in catalog(workspace.models_dir):
        print(
            f"{entry.name:<30} {entry.family:<7} {'cased' if entry.cased else 'uncased':<8} {entry.size:>9}  "
            f"{'yes' if entry.cached else 'no':<6}  {entry.description}"
        )
    print(
        f"\ncache: {Path(workspace.models_dir) / 'pretrained'}/; MODEL=<folder> also takes an unpacked Google, "
        "Hugging Face or KerasHub checkpoint"
    )
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from bertclf.pretrained import resolve

    checkpoint = resolve(args.name, settings(Workspace, args).models_dir)
    print(
        f"{checkpoint.name}: {checkpoint.family}, {checkpoint.num_layers} layers, up to "
        f"{checkpoint.max_sequence_length} tokens, in {checkpoint.path}"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    # Read the environment here, not when parsing: a bad BERTCLF_* value concerns serving only.
    cfg = ServeConfig.from_env(**given(ServeConfig, args))
    if cfg.api_tokens_file:  # a missing or broken tokens file stops here, not in every worker
        from bertclf.serve.auth import PROTECTED_PATHS, Tokens

        tokens = Tokens(cfg.api_tokens_file)
        protected = ", ".join([*PROTECTED_PATHS, *(["/metrics"] if cfg.protect_metrics else [])])
        log.info("%s need one of the %d API token(s) in %s", protected, len(tokens), cfg.api_tokens_file)
    # The workers read their settings from the environment (gunicorn starts the factory by name).
    env = dict(os.environ)
    for f in dataclasses.fields(ServeConfig):
        value = getattr(cfg, f.name)
        env[env_name(f.name)] = "" if value is None else str(value)
    # A fresh folder per server for the workers' metric files (summed by /metrics); gunicorn's
    # on_exit hook removes it.
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bertclf-metrics-")
    env["BERTCLF_REMOVE_METRICS_DIR"] = "1"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:bertclf.serve.gunicorn_conf",
        "--bind",
        f"{cfg.host}:{cfg.port}",
        "--workers",
        str(cfg.workers),
        "--threads",
        str(cfg.threads),
        "--timeout",
        str(cfg.timeout),
        "--graceful-timeout",
        str(cfg.graceful_timeout),
        "--forwarded-allow-ips",
        cfg.forwarded_allow_ips,
        "bertclf.serve.app:create_app()",
    ]
    log.info("serving on http://%s:%d with %d worker(s) x %d thread(s)", cfg.host, cfg.port, cfg.workers, cfg.threads)
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # gunicorn takes this process over: signals reach it directly


def _cmd_feedback(args: argparse.Namespace) -> int:
    from bertclf.feedback import export_csv, store_path, summary

    cfg = settings(FeedbackConfig, args)
    store = store_path(cfg.feedback_db, cfg.models_dir)  # the api image's BERTCLF_FEEDBACK_DB too
    if args.action == "stats":
        stats = summary(store)
        print(
            f"{stats['corrections']} correction(s) of {stats['texts']} text(s) from {stats['senders']} sender(s) "
            f"in {store}"
        )
        print("labels training takes (a text's label: the most votes of distinct senders):")
        for label, n in stats["labels"].items():
            print(f"{n:>8}  {label}")
        conflicts = stats["conflicts"]
        print(f"conflicts (senders tied between labels; left out of training): {len(conflicts)}")
        for conflict in conflicts[:10]:
            print(f"          {conflict['text'][:60]!r}: {conflict['votes']}")
        print("senders with the most corrections:")
        for sender, n in stats["top_senders"].items():
            print(f"{n:>8}  {sender}")
        return 0
    written = export_csv(store, cfg.output)
    print(
        f"wrote {written} correction(s) from {store} to {'stdout' if cfg.output == '-' else cfg.output}; add them "
        "to the next run's training split with: make train FEEDBACK=1",
        file=sys.stderr,
    )
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from bertclf.serve.auth import hashed_line, new_token

    cfg = settings(TokenConfig, args)
    token = new_token()
    path = Path(cfg.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The line holds the token's hash, not the token: the file is no secret, and the api container's
    # own user (not the file's owner) must be able to read it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if cfg.note:
            f.write(f"# {' '.join(cfg.note.split())}\n")
        f.write(hashed_line(token) + "\n")
    print(token)
    print(
        f"added this token's SHA-256 to {path} (the token itself is shown only now: keep it in your client's "
        f"secrets). Serve with: make start_api API_TOKENS_FILE={path}; revoke it by deleting its line.",
        file=sys.stderr,
    )
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bertclf.inference.quantize import INT8_GRAPH
    from bertclf.inference.runtime import SERVING_GRAPH
    from bertclf.registry import chosen_model_folder

    cfg = settings(ModelChoice, args)
    if args.all:
        if cfg.model_dir:
            raise ConfigError("give --model_dir or --all, not both")
        trained = Path(cfg.models_dir) / "trained"
        folders = sorted(p for p in trained.glob("*") if p.is_dir() and not p.name.startswith("."))
        folders = [p for p in folders if not (p / SERVING_GRAPH).exists() or not (p / INT8_GRAPH).exists()]
        if not folders:
            print(f"every model folder in {trained} already has {SERVING_GRAPH} and {INT8_GRAPH}")
            return 0
    else:
        folders = [chosen_model_folder(cfg.models_dir, cfg.model_dir)]
    # TensorFlow (seconds) once there is work: a wrong option or nothing to do answers at once.
    from bertclf.training.startup import import_tensorflow

    import_tensorflow(verbose=args.verbose)
    from bertclf.training.onnx_writer import UnsupportedModel, export_folder

    failed = 0
    for folder in folders:
        try:
            print(f"{folder}: wrote {export_folder(folder)} and {folder / INT8_GRAPH}")
        except UnsupportedModel as err:
            print(f"{folder}: {err}; this model serves on TensorFlow (the training install)")
        except USER_ERRORS as err:
            if not args.all:
                raise
            print(f"{folder}: skipped: {err}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def _cmd_data(args: argparse.Namespace) -> int:
    from bertclf.pretrained.download import download

    cfg = settings(DataConfig, args)
    path = download(cfg.url, cfg.dest)
    print(f"saved {path}; train on it with: make train DATA={path}")
    return 0


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its help, the settings dataclass its options come from, and what runs it."""

    name: str
    help: str
    description: str
    settings: type
    run: Callable[[argparse.Namespace], int]
    # Load TensorFlow first (quietly); predict and evaluate load it once they know the model exists.
    tensorflow: bool = False


COMMANDS = [
    Command(
        "train",
        "fine-tune, evaluate and export a model",
        "Fine-tune a pretrained checkpoint on labelled texts, evaluate it on a held-out test split and export "
        "it to models/trained/<timestamp>_<model>/, then point models/latest_model_config.json at it.",
        TrainConfig,
        _cmd_train,
    ),
    Command(
        "predict",
        "classify texts, or label a whole CSV/TSV/JSONL file, with a trained model",
        "Print the predicted label and its probability for each text; or, with --input and --output, label "
        "every row of a file of any size (streamed in chunks), keeping its columns and adding prediction "
        "and probability.",
        LabelConfig,
        _cmd_predict,
    ),
    Command(
        "evaluate",
        "re-score a trained model on its test split (e.g. int8 against fp32)",
        "Rebuild the test split a model was evaluated on (the same files, checked by SHA-256, and the same "
        "seed) and score the model with the chosen engine and precision.",
        PredictConfig,
        _cmd_evaluate,
    ),
    Command(
        "serve",
        "serve a trained model over HTTP (gunicorn + Flask)",
        'Serve POST /predict {"x": [texts]} (also GET /predict?text=...), POST /embed and /feedback, and GET '
        "/health, /ready, /model, /metrics, /openapi.json and /docs. Every option can also be set as an environment "
        "variable BERTCLF_<OPTION>; an option given here wins.",
        ServeConfig,
        _cmd_serve,
    ),
    Command(
        "models",
        "list the pretrained checkpoints MODEL= knows by name",
        "List the known checkpoint names with family, casing, download size and whether each is cached.",
        Workspace,
        _cmd_models,
    ),
    Command(
        "fetch",
        "download, verify and convert a pretrained checkpoint ahead of training",
        "Download (if needed), verify and cache a pretrained checkpoint under models/pretrained/; Google's "
        "TF1 checkpoints are also converted to KerasHub presets, once.",
        Workspace,
        _cmd_fetch,
        tensorflow=True,
    ),
    Command(
        "suggest",
        "rank unlabelled texts by how much a label would teach the model (what to label next)",
        "Write the N texts of --input the model is least sure of (strategy margin or entropy; diverse also "
        "spreads them over the embedding space) to --output, most useful first, each with the model's guess, so "
        "labelling them is correcting. --format label-studio writes them as Label Studio tasks.",
        SuggestConfig,
        _cmd_suggest,
    ),
    Command(
        "feedback",
        "export (or count) the corrections POST /feedback stored",
        "export: write the corrections users sent to POST /feedback as a training CSV (all of them, oldest "
        "first); stats: count them by label. `make train FEEDBACK=1` adds them to the training split itself.",
        FeedbackConfig,
        _cmd_feedback,
    ),
    Command(
        "token",
        "make an API token and add its hash to a tokens file (for serve --api_tokens_file)",
        "Print a new random API token once and append its SHA-256 (sha256:<hex>) to the tokens file, so the file "
        "the server reads holds no secret. Clients send it as Authorization: Bearer <token>.",
        TokenConfig,
        _cmd_token,
    ),
    Command(
        "export-onnx",
        "write the serving graphs (fp32 and int8) into a model folder exported before they were",
        "Write the serving graph (serving/model.onnx, fp32) into a trained model folder from its Keras weights, "
        "checked against the Keras model, and its int8 twin (serving/model.int8.onnx), scored against it on the "
        "model's test split when the training data it records is at hand (precision auto serves int8 only then); "
        "the server needs neither TensorFlow nor Keras for them. `make train` writes both already; this is for "
        "folders exported before it did. Needs the training install.",
        ModelChoice,
        _cmd_export_onnx,  # loads TensorFlow itself, once it has work
    ),
    Command(
        "data",
        "download the Stack Overflow questions dataset (40,000 posts, 20 tags)",
        "Download the seed project's Stack Overflow dataset (columns post,tags) with a progress bar; an "
        "interrupted download resumes.",
        DataConfig,
        _cmd_data,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand (reads no environment and imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="python -m bertclf",
        description="Fine-tune a BERT-family text classifier on a labelled CSV, and use it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbose = "log debug details and TensorFlow's own start-up output (also: BERTCLF_TF_LOGS=1)"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.description)
        # Also after the command; SUPPRESS keeps it from resetting a -v given before the command.
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
        if command.name == "predict":
            sub.add_argument("texts", nargs="*", help="texts to classify (default: one per line from stdin)")
        if command.name == "feedback":
            sub.add_argument("action", choices=["export", "stats"], help="export them as a CSV, or count them by label")
        if command.name == "fetch":
            sub.add_argument(
                "name", nargs="?", default=DEFAULT_MODEL, help=f"checkpoint name or folder (default: {DEFAULT_MODEL})"
            )
        add_options(sub, command.settings, env=command.settings is ServeConfig)
        if command.name == "export-onnx":
            sub.add_argument(
                "--all", action="store_true", help="every folder in models_dir/trained/ that lacks the graph"
            )
        if command.name == "evaluate":
            for role in ("data", "validation_data", "test_data"):
                sub.add_argument(
                    f"--{role}",
                    metavar="FILE",
                    default=None,
                    help=f"the model's {role} file, if it is no longer where training read it "
                    "(it must have the SHA-256 recorded at training)",
                )
        sub.set_defaults(command=command)
    return parser


YES_NO_WORDS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})


def bare_flags(argv: list[str]) -> list[str]:
    """`argv` with "true" after a yes/no option given bare before a positional text, so that
    `predict --explain "some text"` explains the text instead of reading it as the option's value."""
    name = next((token for token in argv if not token.startswith("-")), None)  # the subcommand
    command = next((c for c in COMMANDS if c.name == name), None)
    if command is None:
        return argv
    flags = {
        option
        for f in dataclasses.fields(command.settings)
        if isinstance(f.default, bool)
        for option in (f"--{f.name}", f"--{f.name.replace('_', '-')}")
    }
    out: list[str] = []
    for i, token in enumerate(argv):
        out.append(token)
        following = argv[i + 1] if i + 1 < len(argv) else None
        if (
            token in flags
            and following is not None
            and not following.startswith("-")
            and following.strip().lower() not in YES_NO_WORDS
        ):
            out.append("true")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(bare_flags(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.verbose:
        os.environ["BERTCLF_TF_LOGS"] = "1"  # TensorFlow's own start-up output, if a command loads it
    try:
        if args.command.tensorflow:
            from bertclf.training.startup import import_tensorflow

            import_tensorflow(verbose=args.verbose)
        return args.command.run(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        missing = training_install_missing(err)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; models/latest_model_config.json still names the previous model", file=sys.stderr)
        return 130
