"""int8 serving graphs: how a fp32 serving graph is quantized.

The export writes `serving/model.int8.onnx` beside the fp32 graph (training/quantization.py tries
each of QUANTIZATIONS on the validation split, keeps the one that changes fewest answers, and
scores both graphs on the test split); precision.py decides from that record when `auto` serves it.
"""

import dataclasses
import logging
import tempfile
from pathlib import Path

from onnx import TensorProto

log = logging.getLogger(__name__)

INT8_GRAPH = Path("serving") / "model.int8.onnx"
# The nodes the writer names that stay fp32 in every choice: the embedding sum (a table lookup:
# nothing to gain) and the classification head (two small products that decide the answer).
KEEP_FP32 = ("embedding_sum", "pooled_matmul", "logits_matmul")


@dataclasses.dataclass(frozen=True)
class Quantization:
    """One way of quantizing a serving graph's weights to int8 (activations are quantized per call)."""

    name: str
    operators: tuple[str, ...]  # MatMul: the feed-forward and output projections; Attention: its input projection
    per_channel: bool  # one scale per output column of a weight, else one per weight matrix

    def describe(self) -> str:
        where = "matrix products and attention projections" if "Attention" in self.operators else "matrix products"
        scales = "per-channel" if self.per_channel else "per-tensor"
        return f"{where} in int8, {scales} weight scales; embeddings, attention softmax and the head in fp32"


# In the order tried: fastest first, and a later choice is kept only when it changes fewer validation
# answers. Measured on a 2-core Sapphire Rapids (MiniLM, 4,000-text debian set): both attention
# choices 1.96x fp32 at 128 tokens and 1.55x at 512, attention in fp32 1.58x and 1.40x.
QUANTIZATIONS = (
    Quantization("attention+matmul/tensor", ("MatMul", "Attention"), per_channel=False),
    Quantization("attention+matmul/channel", ("MatMul", "Attention"), per_channel=True),
    Quantization("matmul/tensor", ("MatMul",), per_channel=False),
)
DEFAULT_QUANTIZATION = QUANTIZATIONS[0]


def quantize(graph: bytes, choice: Quantization = DEFAULT_QUANTIZATION) -> bytes:
    """The int8 serving graph of a (checked) fp32 serving graph: weights of the chosen operators in
    int8, activations quantized at each call (VNNI and AMX kernels where the CPU has them)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs advice meant for image models, and a line per tensor, on the root logger.
    def advice(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(graph)
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(choice.operators),
                nodes_to_exclude=list(KEEP_FP32),
                per_channel=choice.per_channel,
                # shape inference cannot see through contrib ops; every tensor here is float
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            )
            return target.read_bytes()
    finally:
        root.removeFilter(advice)
