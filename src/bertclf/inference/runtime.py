"""Serving computes on ONNX Runtime: read a model folder's `serving/model.onnx` (fp32) or
`serving/model.int8.onnx` as hostile data, check it, and run it.

The graphs are written at export, by training/onnx_writer.py from the Keras weights and by
quantize.py from that graph; serving needs neither TensorFlow nor Keras. Nothing in the file may
run code or reach outside it, so loading refuses external data files on any tensor, sparse
tensors, training information, operators we do not write (ALLOWED_OPS, and INT8_OPS in an int8
graph), functions and subgraphs, a file over MAX_GRAPH_BYTES, and inputs or outputs other than ours.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import TensorProto

from bertclf.errors import RegistryError, UnsafeModelError
from bertclf.inference.quantize import INT8_GRAPH

MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib ops (fused transformer kernels)
# Where a model folder keeps its serving graph: a subfolder, since the folder's own tokenizer.json
# is KerasHub's tokenizer config.
SERVING_GRAPH = Path("serving") / "model.onnx"
INPUTS = ("token_ids", "segment_ids", "padding_mask")
OUTPUT = "probabilities"
# The text's vector (POST /embed): the mean of the last hidden states over its real tokens, from the
# same pass as the probabilities. Graphs exported before it have the probabilities only.
EMBEDDING = "embedding"
# Every operator graph.py writes, and nothing else: compute kernels only (no control flow, no
# custom op libraries, nothing that reads files).
ALLOWED_OPS = frozenset(
    [
        ("", op)
        for op in (
            *("Add", "Gather", "MatMul", "Relu", "Sigmoid", "Softmax", "Tanh"),
            *("Cast", "Div", "ReduceSum", "Squeeze", "Unsqueeze"),  # the embedding's masked mean
        )
    ]
    + [
        (MS_DOMAIN, op)
        for op in ("Attention", "BiasGelu", "EmbedLayerNormalization", "FastGelu", "SkipLayerNormalization")
    ]
)
# What quantize.py adds in an int8 graph: activations quantized per call, integer matrix products,
# the rescale back to float, and ONNX Runtime's attention with an int8 input projection. Compute
# kernels only, like ALLOWED_OPS; an fp32 graph may not hold them.
INT8_OPS = ALLOWED_OPS | {
    *(("", op) for op in ("DynamicQuantizeLinear", "MatMulInteger", "Mul")),
    (MS_DOMAIN, "QAttention"),
}
GRAPHS = {"fp32": SERVING_GRAPH, "int8": INT8_GRAPH}
# BERT-Large, the largest checkpoint we fine-tune, writes 1.34 GB; protobuf cannot exceed 2 GiB.
MAX_GRAPH_BYTES = 3 << 29  # 1.5 GiB
# BERT-Large has 24 layers of 5 nodes; ALBERT-xxlarge repeats 12.
MAX_NODES = 2048


def _refuse(path: Path, why: str) -> UnsafeModelError:
    return UnsafeModelError(f"{path}: {why}; export the graph again with `python -m bertclf export-onnx`")


def _messages(message: Message) -> Iterator[Message]:
    """`message` and every message inside it, at any depth: each tensor the file holds, wherever
    the format lets one sit (initializers, node attributes, sparse tensors' parts, and fields a
    later ONNX adds), so no kind of tensor is left unchecked."""
    yield message
    for field in message.DESCRIPTOR.fields:  # not ListFields(): it would copy every weight's bytes
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.is_repeated:
            for item in getattr(message, field.name):
                yield from _messages(item)
        elif message.HasField(field.name):
            yield from _messages(getattr(message, field.name))


def check_graph(model: onnx.ModelProto, num_classes: int, path: Path, precision: str = "fp32") -> None:
    """Raise UnsafeModelError unless `model` is a graph of ours: only ALLOWED_OPS (INT8_OPS for
    precision int8), all weights inside the file, our inputs, and a probabilities output (and an
    embedding); RegistryError when that output's size disagrees with the folder's labels."""
    graph = model.graph
    allowed = INT8_OPS if precision == "int8" else ALLOWED_OPS
    domains = {opset.domain for opset in model.opset_import}
    if not domains <= {"", "ai.onnx", MS_DOMAIN}:
        raise _refuse(path, f"imports operator sets {sorted(domains - {'', 'ai.onnx', MS_DOMAIN})}")
    if len(model.functions):
        raise _refuse(path, "defines functions; a serving graph has none")
    if len(graph.node) > MAX_NODES:
        raise _refuse(path, f"{len(graph.node)} nodes, more than the {MAX_NODES} a serving graph has")
    for node in graph.node:
        if (node.domain if node.domain != "ai.onnx" else "", node.op_type) not in allowed:
            raise _refuse(
                path, f"operator {node.domain or 'ai.onnx'}.{node.op_type} is not one an {precision} serving graph uses"
            )
        if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute):
            raise _refuse(path, f"node {node.name!r} holds a subgraph")
    if len(model.training_info):
        raise _refuse(path, "holds training information; a serving graph has none")
    for message in _messages(model):
        # graph.py writes dense initializers only. A sparse tensor's indices and values are two more
        # tensors, each of which could point ONNX Runtime at a file: refused wherever one sits.
        if isinstance(message, onnx.SparseTensorProto):
            raise _refuse(path, "holds a sparse tensor; a serving graph's weights are all dense")
        if isinstance(message, TensorProto) and (
            message.data_location == TensorProto.EXTERNAL or len(message.external_data)
        ):
            raise _refuse(
                path, f"tensor {message.name!r} points to an external data file; a serving graph holds them all"
            )
    inputs = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    if not {"token_ids", "padding_mask"} <= inputs.keys() <= set(INPUTS) or set(inputs.values()) != {TensorProto.INT32}:
        raise _refuse(path, f"inputs {sorted(inputs)}; a serving graph takes int32 {', '.join(INPUTS)}")
    outputs = list(graph.output)
    names = [o.name for o in outputs]
    floats = all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in outputs)
    if names not in ([OUTPUT], [OUTPUT, EMBEDDING]) or not floats:
        raise _refuse(path, f"outputs {names}; a serving graph has float {OUTPUT!r} (and {EMBEDDING!r})")
    if len(outputs) == 2 and len(outputs[1].type.tensor_type.shape.dim) != 2:
        raise _refuse(path, f"its {EMBEDDING!r} output is not one vector per text")
    dims = outputs[0].type.tensor_type.shape.dim
    size = dims[-1].dim_value if len(dims) == 2 else 0
    if size != num_classes:
        raise RegistryError(
            f"{path} outputs {size or 'an unknown number of'} classes but labels.json names {num_classes}: "
            "the folder is inconsistent; export it again with `make train`"
        )


def read_serving_graph(folder: str | os.PathLike, num_classes: int, precision: str = "fp32") -> bytes:
    """The checked bytes of a folder's serving graph of `precision` (fp32: serving/model.onnx, int8:
    serving/model.int8.onnx; see `check_graph`); what ONNX Runtime then loads is exactly what was checked.

    Raises:
        RegistryError: no graph (the message says how to write one) or one that disagrees with labels.json.
        UnsafeModelError: a graph that is not ours.
    """
    path = Path(folder) / GRAPHS[precision]
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_GRAPH_BYTES:
                raise _refuse(path, f"{size} bytes, more than the {MAX_GRAPH_BYTES} a serving graph may have")
            data = f.read(MAX_GRAPH_BYTES + 1)
    except FileNotFoundError:
        if precision != "fp32":
            raise RegistryError(
                f"{Path(folder)} has no {GRAPHS[precision]} (exported before int8 graphs were): write it once with "
                f"`python -m bertclf export-onnx --model_dir {folder}` (needs the training install)"
            ) from None
        raise RegistryError(
            f"{Path(folder)} has no {SERVING_GRAPH}: it was exported before serving went TensorFlow-free; "
            f"write it once with `python -m bertclf export-onnx --model_dir {folder}` (needs the training install)"
        ) from None
    except OSError as err:
        raise RegistryError(f"{path}: cannot read it ({err.strerror})") from None
    if len(data) > MAX_GRAPH_BYTES:
        raise _refuse(path, f"more than the {MAX_GRAPH_BYTES} bytes a serving graph may have")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf raises its own DecodeError (and others) on hostile bytes
        raise _refuse(path, f"not an ONNX model ({type(err).__name__})") from None
    check_graph(model, num_classes, path, precision)
    return data


class OnnxForward:
    """callable(features) -> probabilities, running a serving graph in ONNX Runtime.

    Args:
        graph: the serialized graph (`read_serving_graph`, onnx_writer.build_graph's bytes, or
            quantize.quantize's).
        precision: what the graph computes in, "fp32" or "int8" (reported, not converted here).
        threads: intra-op threads (default: all cores; with several server workers, cores / workers).
    """

    runtime = "onnxruntime"

    def __init__(self, graph: bytes, precision: str = "fp32", threads: int | None = None):
        if precision not in GRAPHS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(GRAPHS)}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # Spinning worker threads answer the next call sooner (measured: single text 5.8 ms with
        # spinning, 7.4 ms without, on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.precision = precision
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

        outputs = {o.name: o for o in self.session.get_outputs()}
        # The embedding's width, when the graph has one (graphs exported before it do not).
        self.embedding_dim: int | None = None
        if EMBEDDING in outputs:
            width = outputs[EMBEDDING].shape[-1]
            self.embedding_dim = width if isinstance(width, int) else None

    def _feed(self, features: dict) -> dict:
        return {name: np.ascontiguousarray(features[name], dtype=np.int32) for name in self.inputs}

    def __call__(self, features: dict) -> np.ndarray:
        return self.session.run([OUTPUT], self._feed(features))[0]

    def with_embedding(self, features: dict) -> np.ndarray:
        """Probabilities and embedding of each text from one pass, side by side in one row
        (classes first), so batching and window averaging treat them as one output."""
        probabilities, embedding = self.session.run([OUTPUT, EMBEDDING], self._feed(features))
        return np.concatenate([probabilities, embedding], axis=1)
