"""A model folder's serving graph is hostile data until checked: only our operators, no external
data, no functions or subgraphs, bounded size, our inputs and one output that matches labels.json."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bertclf.errors import RegistryError, UnsafeModelError
from bertclf.inference import runtime
from bertclf.inference.quantize import INT8_GRAPH, quantize
from bertclf.inference.runtime import GRAPHS, SERVING_GRAPH, OnnxForward, read_serving_graph
from bertclf.training.onnx_writer import build_graph
from conftest import detached_classifier


@pytest.fixture(scope="module")
def graph(tiny_preset):
    classifier, _ = detached_classifier(tiny_preset, max_seq_len=16)
    return build_graph(classifier)


@pytest.fixture(scope="module")
def int8_graph(graph):
    return onnx.load_model_from_string(quantize(graph.SerializeToString()))


def write(folder, model, path=SERVING_GRAPH):
    (folder / "serving").mkdir(exist_ok=True)
    (folder / path).write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return folder


def changed(graph, change):
    model = onnx.ModelProto()
    model.CopyFrom(graph)
    change(model)
    return model


def test_our_graph_passes_and_runs(graph, tmp_path):
    data = read_serving_graph(write(tmp_path, graph), 3)
    features = {
        "token_ids": np.array([[2, 5, 3, 0]]),
        "segment_ids": np.zeros((1, 4)),
        "padding_mask": np.array([[1, 1, 1, 0]]),
    }
    assert OnnxForward(data)(features).shape == (1, 3)


def test_a_missing_graph_says_how_to_write_it(tmp_path):
    with pytest.raises(RegistryError, match=r"has no serving/model.onnx.*python -m bertclf export-onnx --model_dir"):
        read_serving_graph(tmp_path, 3)


def test_output_size_must_match_the_labels(graph, tmp_path):
    with pytest.raises(RegistryError, match=r"outputs 3 classes but labels.json names 4"):
        read_serving_graph(write(tmp_path, graph), 4)


def external(model):
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../etc/passwd")


def _external_tensor(name, location="data/train.csv"):
    tensor = helper.make_tensor(name, TensorProto.INT64, [4], [0, 1, 2, 3])
    tensor.ClearField("int64_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return tensor


def sparse_external_indices(model):
    # The attack a review found: dense values, indices read from a file beside the server.
    values = helper.make_tensor("leak", TensorProto.FLOAT, [4], [0.0] * 4)
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, _external_tensor("leak_indices"), [8]))


def sparse_inline(model):
    values = helper.make_tensor("dense_enough", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("at", TensorProto.INT64, [1], [0])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))


def external_attribute(model):
    model.graph.node[-1].attribute.append(helper.make_attribute("value", _external_tensor("in_attribute")))


def training_info(model):
    model.training_info.add()


def foreign_op(model):
    model.graph.node.append(helper.make_node("Loop", ["x"], ["y"], name="loop"))


def custom_domain(model):
    model.opset_import.append(helper.make_opsetid("evil.ops", 1))
    model.graph.node.append(helper.make_node("Run", ["x"], ["y"], domain="evil.ops"))


def subgraph(model):
    node = model.graph.node[-1]
    node.attribute.append(helper.make_attribute("body", helper.make_graph([], "g", [], [])))


def function(model):
    model.functions.append(helper.make_function("evil", "f", ["x"], ["y"], [], [helper.make_opsetid("", 17)]))


def float_input(model):
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT


def another_output(model):
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]))


def embedding_not_a_matrix(model):
    embedding = next(o for o in model.graph.output if o.name == runtime.EMBEDDING)
    embedding.type.tensor_type.shape.dim.add().dim_value = 2


def many_nodes(model):
    model.graph.node.extend(helper.make_node("Add", ["a", "b"], [f"c{i}"]) for i in range(runtime.MAX_NODES))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (external, r"points to an external data file"),
        (sparse_external_indices, r"holds a sparse tensor"),
        (sparse_inline, r"holds a sparse tensor"),
        (external_attribute, r"tensor 'in_attribute' points to an external data file"),
        (training_info, r"holds training information"),
        (foreign_op, r"operator ai.onnx.Loop is not one an (fp32|int8) serving graph uses"),
        (custom_domain, r"imports operator sets \['evil.ops'\]"),
        (subgraph, r"holds a subgraph"),
        (function, r"defines functions"),
        (float_input, r"inputs .*a serving graph takes int32"),
        (another_output, r"outputs \['probabilities', 'embedding', 'logits'\]"),
        (embedding_not_a_matrix, r"'embedding' output is not one vector per text"),
        (many_nodes, r"nodes, more than the 2048"),
    ],
)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_graphs_that_are_not_ours_are_refused(graph, int8_graph, tmp_path, change, message, precision):
    ours = int8_graph if precision == "int8" else graph
    with pytest.raises(UnsafeModelError, match=message + r".*export-onnx"):
        read_serving_graph(write(tmp_path, changed(ours, change), GRAPHS[precision]), 3, precision)


def test_the_int8_graph_passes_its_own_check_only(graph, int8_graph, tmp_path):
    folder = write(write(tmp_path, graph), int8_graph, INT8_GRAPH)
    assert read_serving_graph(folder, 3, "int8") == int8_graph.SerializeToString()
    write(tmp_path, int8_graph)  # integer operators where the fp32 graph should be
    with pytest.raises(UnsafeModelError, match=r"operator .*Quantize.* is not one an fp32 serving graph"):
        read_serving_graph(folder, 3)
    (folder / INT8_GRAPH).unlink()
    with pytest.raises(RegistryError, match=r"has no serving/model.int8.onnx.*export-onnx --model_dir"):
        read_serving_graph(folder, 3, "int8")


def test_garbage_and_oversized_files_are_refused(graph, tmp_path, monkeypatch):
    with pytest.raises(UnsafeModelError, match=r"not an ONNX model"):
        read_serving_graph(write(tmp_path, b"\xff" * 100), 3)
    write(tmp_path, graph)
    monkeypatch.setattr(runtime, "MAX_GRAPH_BYTES", 1000)
    with pytest.raises(UnsafeModelError, match=r"bytes, more than the 1000 a serving graph may have"):
        read_serving_graph(tmp_path, 3)


def test_a_hostile_graph_in_a_model_folder_is_refused_by_the_predictor(trained_models, tmp_path):
    import shutil

    from bertclf.inference.predictor import Predictor

    folder = tmp_path / "model"
    shutil.copytree(trained_models[1], folder)
    model = onnx.load(folder / SERVING_GRAPH)
    write(folder, changed(model, external))
    with pytest.raises(UnsafeModelError, match=r"model.onnx: tensor .* external data"):
        Predictor(folder, precision="fp32")
    write(folder, model)
    int8 = onnx.load(folder / INT8_GRAPH)
    write(folder, changed(int8, external), INT8_GRAPH)
    with pytest.raises(UnsafeModelError, match=r"model.int8.onnx: tensor .* external data"):
        Predictor(folder, precision="int8")
