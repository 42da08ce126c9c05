"""Load an exported model folder and classify texts with it; no web framework here."""

import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import keras_hub
import numpy as np

from bertclf.batches import Encoded, encode, predict_in_order, traced_forward, traced_preprocessor
from bertclf.config import ENGINES, ConfigError, PredictConfig
from bertclf.files import read_json_object
from bertclf.pieces import SentencePieces, tokenizer_class
from bertclf.registry import LABELS_FILE, MODEL_CONFIG_FILE, RegistryError, chosen_model_folder, load_labels
from bertclf.runtime import OnnxForward, UnsupportedModel
from bertclf.safety import check_preset_is_data, keras_safe_mode
from bertclf.wordpiece import WordPiece


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# Keras deserialisation keeps process-wide state (its safe-mode scope, custom objects): two threads
# loading at once (a model watcher and a caller) can break each other's load.
_ONE_LOAD_AT_A_TIME = threading.Lock()


def text_encoder(folder: Path, preprocessor) -> Callable[[list[str]], Encoded]:
    """texts -> token arrays, without TensorFlow where the folder allows: BERT's WordPiece in plain
    Python (~90 us for one text against ~1.2 ms through TensorFlow), ALBERT's SentencePiece with
    the sentencepiece library (DistilBERT's is BERT's WordPiece); the very ids of KerasHub's
    preprocessor (tests/test_wordpiece.py, tests/test_pieces.py). Any other tokenizer runs
    KerasHub's preprocessor, traced once."""
    kind = tokenizer_class(folder)
    plain: WordPiece | SentencePieces | None = None
    if kind in ("BertTokenizer", "DistilBertTokenizer"):
        plain = WordPiece.from_preset(folder)
    elif kind == "AlbertTokenizer":
        plain = SentencePieces.from_preset(folder)
    if plain is None:
        tokenize = traced_preprocessor(preprocessor)
        return lambda texts: encode(tokenize, texts)
    length = preprocessor.sequence_length
    segments = kind != "DistilBertTokenizer"  # DistilBERT has no segment embedding and takes no segment_ids

    def encode_plainly(texts: list[str]) -> Encoded:
        features = plain.encode(texts, length)
        if not segments:
            del features["segment_ids"]
        mask = features["padding_mask"]
        features["padding_mask"] = mask.astype(np.int32)
        return Encoded(features, mask.sum(axis=1).astype(np.int32))

    return encode_plainly


class Predictor:
    """A trained classifier loaded from its folder.

    Args:
        folder: a folder written by `bertclf train` (KerasHub preset + labels.json + model_config.json).
        batch_size: most texts per forward pass (batches are cut by length, see `sorted_order`).
        engine: "onnx" (ONNX Runtime, fused kernels: ~2x faster on a CPU), "tensorflow", or
            "auto": ONNX where the architecture has a fast graph (BERT, ALBERT), else TensorFlow.
        precision: "fp32", or "int8" (ONNX only: quantized matrix products, faster again; check
            the accuracy on your test split with `python -m bertclf evaluate --precision int8`).
        threads: CPU threads for ONNX Runtime (default: all cores).
        max_seq_len: truncate texts to this many tokens (default: what the model was trained with).
    """

    def __init__(self, folder, batch_size=64, engine="auto", precision="fp32", threads=None, max_seq_len=None):
        if engine not in ENGINES:
            raise ConfigError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.folder = Path(folder)
        check_preset_is_data(self.folder)  # a model folder is data: refuse anything that could run code
        self.config = read_json_object(self.folder / MODEL_CONFIG_FILE, RegistryError)
        self.classes = load_labels(self.folder / LABELS_FILE)
        self.batch_size = batch_size
        with _ONE_LOAD_AT_A_TIME, warnings.catch_warnings(), keras_safe_mode():
            # Exported folders hold no optimizer state on purpose; Keras warns that it skips loading it.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            self.classifier = keras_hub.models.TextClassifier.from_preset(str(self.folder))
        outputs = int(self.classifier.output_dense.kernel.shape[-1])
        if outputs != len(self.classes):
            raise RegistryError(
                f"{self.folder / LABELS_FILE} names {len(self.classes)} classes but the model outputs {outputs}: "
                "the folder is inconsistent; export it again with `make train`"
            )
        self.preprocessor = self.classifier.preprocessor
        if max_seq_len:
            positions = self.classifier.backbone.get_config().get("max_sequence_length", max_seq_len)
            if max_seq_len > positions:
                raise ConfigError(
                    f"max_seq_len {max_seq_len} is longer than the {positions} positions this model "
                    f"has; use {positions} or less"
                )
            self.preprocessor.sequence_length = max_seq_len
        self.classifier.preprocessor = None  # we tokenize once and batch by length ourselves
        self._encode = text_encoder(self.folder, self.preprocessor)
        self.name = self.config.get("name", self.folder.name)
        self.engine, self.precision = self._pick_engine(engine, precision, threads)

    def _pick_engine(self, engine, precision, threads):
        """Set self._forward: features -> class probabilities, on the chosen engine."""
        self._forward: Callable[[dict], np.ndarray]
        if engine != "tensorflow":
            try:
                self._forward = OnnxForward(self.classifier, precision, threads)
                return "onnx", precision
            except UnsupportedModel as err:
                if engine == "onnx":
                    raise ConfigError(f"engine onnx: {err}; use engine auto or tensorflow") from None
        if precision != "fp32":
            raise ConfigError(
                f"precision {precision} needs the ONNX engine, which has no graph for this model; use precision fp32"
            )
        logits = traced_forward(self.classifier)
        self._forward = lambda features: softmax(np.asarray(logits(features)))
        return "tensorflow", "fp32"

    @classmethod
    def latest(cls, models_dir="models", **kwargs):
        """The model models/latest_model_config.json points to."""
        return cls(chosen_model_folder(models_dir), **kwargs)

    @classmethod
    def from_config(cls, config: PredictConfig, threads: int | None = None) -> "Predictor":
        """The model `config` chooses (model_dir, else the latest), run as it says."""
        return cls(
            chosen_model_folder(config.models_dir, config.model_dir),
            engine=config.engine,
            precision=config.precision,
            threads=threads,
            max_seq_len=config.max_seq_len,
        )

    def predict_proba(self, texts) -> np.ndarray:
        """Class probabilities, one row per text, columns in `self.classes` order."""
        if not texts:
            return np.zeros((0, len(self.classes)), np.float32)
        return predict_in_order(self._forward, self._encode(list(texts)), self.batch_size)

    def predict(self, texts):
        """(labels, probability of each label), in input order."""
        probabilities = self.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        return [self.classes[i] for i in best], [float(p) for p in probabilities[np.arange(len(best)), best]]
