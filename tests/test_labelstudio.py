"""Label Studio both ways: `predict --format label-studio` writes tasks with the answers as
pre-annotations and the labeling config to paste; `make train DATA=export.json` reads a project's
JSON export (latest annotation that was not cancelled; several choices are multi-label). A slow
test checks what we write with label-studio-sdk's own LabelInterface, in its own virtualenv
(its pins conflict with ours: it needs numpy < 2.3)."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from bertclf.config import TrainConfig
from bertclf.errors import ConfigError, DataError
from bertclf.inference.labelfile import label_file
from bertclf.inference.predictor import Predictor
from bertclf.labelstudio import labeling_config
from bertclf.training.data import load_splits, read_examples

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("bug", "docs", "ui")


class Named:
    """A fake model: a text's labels are the classes it names; nothing named: it abstains."""

    classes = CLASSES
    name = "BERT 2026-12-06 fake"

    def __init__(self, multi_label=False):
        self.config = {"hyperparameters": {"text_column": "body"}}
        self.thresholds = [0.5] * 3 if multi_label else None

    def predict_proba(self, texts):
        rows = np.full((len(texts), 3), 0.05, np.float32)
        for i, text in enumerate(texts):
            for k, name in enumerate(CLASSES):
                if name in text:
                    rows[i, k] = 0.9
        return rows

    def decide(self, rows):
        if self.thresholds is not None:
            chosen = [[CLASSES[k] for k in range(3) if row[k] >= 0.5] for row in rows]
            return chosen, [[float(row[k]) for k in range(3) if row[k] >= 0.5] for row in rows]
        return [CLASSES[row.argmax()] if row.max() >= 0.5 else None for row in rows], [float(r.max()) for r in rows]


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


ROWS = [
    {"id": "1", "body": "the ui freezes", "team": "web"},
    {"id": "2", "body": "docs typo, and a bug", "team": "core"},
    {"id": "3", "body": "nothing to see", "team": ""},
    {"id": "4", "body": 'naïve "quotes" <b>ui</b> 🚀', "team": "web"},
]


def test_predictions_become_label_studio_tasks_and_a_config_to_paste(tmp_path):
    source = write_csv(tmp_path / "in.csv", ROWS)
    done = label_file(Named(), source, tmp_path / "tasks.json", output_format="label-studio")
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    assert done["rows"] == 4 and [t["data"] for t in tasks] == ROWS  # every column, as data
    first = tasks[0]["predictions"][0]
    assert first["model_version"] == Named.name and first["score"] == pytest.approx(0.9)
    assert first["result"] == [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["ui"]}}
    ]
    assert tasks[2]["predictions"] == []  # abstained: the person labels it from scratch
    config = ET.fromstring(Path(done["label_config"]).read_text(encoding="utf-8"))
    assert done["label_config"] == str(tmp_path / "tasks.label_config.xml")
    text, choices = config.find("Text"), config.find("Choices")
    assert text.get("name") == "text" and text.get("value") == "$body"  # the column the tasks' data holds
    assert choices.get("name") == "label" and choices.get("toName") == "text" and choices.get("choice") == "single"
    assert [c.get("value") for c in choices.findall("Choice")] == list(CLASSES)


def test_a_multi_label_model_pre_annotates_every_label_it_gives(tmp_path):
    source = write_csv(tmp_path / "in.csv", ROWS)
    done = label_file(Named(multi_label=True), source, tmp_path / "tasks.json", output_format="label-studio")
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    assert tasks[1]["predictions"][0]["result"][0]["value"]["choices"] == ["bug", "docs"]
    assert tasks[2]["predictions"] == []
    assert ET.fromstring(Path(done["label_config"]).read_text()).find("Choices").get("choice") == "multiple"


def test_label_studio_output_must_be_json_and_leaves_nothing_on_a_bad_name(tmp_path):
    source = write_csv(tmp_path / "in.csv", ROWS)
    with pytest.raises(ConfigError, match=r"name the output \.json"):
        label_file(Named(), source, tmp_path / "tasks.csv", output_format="label-studio")
    assert not list(tmp_path.glob("tasks*"))
    with pytest.raises(ValueError, match="--format label-studio labels a file"):
        from bertclf.config import LabelConfig

        LabelConfig(format="label-studio")


def test_labels_are_escaped_in_the_config():
    config = labeling_config(['say "hi"', "a<b", "x&y"], "text", multi_label=False)
    assert [c.get("value") for c in ET.fromstring(config).iter("Choice")] == ['say "hi"', "a<b", "x&y"]


def annotation(choices, cancelled=False):
    region = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": choices}}
    return {"id": 1, "was_cancelled": cancelled, "result": [region] if choices else []}


EXPORT = [
    {"id": 1, "data": {"text": "the ui freezes"}, "annotations": [annotation(["bug"]), annotation(["ui"])]},
    {"id": 2, "data": {"text": "typo in docs"}, "annotations": [annotation(["docs"]), annotation(["bug"], True)]},
    {"id": 3, "data": {"text": "nobody looked"}, "annotations": [], "predictions": []},
    {"id": 4, "data": {"text": "crash in the ui"}, "annotations": [annotation(["bug", "ui"])]},
]


def test_a_label_studio_export_reads_as_training_data(tmp_path, caplog):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(EXPORT), encoding="utf-8")
    examples = read_examples(path)
    # The latest annotation wins, a cancelled one never; an unlabelled task is left out and said.
    assert examples.texts == ["the ui freezes", "typo in docs", "crash in the ui"]
    assert examples.labels == ["ui", "docs", "bug|ui"]
    assert "1 of 4 Label Studio tasks have no annotation" in caplog.text
    assert read_examples(path, separator=";").labels[2] == "bug;ui"


def test_an_export_with_several_choices_trains_multi_label(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(EXPORT * 10), encoding="utf-8")
    splits = load_splits(TrainConfig(data=str(path), models_dir=str(tmp_path / "models")))
    assert splits.multi_label and sorted(splits.classes) == ["bug", "docs", "ui"]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('[{"text": "a", "label": "b"}]', "not a Label Studio export"),
        (json.dumps([{"data": {"text": "a"}, "annotations": []}]), "none of its 1 Label Studio tasks is annotated"),
        (json.dumps([{"data": {"text": "a"}, "annotations": [annotation(["x|y"])]}]), "holds the label separator"),
        ('[{"data": {"text": "a"}', "not valid JSON"),
    ],
)
def test_exports_that_cannot_train_say_why(tmp_path, content, fragment):
    path = tmp_path / "export.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=fragment):
        read_examples(path)


def test_pre_annotations_accepted_as_they_are_train_to_the_same_labels(tmp_path):
    """The loop: label with the model, a person accepts the pre-annotations, train on the export."""
    source = write_csv(tmp_path / "in.csv", ROWS)
    label_file(Named(multi_label=True), source, tmp_path / "tasks.json", output_format="label-studio")
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    exported = [
        {**t, "annotations": [{"was_cancelled": False, "result": p["result"]} for p in t["predictions"]]} for t in tasks
    ]
    (tmp_path / "export.json").write_text(json.dumps(exported), encoding="utf-8")
    examples = read_examples(tmp_path / "export.json", text_column="body", label_column="label")
    assert examples.labels == ["ui", "bug|docs", "ui"]


def test_the_cli_writes_tasks_with_a_real_model(tmp_path, trained_models):
    models, folder = trained_models
    texts = ["apple banana lemon", "hammer saw", "cat dog"]
    source = write_csv(tmp_path / "in.csv", [{"text": t, "n": str(i)} for i, t in enumerate(texts)])
    command = [sys.executable, "-m", "bertclf", "predict", "--models_dir", str(models), "--input", str(source)]
    result = subprocess.run(
        [*command, "--output", str(tmp_path / "tasks.json"), "--format", "label-studio"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Label Studio: import" in result.stderr and "tasks.label_config.xml" in result.stderr
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    labels, probabilities = Predictor(folder).predict(texts)
    assert [t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks] == [[label] for label in labels]
    assert [t["predictions"][0]["score"] for t in tasks] == pytest.approx(probabilities, abs=1e-5)


LABEL_STUDIO_PYTHON = Path(os.environ.get("BERTCLF_LABEL_STUDIO_PYTHON", ROOT / ".venv-labelstudio" / "bin" / "python"))
CHECK = """
import copy, json, sys
from label_studio_sdk.label_interface import LabelInterface
config, tasks = (open(p, encoding="utf-8").read() for p in sys.argv[1:])
interface = LabelInterface(config)
checked = 0
for task in json.loads(tasks):
    for prediction in task["predictions"]:
        assert interface.validate_prediction(prediction), prediction
        wrong = copy.deepcopy(prediction)
        wrong["result"][0]["value"]["choices"] = ["a label the config does not offer"]
        assert not interface.validate_prediction(wrong)  # the check can fail
        checked += 1
print(json.dumps({"checked": checked, "sample": interface.generate_sample_annotation()}))
"""


@pytest.mark.slow
def test_what_we_write_is_what_label_studio_sdk_accepts(tmp_path):
    if not LABEL_STUDIO_PYTHON.exists():
        pytest.fail(f"no {LABEL_STUDIO_PYTHON}: `make test-slow` creates it (label-studio-sdk in its own virtualenv)")
    for multi_label in (False, True):
        source = write_csv(tmp_path / "in.csv", ROWS)
        target = tmp_path / f"tasks-{multi_label}.json"
        done = label_file(Named(multi_label), source, target, output_format="label-studio")
        check = subprocess.run(
            [str(LABEL_STUDIO_PYTHON), "-c", CHECK, done["label_config"], str(target)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert check.returncode == 0, check.stderr
        answer = json.loads(check.stdout.strip().splitlines()[-1])
        assert answer["checked"] == 3  # every row but the abstained one
        sample = answer["sample"]
        # A sample annotation the SDK made for our config reads back as a label of our model.
        export = [{"id": 1, "data": {"body": "x"}, "annotations": [sample]}]
        (tmp_path / "export.json").write_text(json.dumps(export), encoding="utf-8")
        labels = read_examples(tmp_path / "export.json", text_column="body").labels[0].split("|")
        assert labels and set(labels) <= set(CLASSES)
