"""Label Studio, the labelling tool our users already run: its JSON formats, both ways.

- Pre-annotations: `predict --input rows.csv --output tasks.json --format label-studio` writes one
  task per row, `{"data": {<every column>}, "predictions": [{"model_version", "score", "result":
  [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [...]}}]}]}`,
  and beside it the labeling config to paste into the project (`labeling_config`): a Text tag
  showing the text column and a Choices tag with the model's labels (choice="multiple" for a
  multi-label model). An abstained row gets no prediction: the person labels it from scratch.
- Training data: `make train DATA=export.json` reads a project's JSON export (Export > JSON): each
  task's text from its `data`, its label from the choices of its latest annotation that was not
  cancelled (several choices: multi-label, joined with the label separator); tasks nobody labelled
  are left out and counted.

Only the standard library: the serving install writes pre-annotations, the training install reads
exports. The format is the one label-studio-sdk defines (tests/test_labelstudio.py checks ours with
its LabelInterface in a slow test).
"""

from typing import Any
from xml.sax.saxutils import quoteattr

from bertclf.errors import DataError

FROM_NAME = "label"  # the Choices tag
TO_NAME = "text"  # the Text tag


def labeling_config(classes: list[str], text_column: str, multi_label: bool) -> str:
    """The labeling config (XML) that shows `text_column` and offers `classes`, as tasks.json expects."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in classes)
    return (
        "<View>\n"
        f"  <Text name={quoteattr(TO_NAME)} value={quoteattr('$' + text_column)}/>\n"
        f"  <Choices name={quoteattr(FROM_NAME)} toName={quoteattr(TO_NAME)} "
        f'choice={quoteattr("multiple" if multi_label else "single")} showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def task(row: dict, prediction: Any, probability: Any, model_version: str) -> dict:
    """One Label Studio task: the row as its data, the model's answer as a prediction (none when it
    abstained or, multi-label, named no label). Its score is the answer's probability (multi-label:
    the lowest of the chosen labels' probabilities)."""
    chosen = prediction if isinstance(prediction, list) else ([] if prediction is None else [prediction])
    if not chosen:
        return {"data": row, "predictions": []}
    score = min(probability) if isinstance(probability, list) else probability
    result = {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": chosen}}
    return {"data": row, "predictions": [{"model_version": model_version, "score": score, "result": [result]}]}


def is_export(value: Any) -> bool:
    """Whether a parsed JSON document is a Label Studio export: a list of tasks with `data`."""
    return isinstance(value, list) and bool(value) and all(isinstance(t, dict) and "data" in t for t in value[:50])


def rows_from_export(tasks: list, path: str, separator: str = "|") -> tuple[list[dict], str, int]:
    """(rows, the label key, tasks left out for want of an annotation) of a JSON export: each row is
    a task's data plus its annotated label(s), joined with `separator` when several.

    Raises:
        DataError: a task that is not an object, data that is not an object, or a choice holding
            the separator (say with the file and the task's position).
    """
    rows, unlabelled = [], 0
    keys = {key for t in tasks if isinstance(t, dict) and isinstance(t.get("data"), dict) for key in t["data"]}
    label_key = "label" if "label" not in keys else "label_studio_choices"
    for position, item in enumerate(tasks, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
            raise DataError(f'{path}: task {position} has no "data" object; export the project as JSON')
        choices = _annotated(item)
        if not choices:
            unlabelled += 1
            continue
        clash = [c for c in choices if separator in c]
        if clash:
            raise DataError(
                f"{path}: task {position}'s choice {clash[0]!r} holds the label separator {separator!r}; "
                "set LABEL_SEPARATOR= to a string no label holds"
            )
        rows.append({**item["data"], label_key: separator.join(choices)})
    return rows, label_key, unlabelled


def _annotated(item: dict) -> list[str]:
    """The choices of a task's latest annotation that was not cancelled (empty: none)."""
    annotations = [a for a in item.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    for annotation in reversed(annotations):  # Label Studio lists them oldest first
        chosen = [
            str(choice)
            for region in annotation.get("result") or []
            if isinstance(region, dict) and region.get("type") == "choices"
            for choice in (region.get("value") or {}).get("choices") or []
        ]
        if chosen:
            return list(dict.fromkeys(chosen))
    return []
