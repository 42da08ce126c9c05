"""Command line: `python -m bertclf train|predict|fetch`; options come from the config dataclass."""

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

# TensorFlow prints pages of C++ start-up chatter (CUDA probing, CPU flags); keep errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bertclf.config import DEFAULT_MODEL, ENGINES, PRECISIONS, ConfigError, ServeConfig, TrainConfig  # noqa: E402

log = logging.getLogger("bertclf")

EPILOG = """examples:
  python -m bertclf train                                 # sample data, default model
  python -m bertclf train --data my.csv --text_column body --label_column team --n_epochs 3
  python -m bertclf predict "How do I reverse a list?"    # uses models/latest_model_config.json
  echo "git push was rejected" | python -m bertclf predict
  python -m bertclf data                                  # the full Stack Overflow dataset
"""


def _add_config_options(parser, config_cls, defaults=None):
    for f in dataclasses.fields(config_cls):
        kind = f.metadata.get("type") or type(f.default)
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = getattr(defaults, f.name) if defaults is not None else f.default
        parser.add_argument(
            *names, dest=f.name, type=kind, default=default, choices=f.metadata.get("choices"),
            metavar=f.name.upper(), help=f"{f.metadata['help']} (default: {default})",
        )


def _cmd_train(args):
    from bertclf.train import train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    folder, model_config = train(cfg)
    report = (folder / "classification_report.txt").read_text(encoding="utf-8")
    training = model_config["training"]
    print(f"\n{report}")
    metrics = model_config["metrics"]
    print(f"test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
          f"(TF-IDF + logistic regression on the same split: accuracy {metrics['baseline']['accuracy']:.3f}, "
          f"macro-F1 {metrics['baseline']['macro_f1']:.3f})")
    print(f"trained {training['epochs_run']} epochs in {training['seconds']:.0f} s "
          f"({training['examples_per_second']:.1f} examples/s)")
    print(f"model: {model_config['name']}")
    print(f"exported to {folder}")
    return 0


def _add_model_options(parser):
    """Which trained model to load, and how to run it (predict, evaluate)."""
    parser.add_argument("--model_dir", "--model-dir", help="a trained model folder (default: the latest)")
    parser.add_argument("--models_dir", "--models-dir", default="models", help="where latest_model_config.json is")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="inference engine (default: auto, ONNX Runtime where the model has a fast graph)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="int8: quantized matrix products, faster on a CPU (default: fp32)")


def _load_predictor(args):
    """The Predictor `_add_model_options` describes."""
    from bertclf.predictor import Predictor

    options = dict(engine=args.engine, precision=args.precision)
    return Predictor(args.model_dir, **options) if args.model_dir else Predictor.latest(args.models_dir, **options)


def _cmd_predict(args):
    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("no texts to classify: pass them as arguments or one per line on stdin")
    predictor = _load_predictor(args)
    labels, probabilities = predictor.predict(texts)
    print(f"model: {predictor.name}")
    for text, label, probability in zip(texts, labels, probabilities):
        shown = text if len(text) <= 70 else text[:67] + "..."
        print(f"{label:>15}  {probability:6.3f}  {shown}")
    return 0


def _cmd_evaluate(args):
    from bertclf.predictor import evaluate_on_test_split

    predictor = _load_predictor(args)
    try:
        scores = evaluate_on_test_split(predictor)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    recorded = predictor.config.get("metrics", {})
    print(f"model: {predictor.name} ({predictor.engine}, {predictor.precision})")
    print(f"test split ({scores['n_test']} texts): accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}"
          f" (recorded at training: accuracy {recorded.get('accuracy', float('nan')):.4f}, "
          f"macro-F1 {recorded.get('macro_f1', float('nan')):.4f})")
    return 0


def _cmd_models(args):
    from bertclf.checkpoints import KNOWN_CHECKPOINTS
    from bertclf.google import CONVERTED, GOOGLE_CHECKPOINTS

    pretrained = Path(args.models_dir) / "pretrained"
    rows = [(spec.name, "BERT", "uncased", "~90 MB", (pretrained / spec.name / "source.json").is_file(),
             spec.description) for spec in KNOWN_CHECKPOINTS.values()]
    rows += [(spec.name, spec.family, "cased" if spec.cased else "uncased", spec.size,
              (pretrained / spec.name / CONVERTED / "source.json").is_file(), spec.description)
             for spec in GOOGLE_CHECKPOINTS.values()]
    print(f"{'name':<30} {'family':<7} {'casing':<8} {'download':>9}  {'cached':<6}  description")
    for name, family, casing, size, cached, description in rows:
        print(f"{name:<30} {family:<7} {casing:<8} {size:>9}  {'yes' if cached else 'no':<6}  {description}")
    print(f"\ncache: {pretrained}/; MODEL=<folder> also takes an unpacked Google, Hugging Face or KerasHub checkpoint")
    return 0


def _cmd_fetch(args):
    from bertclf.checkpoints import resolve

    checkpoint = resolve(args.name, args.models_dir)
    print(f"{checkpoint.name}: {checkpoint.family}, up to {checkpoint.max_sequence_length} tokens, in {checkpoint.path}")
    return 0


def _cmd_serve(args):
    import tempfile

    cfg = ServeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)})
    # The workers read their settings from the environment (gunicorn starts the factory by name).
    env = dict(os.environ)
    for f in dataclasses.fields(ServeConfig):
        value = getattr(cfg, f.name)
        env[f"BERTCLF_{f.name.upper()}"] = "" if value is None else str(value)
    # A fresh folder per server for the workers' metric files (summed by /metrics); gunicorn's
    # on_exit hook removes it.
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bertclf-metrics-")
    env["BERTCLF_REMOVE_METRICS_DIR"] = "1"
    command = [
        sys.executable, "-m", "gunicorn", "--config", "python:bertclf.serve.gunicorn_conf",
        "--bind", f"{cfg.host}:{cfg.port}", "--workers", str(cfg.workers), "--threads", str(cfg.threads),
        "--timeout", str(cfg.timeout), "--graceful-timeout", str(cfg.graceful_timeout),
        "bertclf.serve.app:create_app()",
    ]
    log.info("serving on http://%s:%d with %d worker(s) x %d thread(s)", cfg.host, cfg.port, cfg.workers, cfg.threads)
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # gunicorn takes this process over: signals reach it directly


STACK_OVERFLOW_URL = "https://storage.googleapis.com/tensorflow-workshop-examples/stack-overflow-data.csv"


def _cmd_data(args):
    from bertclf.download import download

    path = download(args.url, args.dest)
    print(f"saved {path}; train on it with: make train DATA={path}")
    return 0


def build_parser():
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m bertclf",
        description="Fine-tune a BERT-family text classifier on a labelled CSV, and use it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="fine-tune, evaluate and export a model",
        description="Fine-tune a pretrained checkpoint on labelled texts, evaluate it on a held-out "
        "test split and export it to models/trained/<timestamp>_<model>/, then point "
        "models/latest_model_config.json at it.",
    )
    _add_config_options(train, TrainConfig)
    train.set_defaults(run=_cmd_train)

    predict = commands.add_parser(
        "predict", help="classify texts with a trained model",
        description="Print the predicted label and its probability for each text.",
    )
    predict.add_argument("texts", nargs="*", help="texts to classify (default: one per line from stdin)")
    _add_model_options(predict)
    predict.set_defaults(run=_cmd_predict)

    evaluate = commands.add_parser(
        "evaluate", help="re-score a trained model on its test split (e.g. int8 against fp32)",
        description="Rebuild the test split a model was evaluated on (same files, same seed) and score the model "
                    "with the chosen engine and precision.",
    )
    _add_model_options(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)

    models = commands.add_parser(
        "models", help="list the pretrained checkpoints MODEL= knows by name",
        description="List the known checkpoint names with family, casing, download size and whether each is cached.",
    )
    models.add_argument("--models_dir", "--models-dir", default="models", help="where pretrained/ lives")
    models.set_defaults(run=_cmd_models)

    fetch = commands.add_parser(
        "fetch", help="download, verify and convert a pretrained checkpoint ahead of training",
        description="Download (if needed), verify and cache a pretrained checkpoint under models/pretrained/; "
                    "Google's TF1 checkpoints are also converted to KerasHub presets, once.",
    )
    fetch.add_argument("name", nargs="?", default=DEFAULT_MODEL, help=f"checkpoint name (default: {DEFAULT_MODEL})")
    fetch.add_argument("--models_dir", "--models-dir", default="models", help="where pretrained/ lives")
    fetch.set_defaults(run=_cmd_fetch)

    serve = commands.add_parser(
        "serve", help="serve the latest model over HTTP (gunicorn + Flask)",
        description="Serve POST /predict {\"x\": [texts]} and GET /health, /ready, /model, /metrics. "
        "Every option can also be set as an environment variable BERTCLF_<OPTION>.",
    )
    _add_config_options(serve, ServeConfig, defaults=ServeConfig.from_env())
    serve.set_defaults(run=_cmd_serve)

    data = commands.add_parser(
        "data", help="download the Stack Overflow questions dataset (40,000 posts, 20 tags)",
        description="Download the seed project's Stack Overflow dataset (columns post,tags) with a "
        "progress bar; an interrupted download resumes.",
    )
    data.add_argument("--url", default=STACK_OVERFLOW_URL, help="where to download from")
    data.add_argument("--dest", default="data/stack-overflow-data.csv", help="where to save it")
    data.set_defaults(run=_cmd_data)
    return parser


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except ConfigError as err:  # a bad BERTCLF_* environment variable
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    from bertclf.errors import USER_ERRORS

    try:
        return args.run(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; models/latest_model_config.json still names the previous model", file=sys.stderr)
        return 130
