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
