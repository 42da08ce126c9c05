"""The int8 graph is written and checked at export, and `--precision auto` serves it only where the
export measured that it keeps the model's accuracy."""

import json
import logging
import re
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bertclf.inference import quantize as quantize_module
from bertclf.inference.openvino_engine import bf16_unavailable
from bertclf.inference.precision import RECORD_KEY, auto_precision
from bertclf.inference.predictor import Predictor
from bertclf.inference.quantize import INT8_GRAPH, QUANTIZATIONS
from bertclf.inference.runtime import SERVING_GRAPH
from bertclf.training import quantization
from bertclf.training.evaluate import saved_splits
from conftest import NO_BF16, copy_model, make_app, wait_until

FP32 = {"accuracy": 0.8778, "macro_f1": 0.8704}


def folder_with(tmp_path, record, int8_file=True):
    folder = tmp_path / "model"
    (folder / "serving").mkdir(parents=True, exist_ok=True)
    if int8_file:
        (folder / INT8_GRAPH).write_bytes(b"graph")
    return {RECORD_KEY: record}, folder


@pytest.mark.parametrize(
    ("int8", "expected", "why"),
    [
        (
            {"accuracy": 0.8778, "macro_f1": 0.8689},
            "int8",
            r"^int8: it keeps the model's accuracy \(test accuracy 0.8778",
        ),
        ({"accuracy": 0.8728, "macro_f1": 0.8604}, "int8", r"keeps"),  # exactly at both limits
        ({"accuracy": 0.8727, "macro_f1": 0.8704}, "fp32", r"not int8: it loses more than 0.5% accuracy"),
        ({"accuracy": 0.8778, "macro_f1": 0.8603}, "fp32", r"not int8: it loses more than 1% macro_f1"),
        ({"accuracy": "0.9", "macro_f1": 0.87}, "fp32", r"unreadable"),
        ({"accuracy": float("nan"), "macro_f1": 0.87}, "fp32", r"unreadable"),
        ({"accuracy": True, "macro_f1": 0.87}, "fp32", r"unreadable"),
        ({"macro_f1": 0.87}, "fp32", r"unreadable"),
        ("int8", "fp32", r"accuracy is unknown"),
    ],
)
def test_auto_serves_int8_only_within_half_a_point_of_accuracy_and_a_point_of_f1(tmp_path, int8, expected, why):
    config, folder = folder_with(tmp_path, {"fp32": FP32, "int8": int8})
    precision, reason, basis = auto_precision(config, folder, NO_BF16)
    assert precision == expected
    assert re.search(why, reason), reason
    assert basis == {"int8": "kept_accuracy", "fp32": "lost_accuracy" if "loses" in why else "not_measured"}[expected]


@pytest.mark.parametrize(
    ("bf16", "cpu", "expected", "why"),
    [
        ({"accuracy": 0.8753, "macro_f1": 0.87}, None, "bf16", r"^bf16: it keeps .* this CPU computes bfloat16"),
        (
            {"accuracy": 0.8753, "macro_f1": 0.87},
            NO_BF16,
            "int8",
            r"^int8: it keeps .*; not bf16: this CPU has neither",
        ),
        ({"accuracy": 0.8600, "macro_f1": 0.87}, None, "int8", r"not bf16: it loses more than 0.5% accuracy"),
        (None, None, "int8", r"not bf16: its accuracy is unknown \(the exporting machine could not run it"),
    ],
)
def test_auto_prefers_bf16_where_the_cpu_computes_it_and_it_keeps_accuracy(tmp_path, bf16, cpu, expected, why):
    record = {"fp32": FP32, "int8": {"accuracy": 0.8778, "macro_f1": 0.8689}, "bf16": bf16}
    if bf16 is None:
        record["bf16_unchecked"] = f"the exporting machine could not run it: {NO_BF16}"
    config, folder = folder_with(tmp_path, record)
    precision, reason, basis = auto_precision(config, folder, cpu)
    assert precision == expected and re.search(why, reason), reason
    assert basis == "kept_accuracy"


def test_auto_keeps_fp32_without_a_checked_int8_graph(tmp_path):
    config, folder = folder_with(tmp_path, {"fp32": FP32, "int8": {"accuracy": 0.9, "macro_f1": 0.9}}, int8_file=False)
    assert auto_precision(config, folder, NO_BF16) == (
        "fp32",
        "not bf16: its accuracy is unknown (not measured at export); "
        "not int8: no serving/model.int8.onnx (`export-onnx` writes it)",
        "not_measured",
    )
    config, folder = folder_with(tmp_path, {"unchecked": "the training data is not at hand", "int8": None})
    assert auto_precision(config, folder, None) == (
        "fp32",
        "not bf16: its accuracy is unknown (the training data is not at hand); "
        "not int8: its accuracy is unknown (the training data is not at hand)",
        "not_measured",
    )
    assert auto_precision({RECORD_KEY: ["not", "a", "record"]}, folder, None)[0] == "fp32"
    assert auto_precision({}, folder, None)[0] == "fp32"
    # a multi-label model is judged on micro-F1
    multi = {"fp32": {"accuracy": 0.5, "micro_f1": 0.8, "macro_f1": 0.5}, "int8": {"accuracy": 0.5, "micro_f1": 0.78}}
    config, folder = folder_with(tmp_path, multi)
    assert auto_precision(config, folder, NO_BF16)[1].endswith(
        "not int8: it loses more than 1% micro_f1 (test accuracy 0.5000 vs 0.5000, micro_f1 0.7800 vs 0.8000 in fp32)"
    )


def flipped(graph: bytes, labels: int) -> bytes:
    """A quantization gone wrong: the output layer negated, so the answers flip."""
    model = onnx.load_model_from_string(graph)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.ndim == 2 and values.shape[1] == labels and values.dtype == np.float32:
            tensor.CopyFrom(numpy_helper.from_array(-values, tensor.name))
            return model.SerializeToString()
    raise AssertionError("no output kernel")


def test_the_export_wrote_and_scored_both_graphs(trained_models):
    _, folder = trained_models
    config = json.loads((folder / "model_config.json").read_text())
    record = config[RECORD_KEY]
    assert (folder / INT8_GRAPH).is_file() and (folder / SERVING_GRAPH).is_file()
    assert record["test_texts"] == config["data"]["n_test"]
    assert record["fp32"]["accuracy"] == pytest.approx(config["metrics"]["accuracy"], abs=1e-4)
    assert {"accuracy", "macro_f1", "changed_share", "max_probability_change"} <= record["int8"].keys()
    assert [t["name"] for t in record["int8"]["tried_on_validation"]] == [q.name for q in QUANTIZATIONS]
    assert record["int8"]["quantization"]["name"] in {q.name for q in QUANTIZATIONS}
    assert json.loads((folder / "metrics.json").read_text())[RECORD_KEY] == record
    # what the record decided is what auto serves
    predictor = Predictor(folder)
    assert (predictor.precision, predictor.precision_reason) == (record["auto"], record["auto_reason"])


def test_a_model_whose_int8_graph_loses_accuracy_stays_fp32(trained_models, tmp_path, monkeypatch, no_bf16):
    models_dir, folder = trained_models
    broken, _ = copy_model(folder, "20990101-000000_lossy")
    monkeypatch.chdir(models_dir.parent)  # where the run read its data.csv
    real = quantization.quantize
    monkeypatch.setattr(quantization, "quantize", lambda graph, choice: flipped(real(graph, choice), 3))
    record = quantization.int8_for_saved_folder(broken)
    assert record["int8"]["accuracy"] < record["fp32"]["accuracy"] - 0.5
    assert record["int8"]["changed_share"] > 0.5
    assert record["auto"] == "fp32" and "loses more than 0.5% accuracy" in record["auto_reason"]
    saved = json.loads((broken / "model_config.json").read_text())[RECORD_KEY]
    assert saved == record
    predictor = Predictor(broken)
    assert predictor.precision == "fp32" and "loses more than" in predictor.precision_reason
    assert predictor.precision_basis == "lost_accuracy"
    assert Predictor(broken, precision="fp32").precision_reason == "as asked (precision fp32)"


def test_the_export_keeps_the_quantization_that_changes_fewest_answers(trained_models, monkeypatch, no_bf16):
    models_dir, folder = trained_models
    other, _ = copy_model(folder, "20990101-000000_choice")
    monkeypatch.chdir(models_dir.parent)
    real = quantization.quantize

    def first_one_flips(graph, choice):
        return flipped(real(graph, choice), 3) if choice == QUANTIZATIONS[0] else real(graph, choice)

    monkeypatch.setattr(quantization, "quantize", first_one_flips)
    record = quantization.int8_for_saved_folder(other)
    tried = record["int8"]["tried_on_validation"]
    assert tried[0]["validation_changed_share"] > 0.5 and tried[1]["validation_changed_share"] == 0
    assert record["int8"]["quantization"]["name"] == QUANTIZATIONS[1].name, "the first that changes fewest"
    assert record["auto"] == "int8"
    splits = saved_splits(json.loads((other / "model_config.json").read_text()), other)
    served = Predictor(other).predict(list(splits.test.texts))[0]
    assert served == Predictor(other, precision="fp32").predict(list(splits.test.texts))[0]


def test_export_onnx_without_the_training_data_writes_int8_unchecked(trained_models, tmp_path, monkeypatch, no_bf16):
    _, folder = trained_models
    older = tmp_path / folder.name
    shutil.copytree(folder, older)
    config = json.loads((older / "model_config.json").read_text())
    config["data"]["data"].update(file=str(tmp_path / "gone.csv"), given="gone.csv")  # data deleted since
    (older / "model_config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    (older / INT8_GRAPH).unlink()
    record = quantization.int8_for_saved_folder(older)
    assert record["auto"] == "fp32" and "the training data is not at hand" in record["unchecked"]
    assert (older / INT8_GRAPH).is_file()
    predictor = Predictor(older)
    assert predictor.precision == "fp32" and "accuracy is unknown" in predictor.precision_reason
    assert Predictor(older, precision="int8").precision == "int8", "forcing it still serves it"


def test_forced_int8_on_an_older_folder_quantizes_at_load(trained_models, tmp_path, caplog, no_bf16):
    _, folder = trained_models
    older = tmp_path / folder.name
    shutil.copytree(folder, older)
    (older / INT8_GRAPH).unlink()
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(older, precision="int8")
    assert predictor.precision == "int8" and "quantized the fp32 graph for this load" in caplog.text
    assert Predictor(older).precision == "fp32", "auto does not serve an unchecked int8 graph"


def test_quantize_writes_a_graph_without_the_quantizers_log_lines(trained_models, caplog):
    _, folder = trained_models
    with caplog.at_level(logging.INFO):
        graph = quantize_module.quantize((folder / SERVING_GRAPH).read_bytes())
    assert graph[:2] and not [r for r in caplog.records if "onnxruntime" in r.pathname]


def test_the_server_says_which_precision_serves_and_why(models, caplog):
    models_dir, folder = models
    record = json.loads((folder / "model_config.json").read_text())[RECORD_KEY]
    with caplog.at_level(logging.INFO):
        app = make_app(models_dir)
        manager = app.extensions["bertclf"].manager
        wait_until(lambda: "loaded and warmed" in caplog.text)  # logged just after the swap
    try:
        client = app.test_client()
        status = client.get("/model").get_json()
        assert (status["precision"], status["precision_reason"]) == (record["auto"], record["auto_reason"])
        assert f"in {record['auto']}, {record['auto_reason']}" in caplog.text, "the start-up log says it"
        info = [line for line in client.get("/metrics").get_data(as_text=True).splitlines() if "model_info{" in line]
        assert len(info) == 1 and f'precision="{record["auto"]}"' in info[0]
        assert f'runtime="{"openvino" if record["auto"] == "bf16" else "onnxruntime"}"' in info[0]
        assert 'why="kept_accuracy"' in info[0] or (record["auto"] == "fp32" and 'why="' in info[0])
        assert status["runtime"] == ("openvino" if record["auto"] == "bf16" else "onnxruntime")
    finally:
        manager.stop()


@pytest.mark.skipif(
    bf16_unavailable() is not None, reason=f"bf16 needs a CPU with AMX or AVX512-BF16: {bf16_unavailable()}"
)
def test_bf16_is_measured_at_export_and_served_on_openvino_where_the_cpu_computes_it(trained_models, monkeypatch):
    _, folder = trained_models
    record = json.loads((folder / "model_config.json").read_text())[RECORD_KEY]
    assert record["bf16"]["runtime"] == "openvino" and record["bf16"]["accuracy"] >= record["fp32"]["accuracy"] - 0.005
    served = Predictor(folder)
    assert (served.precision, served.engine, served.runtime) == ("bf16", "onnx", "openvino")
    assert record["auto"] == "bf16"
    assert served.golden["precision"] == "bf16" and served.golden["max_difference"] < 0.05
    fp32 = Predictor(folder, precision="fp32")
    texts = ["apple mango", "a saw and a drill", "the cat sat", "zebra " * 40]
    np.testing.assert_allclose(served.predict_proba(texts), fp32.predict_proba(texts), atol=0.05)
    probabilities, embeddings = served.compute(texts, embed=True)
    np.testing.assert_allclose(embeddings, fp32.compute(texts, embed=True)[1], atol=0.1)
    assert probabilities.dtype == np.float32 and embeddings.shape == (4, served.embedding_dim)
    # answers that move past bf16's golden tolerance: auto serves fp32 instead of refusing the model
    from bertclf.inference import golden

    monkeypatch.setitem(golden.TOLERANCE, "bf16", 0.0)
    fallback = Predictor(folder)
    assert (fallback.precision, fallback.runtime) == ("fp32", "onnxruntime")
    assert fallback.precision_reason == "its answers in bf16 failed the golden check at load"
    assert fallback.precision_basis == "golden_check_failed"


def test_bf16_is_refused_where_the_cpu_cannot_compute_it(trained_models, monkeypatch):
    from bertclf.errors import ConfigError
    from bertclf.inference import openvino_engine

    _, folder = trained_models
    openvino_engine.cpu_flags.cache_clear()
    monkeypatch.setattr(openvino_engine, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.raises(ConfigError, match=r"^precision bf16: this CPU has neither amx_bf16 nor avx512_bf16; use"):
        Predictor(folder, precision="bf16")
    assert Predictor(folder).precision in ("int8", "fp32"), "auto does not pick it there"


def test_a_graph_openvino_cannot_run_is_served_in_fp32_under_auto_and_left_out_at_export(trained_models, monkeypatch):
    from bertclf.errors import ConfigError
    from bertclf.inference import predictor as predictor_module

    models_dir, folder = trained_models
    record = {
        "fp32": FP32,
        "int8": {"accuracy": 0.80, "macro_f1": 0.80},
        "bf16": {"accuracy": 0.8778, "macro_f1": 0.87},
    }
    other, config = copy_model(folder, "20990101-000000_noov")
    (other / "model_config.json").write_text(json.dumps({**config, RECORD_KEY: record}))

    def cannot(graph, threads=None):
        raise RuntimeError("Exception from src/core: unsupported operation")

    monkeypatch.setattr(predictor_module, "bf16_unavailable", lambda: None)  # as on a CPU with AMX
    monkeypatch.setattr(predictor_module, "OpenVinoForward", cannot)
    served = Predictor(other)
    assert (served.precision, served.precision_reason) == ("fp32", "OpenVINO could not run the graph in bf16")
    assert served.precision_basis == "openvino_failed"
    with pytest.raises(RuntimeError, match="unsupported operation"):
        Predictor(other, precision="bf16")
    with pytest.raises(ConfigError):
        Predictor(other, precision="fp16")

    # at export: the run goes on, without a bf16 record
    monkeypatch.chdir(models_dir.parent)
    monkeypatch.setattr(quantization, "bf16_unavailable", lambda: None)
    real_use = Predictor.use_graph

    def use_graph(self, graph, precision):
        if precision == "bf16":
            raise RuntimeError("Exception from src/core: unsupported operation")
        real_use(self, graph, precision)

    monkeypatch.setattr(Predictor, "use_graph", use_graph)
    saved = quantization.int8_for_saved_folder(other)
    assert saved["bf16"] is None and "OpenVINO could not run the graph" in saved["bf16_unchecked"]
    assert saved["auto"] in ("int8", "fp32") and saved["int8"]["accuracy"] > 0
