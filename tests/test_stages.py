"""Where a training run's time goes: the stage record in metrics.json and the table make train prints."""

import json

from bertclf.training.stages import Stages, table


def test_stages_add_up_to_the_wall_time_and_the_rest_is_other():
    clock = iter([100.0, 100.0, 103.0, 103.0, 104.0, 110.0, 110.0, 111.0, 112.0, 112.0])
    stages = Stages(clock=lambda: next(clock))  # 100
    with stages("read data"):  # 100 -> 103
        pass
    with stages("fit: epoch 1 training"):  # 103 -> 104
        pass
    stages.add("fit: epoch 1 validation", 1.0)
    with stages("fit: epoch 2 training"):  # 110 -> 110
        pass
    with stages("read data"):  # 111 -> 112: a stage run twice adds up
        pass
    record = stages.record()  # wall time: 112 - 100
    assert record["wall_seconds"] == 12.0
    assert record["fit_seconds"] == 2.0
    assert record["other_share"] == round(10 / 12, 4)
    names = [row["stage"] for row in record["stages"]]
    assert names == ["read data", "fit: epoch 1 training", "fit: epoch 1 validation", "fit: epoch 2 training", "other"]
    seconds = {row["stage"]: row["seconds"] for row in record["stages"]}
    assert seconds["read data"] == 4.0 and seconds["other"] == 6.0
    assert abs(sum(row["share"] for row in record["stages"]) - 1) < 1e-3
    text = table(record)
    assert (
        "fit: training (2 epochs)" in text
        and "fit: validation" in text
        and "(2 epochs)" not in text.split("fit: validation")[1].splitlines()[0]
    )
    assert text.splitlines()[-1] == "everything but the fit: 83.3% of the run"


def test_a_training_run_records_every_stage_in_metrics_json(tiny_run):
    _, folder, model_config = tiny_run
    timing = json.loads((folder / "metrics.json").read_text())["time"]
    names = [row["stage"] for row in timing["stages"]]
    for stage in (
        "read data",
        "load the pretrained model",
        "tokenize",
        "probe head (head_init=probe)",
        "fit: epoch 1 training",
        "fit: epoch 1 validation",
        f"fit: epoch {model_config['training']['epochs_run']} validation",
        "TF-IDF baseline",
        "calibration",
        "test evaluation",
        "golden set",
        "save the weights",
        "ONNX export and parity check",
        "write the folder",
        "other",
    ):
        assert stage in names, stage
    assert all(row["seconds"] >= 0 for row in timing["stages"])
    fit_rows = [row["seconds"] for row in timing["stages"] if row["stage"].startswith("fit")]
    assert abs(sum(fit_rows) - timing["fit_seconds"]) <= 0.005 * (len(fit_rows) + 1)  # each rounded to 0.01 s
    assert 0 < timing["fit_seconds"] < timing["wall_seconds"]
    assert sum(row["seconds"] for row in timing["stages"]) <= timing["wall_seconds"] + 0.1
