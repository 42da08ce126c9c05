"""Model inputs without TensorFlow: the [CLS] ids [SEP] packing both tokenizers share, and ALBERT's
SentencePiece tokenizer read from a model folder (its model file already folds case when the
checkpoint is uncased: see checkpoints/tf1.lowercasing_sentencepiece)."""

from pathlib import Path

import numpy as np

from bertclf.files import read_json_object


def pack(rows: list[list[int]], sequence_length: int, cls_id: int, sep_id: int, pad_id: int) -> dict[str, np.ndarray]:
    """Model inputs for a batch, as KerasHub's text-classifier preprocessors pack one segment:
    [CLS] ids [SEP], the ids cut so that the whole fits `sequence_length`, padded with `pad_id`."""
    token_ids = np.full((len(rows), sequence_length), pad_id, dtype=np.int32)
    padding_mask = np.zeros((len(rows), sequence_length), dtype=bool)
    for row, ids in enumerate(rows):
        packed = [cls_id, *ids[: sequence_length - 2], sep_id]
        token_ids[row, : len(packed)] = packed
        padding_mask[row, : len(packed)] = True
    return {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}


# --long_text window: a text is read as at most this many windows (evenly spread from its start to
# its end), so one long text costs at most this many rows of model work.
MAX_WINDOWS = 8


def windows(rows: list[list[int]], sequence_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Split each text's ids into overlapping windows that fit `sequence_length` with [CLS] and [SEP].

    A text that fits stays one window; a longer one gets windows every half window (each token is
    read twice, once near a window's middle), at most MAX_WINDOWS, the first at its start and the
    last at its end. Returns (the windows' ids, the index of the text each window belongs to).
    """
    body = sequence_length - 2
    out: list[list[int]] = []
    owners: list[int] = []
    for owner, ids in enumerate(rows):
        if len(ids) <= body:
            starts = [0]
        else:
            last = len(ids) - body
            count = min(MAX_WINDOWS, -(-last // max(body // 2, 1)) + 1)  # ceil(last / stride) + 1
            starts = sorted({round(i * last / (count - 1)) for i in range(count)})
        out.extend(ids[start : start + body] for start in starts)
        owners.extend([owner] * len(starts))
    return out, np.array(owners, dtype=np.int64)


def average_windows(probabilities: np.ndarray, owners: np.ndarray, n_texts: int) -> np.ndarray:
    """Each text's probabilities: the mean over its windows' rows."""
    totals = np.zeros((n_texts, probabilities.shape[1]), dtype=np.float64)
    np.add.at(totals, owners, probabilities)
    return (totals / np.bincount(owners, minlength=n_texts)[:, None]).astype(probabilities.dtype)


class SentencePieces:
    """Text -> SentencePiece ids with the `sentencepiece` library (the C++ code TensorFlow Text wraps).

    Args:
        proto: the serialized SentencePiece model.
    """

    def __init__(self, proto: bytes):
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        self.cls_id, self.sep_id, self.pad_id = (self._id(piece) for piece in ("[CLS]", "[SEP]", "<pad>"))

    def _id(self, piece: str) -> int:
        index = self.processor.piece_to_id(piece)
        if index == self.processor.unk_id() and piece != self.processor.id_to_piece(index):
            raise ValueError(f"the SentencePiece model has no {piece} piece")
        return index

    @classmethod
    def from_preset(cls, folder: str | Path) -> "SentencePieces":
        """The tokenizer of a KerasHub ALBERT preset folder (assets/tokenizer/vocabulary.spm)."""
        return cls((Path(folder) / "assets" / "tokenizer" / "vocabulary.spm").read_bytes())

    def tokenize(self, text: str) -> list[int]:
        """The SentencePiece ids of a text, without [CLS]/[SEP]."""
        return self.processor.encode(text)

    def encode(self, texts: list[str], sequence_length: int) -> dict[str, np.ndarray]:
        """Model inputs for a batch: [CLS] ids [SEP], cut to `sequence_length`, padded with <pad>."""
        return pack([self.tokenize(t) for t in texts], sequence_length, self.cls_id, self.sep_id, self.pad_id)


def tokenizer_class(folder: Path) -> str:
    """The KerasHub tokenizer class a preset folder names (BertTokenizer, AlbertTokenizer, ...)."""
    return str(read_json_object(folder / "tokenizer.json", ValueError).get("class_name", ""))
