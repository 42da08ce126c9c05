"""int8 serving graphs: how a fp32 serving graph is quantized, and when `--precision auto` serves it.

The export writes `serving/model.int8.onnx` beside the fp32 graph (training/quantization.py tries
each of QUANTIZATIONS on the validation split, keeps the one that changes fewest answers, and
scores both graphs on the test split); the record it leaves in model_config.json is what `auto`
decides on. numpy, onnx and onnxruntime only: the serving install decides and loads.
"""

import dataclasses
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from onnx import TensorProto

log = logging.getLogger(__name__)

INT8_GRAPH = Path("serving") / "model.int8.onnx"
# Where model_config.json and metrics.json keep what the export measured of each graph.
RECORD_KEY = "serving_graphs"
# What `auto` asks of the int8 graph on the test split, against the fp32 graph: accuracy within
# half a point, and macro-F1 (micro-F1 for a multi-label model) within one.
MAX_ACCURACY_LOSS = 0.005
MAX_F1_LOSS = 0.01
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


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def auto_precision(config: dict, folder: Path) -> tuple[str, str]:
    """What `--precision auto` serves for a model folder, and why in one sentence: int8 when its export
    recorded an int8 graph that keeps test accuracy within MAX_ACCURACY_LOSS and F1 within MAX_F1_LOSS
    of the fp32 graph, else fp32. model_config.json is read as hostile data: anything but the
    numbers the export writes means fp32."""
    if not (folder / INT8_GRAPH).exists():
        return "fp32", f"no {INT8_GRAPH.as_posix()} (exported before int8 graphs were; `export-onnx` writes it)"
    record = config.get(RECORD_KEY)
    graphs = record if isinstance(record, dict) else {}
    fp32, int8 = graphs.get("fp32"), graphs.get("int8")
    if not isinstance(fp32, dict) or not isinstance(int8, dict):
        reason = graphs.get("unchecked") if isinstance(graphs.get("unchecked"), str) else "no test-split check"
        return "fp32", f"the int8 graph's accuracy is unknown ({reason})"
    f1 = "micro_f1" if "micro_f1" in fp32 else "macro_f1"
    values = [_number(part.get(key)) for part in (fp32, int8) for key in ("accuracy", f1)]
    numbers = [value for value in values if value is not None]
    if len(numbers) != len(values):
        return "fp32", "the int8 graph's record in model_config.json is unreadable"
    fp32_accuracy, fp32_f1, int8_accuracy, int8_f1 = numbers
    said = f"test accuracy {int8_accuracy:.4f} vs {fp32_accuracy:.4f}, {f1} {int8_f1:.4f} vs {fp32_f1:.4f} in fp32"
    # A hair of slack: the record's numbers are rounded to 4 places.
    if fp32_accuracy - int8_accuracy > MAX_ACCURACY_LOSS + 1e-9:
        return "fp32", f"int8 loses more than {MAX_ACCURACY_LOSS:.1%} accuracy ({said})"
    if fp32_f1 - int8_f1 > MAX_F1_LOSS + 1e-9:
        return "fp32", f"int8 loses more than {MAX_F1_LOSS:.0%} {f1} ({said})"
    return "int8", f"int8 keeps the model's accuracy ({said})"
