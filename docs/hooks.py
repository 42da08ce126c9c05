"""MkDocs hook: the reference tables are generated at build time from the code that defines them,
so they cannot drift from it.

A page writes `<!-- generated: NAME -->` on a line of its own; the build replaces it with:

    train-parameters   every `train` option (TrainConfig): make variable, option, default, meaning
    serve-settings     every `serve` option (ServeConfig) and its BERTCLF_<NAME> environment variable
    cli                every subcommand of `python -m bertclf` and its options (the argument parser)
    make-targets       every `make` target and what it does (the Makefile's `## ` comments)
    quality-10k        the accuracy evidence on the 10,000-text sets: levers, seeds' spread, paired
                       differences and verdicts, abstain thresholds (benchmarks/quality.py's tables of
                       benchmarks/results/quality-10k.jsonl, the runs' own JSON lines)

An unknown NAME fails the build.
"""

import argparse
import dataclasses
import importlib.util
import re
from pathlib import Path

from bertclf.cli import COMMANDS, build_parser
from bertclf.config import ServeConfig, TrainConfig, env_name

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- generated: ([a-z0-9-]+) -->$", re.M)


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(field: dataclasses.Field) -> str:
    if field.default is None:
        return ""
    return f"`{_cell(field.default)}`"


def make_variables() -> dict[str, str]:
    """option name -> make variable, from the Makefile's TRAIN_VARS pairs."""
    makefile = (ROOT / "Makefile").read_text()
    block = re.search(r"^TRAIN_VARS := (.*?)\n(?!\t)", makefile, re.S | re.M)
    if block is None:
        raise RuntimeError("docs/hooks.py: no TRAIN_VARS in the Makefile")
    pairs = block.group(1).replace("\\\n", " ").split()
    return {option: variable for variable, _, option in (pair.partition(":") for pair in pairs)}


def train_parameters() -> str:
    variables = make_variables()
    rows = ["| make variable | option | default | meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(TrainConfig):
        variable = variables.get(field.name)
        rows.append(
            f"| {f'`{variable}`' if variable else ''} | `--{field.name}` | {_default(field)} "
            f"| {_cell(field.metadata['help'])} |"
        )
    return "\n".join(rows)


def serve_settings() -> str:
    rows = ["| option | environment variable | default | meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(ServeConfig):
        rows.append(
            f"| `--{field.name}` | `{env_name(field.name)}` | {_default(field)} | {_cell(field.metadata['help'])} |"
        )
    return "\n".join(rows)


def cli() -> str:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = []
    for command in COMMANDS:
        sub = subparsers.choices[command.name]
        parts.append(f"### `python -m bertclf {command.name}`\n\n{command.description}\n")
        rows = ["| argument | meaning |", "|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
            text = action.help or ""
            if action.choices and not action.option_strings:
                text += f" ({', '.join(map(str, action.choices))})"
            rows.append(f"| {name} | {_cell(text)} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def make_targets() -> str:
    rows = ["| target | what it does |", "|---|---|"]
    for match in re.finditer(r"^([a-zA-Z_-]+):[^\n#]*## (.*)$", (ROOT / "Makefile").read_text(), re.M):
        rows.append(f"| `make {match.group(1)}` | {_cell(match.group(2))} |")
    return "\n".join(rows)


QUALITY_RESULTS = ROOT / "benchmarks" / "results" / "quality-10k.jsonl"


def load_quality():
    """benchmarks/quality.py as a module: benchmarks/ is scripts, not a package, so it loads by its
    path (it imports nothing heavy at the top)."""
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("docs/hooks.py: cannot load benchmarks/quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    return quality


def quality_10k() -> str:
    quality = load_quality()
    return quality.docs_tables(quality.read_results(QUALITY_RESULTS))


GENERATORS = {
    "train-parameters": train_parameters,
    "serve-settings": serve_settings,
    "cli": cli,
    "make-targets": make_targets,
    "quality-10k": quality_10k,
}


def render(markdown: str) -> str:
    """`markdown` with every marker replaced by its table."""

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"docs: unknown generated table {name!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[name]()

    rendered = MARKER.sub(table, markdown)
    left = re.search(r"^<!-- generated:.*$", rendered, re.M)
    if left:  # a name with a character the marker does not allow would otherwise stay a silent comment
        raise ValueError(f"docs: malformed marker {left.group(0)!r} (names: lowercase letters, digits, -)")
    return rendered


def on_page_markdown(markdown, page, config, files):
    return render(markdown)
