"""Load an exported model folder and classify texts with it; no web framework here, and no
TensorFlow when the folder has its serving graph (see runtime.py)."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.config import ENGINES, LONG_TEXT, PRECISIONS, PredictConfig
from bertclf.errors import ConfigError, RegistryError
from bertclf.files import read_json_object
from bertclf.inference import abstain, golden, multilabel
from bertclf.inference.batches import Encoded, predict_in_order
from bertclf.inference.openvino_engine import OpenVinoForward, bf16_unavailable
from bertclf.inference.pieces import MAX_WINDOWS, SentencePieces, average_windows, pack, tokenizer_class, windows
from bertclf.inference.precision import auto_precision
from bertclf.inference.quantize import INT8_GRAPH, quantize
from bertclf.inference.runtime import SERVING_GRAPH, OnnxForward, read_serving_graph
from bertclf.inference.wordpiece import WordPiece
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, NoEmbeddings, chosen_model_folder, load_labels
from bertclf.safety import check_preset_is_data

log = logging.getLogger(__name__)


def graph_forward(graph: bytes, precision: str, threads: int | None = None) -> OnnxForward | OpenVinoForward:
    """What runs a serving graph in `precision`: OpenVINO for bf16 (on the fp32 graph), else ONNX
    Runtime (fp32, or an int8 graph)."""
    return OpenVinoForward(graph, threads) if precision == "bf16" else OnnxForward(graph, precision, threads)


def sequence_length(folder: Path, max_seq_len: int | None = None) -> int:
    """Tokens per text: `max_seq_len` if given (at most the model's positions), else what the
    model was trained with (its preprocessor.json)."""
    trained = read_json_object(folder / "preprocessor.json", RegistryError).get("config", {}).get("sequence_length")
    positions = read_json_object(folder / "config.json", RegistryError).get("config", {}).get("max_sequence_length")
    if not isinstance(trained, int) or not isinstance(positions, int) or not 2 < trained <= positions:
        raise RegistryError(f"{folder}: preprocessor.json and config.json do not give a usable sequence length")
    if max_seq_len and max_seq_len > positions:
        raise ConfigError(
            f"max_seq_len {max_seq_len} is longer than the {positions} positions this model has; "
            f"use {positions} or less"
        )
    return max_seq_len or trained


def plain_encoder(folder: Path, length: int) -> Callable[..., Encoded] | None:
    """texts -> token arrays without TensorFlow, for every tokenizer a folder may name:
    BERT's WordPiece (~20 us for a short text against ~1.2 ms through TensorFlow; DistilBERT's is the same
    but takes no segment_ids) and ALBERT's SentencePiece, giving the very ids of KerasHub's
    preprocessor (tests/test_wordpiece.py, tests/test_pieces.py). None for any other tokenizer.
    `encode(texts, window=True)` reads a long text as overlapping windows (Encoded.owners says whose)."""
    kind = tokenizer_class(folder)
    plain: WordPiece | SentencePieces
    if kind in ("BertTokenizer", "DistilBertTokenizer"):
        plain = WordPiece.from_preset(folder)
    elif kind == "AlbertTokenizer":
        plain = SentencePieces.from_preset(folder)
    else:
        return None
    segments = kind != "DistilBertTokenizer"  # DistilBERT has no segment embedding and takes no segment_ids

    body = length - 2  # [CLS] and [SEP] take two places

    def encode(texts: list[str], window: bool = False) -> Encoded:
        rows = [plain.tokenize(text) for text in texts]
        owners = None
        if window:  # long texts become several overlapping rows (see pieces.windows)
            cut = sum(len(ids) > body * MAX_WINDOWS for ids in rows)  # past what the windows reach
            rows, owners = windows(rows, length)
        else:
            cut = sum(len(ids) > body for ids in rows)
        features = pack(rows, length, plain.cls_id, plain.sep_id, plain.pad_id)
        if not segments:
            del features["segment_ids"]
        mask = features["padding_mask"]
        features["padding_mask"] = mask.astype(np.int32)
        return Encoded(features, mask.sum(axis=1).astype(np.int32), cut, owners)

    return encode


def stored_long_text(model_config: dict, folder: Path) -> str:
    """How the model was trained to read long texts (truncate, the default, or window)."""
    value = (model_config.get("hyperparameters") or {}).get("long_text", "truncate")
    if value not in LONG_TEXT:
        raise RegistryError(f"{folder}: model_config.json's long_text must be one of {', '.join(LONG_TEXT)}")
    return value


class Predictor:
    """A trained classifier loaded from its folder.

    Args:
        folder: a folder written by `bertclf train` (KerasHub preset, labels.json, model_config.json,
            serving/model.onnx).
        batch_size: most texts per forward pass (batches are cut by length, see `sorted_order`).
        engine: "onnx" (ONNX Runtime on the folder's serving graph: fused kernels, ~2x faster on a
            CPU, no TensorFlow), "tensorflow" (the Keras model; needs the training install), or
            "auto": the folder's graph; a folder exported without one gets it built in memory from
            the Keras weights (training install).
        precision: "auto" (the fastest of bf16, int8 and fp32 that the export measured to keep test
            accuracy and this CPU accelerates, if its golden texts pass at load; precision.py),
            "fp32", "int8" (ONNX Runtime: quantized matrix products; a folder exported without its
            int8 graph gets it quantized at load) or "bf16" (OpenVINO on the fp32 graph, on CPUs
            with bfloat16 instructions). `precision_reason` says why.
        threads: CPU threads for ONNX Runtime (default: all cores).
        max_seq_len: truncate texts to this many tokens (default: what the model was trained with).
        long_text: "truncate" (cut a text at the sequence length) or "window" (read a long text as
            overlapping windows and average their probabilities); default: what the model was trained with.
        min_confidence: answer None instead of a label below this top probability (default: the
            threshold the model was trained with, else 0: always answer).
        refuse_drift: raise GoldenMismatch when the answers on the folder's golden texts moved past
            the tolerance (False: log it; `evaluate` reports it).
    """

    def __init__(
        self,
        folder,
        batch_size=64,
        engine="auto",
        precision="auto",
        threads=None,
        max_seq_len=None,
        refuse_drift=True,
        min_confidence=None,
        long_text=None,
    ):
        if engine not in ENGINES:
            raise ConfigError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.folder = Path(folder)
        check_preset_is_data(self.folder)  # a model folder is data: refuse anything that could run code
        self.config = read_json_object(self.folder / MODEL_CONFIG_FILE, RegistryError)
        self.classes = load_labels(self.folder / LABELS_FILE)
        self.name = self.config.get("name", self.folder.name)
        stored = abstain.stored_min_confidence(self.config, self.folder)
        self.min_confidence = stored if min_confidence is None else float(min_confidence)
        self.long_text = long_text or stored_long_text(self.config, self.folder)
        # Multi-label: sigmoid outputs and one threshold per class (multilabel.py); None: single-label.
        self.thresholds = multilabel.stored_thresholds(self.config, self.classes, self.folder)
        self.multi_label = self.thresholds is not None
        self.batch_size = batch_size
        self.threads = threads
        # Called with how many texts of a call were longer than the sequence length (serving counts them).
        self.on_truncated: Callable[[int], None] = lambda count: None
        self.sequence_length = sequence_length(self.folder, max_seq_len)
        # The tokenizer first: cheap, and a folder it refuses loads no model.
        encoder = plain_encoder(self.folder, self.sequence_length)
        if encoder is None:  # check_preset_is_data lets only BERT, ALBERT and DistilBERT tokenizers through
            raise RegistryError(f"{self.folder}: tokenizer {tokenizer_class(self.folder)!r} is not one we serve")
        self._encode = encoder
        # The Keras model and its preprocessor, on the TensorFlow path only.
        self.classifier: Any = None
        self.preprocessor: Any = None
        self._forward: Callable[[dict], np.ndarray]
        # Probabilities and embedding side by side from one pass (None: the graph has no embedding).
        self._with_embedding: Callable[[dict], np.ndarray] | None = None
        self.embedding_dim: int | None = None
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.precision_reason = f"as asked (precision {precision})"
        # The reason as a short code (/metrics): asked, kept_accuracy, lost_accuracy, not_measured,
        # golden_check_failed, openvino_failed or no_serving_graph.
        self.precision_basis = "asked"
        if engine != "tensorflow" and (self.folder / SERVING_GRAPH).exists():
            if precision == "auto":
                chosen, self.precision_reason, self.precision_basis = auto_precision(
                    self.config, self.folder, bf16_unavailable()
                )
            else:
                chosen = precision
            try:
                self._use(self._forward_for(chosen))
            except RuntimeError as err:  # OpenVINO could not compile the graph: auto serves fp32 instead
                if precision != "auto" or chosen != "bf16":
                    raise
                log.warning("precision auto: OpenVINO could not run %s (%s); serving it in fp32", self.folder, err)
                chosen, self.precision_reason = "fp32", "OpenVINO could not run the graph in bf16"
                self.precision_basis = "openvino_failed"
                self._use(self._forward_for(chosen))
            self.engine, self.precision = "onnx", chosen
        else:
            if precision == "auto":
                self.precision_reason, self.precision_basis = "no serving graph in the folder: fp32", "no_serving_graph"
            self.engine, self.precision = self._load_keras(
                engine, "fp32" if precision == "auto" else precision, threads
            )
        # Last: the answers it gives on its golden texts, as Keras gave them at export (golden.py).
        # What auto chose over fp32 must pass it: else auto serves fp32 rather than refuse the model.
        fall_back = precision == "auto" and self.precision != "fp32"
        try:
            self.golden = golden.check(self, refuse=refuse_drift or fall_back)
        except golden.GoldenMismatch as err:
            if not fall_back:
                raise
            moved = str(err).split(". The model is refused")[0]
            log.warning("precision auto: %s; serving it in fp32 instead of %s", moved, self.precision)
            self.precision_reason = f"its answers in {self.precision} failed the golden check at load"
            self.precision_basis = "golden_check_failed"
            self._use(self._forward_for("fp32"))
            self.engine, self.precision = "onnx", "fp32"
            self.golden = golden.check(self, refuse=refuse_drift)
        log.info("%s: serving in %s on %s: %s", self.name, self.precision, self.runtime, self.precision_reason)

    def use_graph(self, graph: bytes, precision: str) -> None:
        """Answer with this serving graph from now on, on the engine of `precision` (the export scores
        its int8 candidates and bf16 so)."""
        self._use(self._forward_for(precision, graph))
        self.engine, self.precision = "onnx", precision
        self.precision_reason = "a graph given by the caller"

    def _forward_for(self, precision: str, graph: bytes | None = None) -> OnnxForward | OpenVinoForward:
        """What answers in `precision` with `graph` (default: the folder's, `_graph`)."""
        return graph_forward(self._graph(precision) if graph is None else graph, precision, self.threads)

    def _graph(self, precision: str) -> bytes:
        """The folder's checked serving graph for `precision` (bf16 runs the fp32 graph); int8 quantized
        here from the fp32 graph when a folder exported before int8 graphs has none (forced with
        precision int8 only)."""
        if precision == "bf16":
            return read_serving_graph(self.folder, len(self.classes))
        if precision == "int8" and not (self.folder / INT8_GRAPH).exists():
            log.warning(
                "%s has no %s: quantized the fp32 graph for this load (+seconds and memory); "
                "`python -m bertclf export-onnx --model_dir %s` writes it once and checks its accuracy",
                self.folder,
                INT8_GRAPH,
                self.folder,
            )
            return quantize(read_serving_graph(self.folder, len(self.classes)))
        return read_serving_graph(self.folder, len(self.classes), precision)

    @property
    def runtime(self) -> str:
        """What computes the answers: onnxruntime, openvino (bf16) or tensorflow."""
        return getattr(self._forward, "runtime", self.engine)

    def _use(self, forward) -> None:
        """Answer with `forward` (OnnxForward, OpenVinoForward, or the training install's KerasForward)."""
        self._forward = forward
        if forward.embedding_dim is not None:
            self._with_embedding, self.embedding_dim = forward.with_embedding, forward.embedding_dim

    def _load_keras(self, engine: str, precision: str, threads: int | None) -> tuple[str, str]:
        """The TensorFlow path (training install): engine tensorflow, or a folder without its serving
        graph; sets self._forward and returns (engine, precision)."""
        # The one import of training code from here: only on this path, and keras_engine's module
        # level imports nothing the serving install lacks (pyproject.toml's import contracts allow
        # exactly this edge; tests/test_serving_install.py runs it without TensorFlow).
        from bertclf.training.keras_engine import load_engine

        loaded = load_engine(
            self.folder, len(self.classes), self.sequence_length, self.multi_label, engine, precision, threads
        )
        self.classifier, self.preprocessor = loaded.classifier, loaded.preprocessor
        self._use(loaded.forward)
        return loaded.engine, loaded.precision

    @classmethod
    def latest(cls, models_dir="models", **kwargs):
        """The model models/latest_model_config.json points to."""
        return cls(chosen_model_folder(models_dir), **kwargs)

    @classmethod
    def from_config(cls, config: PredictConfig, threads: int | None = None, refuse_drift=True) -> "Predictor":
        """The model `config` chooses (model_dir, else the latest), run as it says."""
        return cls(
            chosen_model_folder(config.models_dir, config.model_dir),
            engine=config.engine,
            precision=config.precision,
            threads=threads,
            max_seq_len=config.max_seq_len,
            refuse_drift=refuse_drift,
            min_confidence=config.min_confidence,
            long_text=config.long_text,
        )

    def predict_proba(self, texts) -> np.ndarray:
        """Class probabilities, one row per text, columns in `self.classes` order."""
        return self._rows(self._forward, texts, len(self.classes))

    def _rows(self, forward: Callable[[dict], np.ndarray], texts, width: int) -> np.ndarray:
        """`forward`'s rows (`width` columns) for texts, in input order; a long text read as windows
        gets the mean of its windows' rows."""
        if not texts:
            return np.zeros((0, width), np.float32)
        encoded = self._encode(list(texts), window=self.long_text == "window")
        if encoded.truncated:
            self.on_truncated(encoded.truncated)
        rows = predict_in_order(forward, encoded, self.batch_size)
        return rows if encoded.owners is None else average_windows(rows, encoded.owners, len(texts))

    def compute(self, texts, embed: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(class probabilities, and with `embed` each text's embedding, else None), one pass for both.

        Raises:
            NoEmbeddings: `embed` asked of a model whose serving graph has no embedding output.
        """
        if not embed:
            return self.predict_proba(texts), None
        if self._with_embedding is None or self.embedding_dim is None:
            raise NoEmbeddings(
                f"the model {self.name} was exported before serving graphs gave embeddings; write its graph again "
                f"with `python -m bertclf export-onnx --model_dir {self.folder.name}` (training install)"
            )
        rows = self._rows(self._with_embedding, texts, len(self.classes) + self.embedding_dim)
        return rows[:, : len(self.classes)], rows[:, len(self.classes) :]

    def token_counts(self, texts) -> np.ndarray:
        """How many tokens each text becomes ([CLS] and [SEP] included), at most the sequence length."""
        return self._encode(list(texts)).lengths

    def decide(self, rows: np.ndarray) -> tuple[list, list]:
        """The answers for rows of probabilities: (label, its probability) per text, the label None
        below `min_confidence`; multi-label: (every class at or above its threshold, their probabilities)."""
        if self.thresholds is not None:
            return multilabel.decide(rows, self.classes, self.thresholds)
        return abstain.decide(rows, self.classes, self.min_confidence)

    def predict(self, texts):
        """The answers for texts, in input order (see `decide`)."""
        return self.decide(self.predict_proba(texts))
