"""BERT's WordPiece tokenizer without TensorFlow: the ids KerasHub's BertTextClassifierPreprocessor
gives, from the vocabulary and settings a model folder already holds.

Serving must not need TensorFlow to tokenize. Hugging Face `tokenizers` was the first choice, but
its pipelines cannot express what the model was trained with: KerasHub folds case after splitting
words (so NFKC never creates delimiters), with full Unicode case folding that drops default
ignorable characters (NFKC_Casefold, not lowercasing), strips only nonspacing marks (Mn, not Mc or
Me) and gives [UNK] to words over 100 bytes (not characters). Every one of those changes ids on
real text, so this module does each step as KerasHub does, in plain Python with the standard
library's Unicode tables; tests/test_wordpiece.py proves the ids equal on a hostile corpus.
"""

import functools
import re
import unicodedata
from pathlib import Path

import numpy as np

from bertclf.files import read_json_object
from bertclf.inference.pieces import pack

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): NFKC_Casefold removes them.
_DEFAULT_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_CJK = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
]
SPACE, KEEP, WORD = 0, 1, 2
MAX_BYTES_PER_WORD = 100
# Bounds on what a tokenizer remembers (characters' kinds, words' ids), whatever texts clients send:
# about 10 MB at most; real text repeats its words and characters, so the caches hit.
MAX_CACHED = 1 << 16


@functools.lru_cache(maxsize=1 << 16)
def _kind(c: str, split_on_cjk: bool) -> int:
    """SPACE (splits words, dropped: ASCII whitespace as RE2's \\s, control and format characters),
    KEEP (a word of its own: punctuation, ASCII symbols as BERT counts them, CJK ideographs) or WORD.
    Categories come from Python's unicodedata, as KerasHub's own Python path takes them."""
    if c in " \t\n\r\f":
        return SPACE
    category = unicodedata.category(c)
    if category in ("Cc", "Cf"):
        return SPACE
    point = ord(c)
    if category[0] == "P" or 33 <= point <= 47 or 58 <= point <= 64 or 91 <= point <= 96 or 123 <= point <= 126:
        return KEEP
    if split_on_cjk and any(lo <= point <= hi for lo, hi in _CJK):
        return KEEP
    return WORD


class _Splitter(dict):
    """A str.translate table that turns a text into words separated by ASCII spaces: SPACE
    characters become a space, KEEP ones a word of their own (" c "), WORD ones stay. Built as
    characters are met (`_kind`), so splitting a text runs in C."""

    def __init__(self, split_on_cjk: bool):
        super().__init__()
        self.split_on_cjk = split_on_cjk

    def __missing__(self, point: int) -> str | int:
        c = chr(point)
        kind = _kind(c, self.split_on_cjk)
        value: str | int = " " if kind == SPACE else f" {c} " if kind == KEEP else point
        if len(self) < MAX_CACHED:
            self[point] = value
        return value


def casefold(text: str) -> str:
    """Unicode NFKC_Casefold, as tf_text.case_fold_utf8 (ICU) applies it: every character mapped on
    its own (compatibility form, full case folding, default ignorables to nothing), then the whole
    composed (NFC). Mapping first matters: U+037A becomes a space and an iota before a mark that
    follows it is ordered, and a mark after an ignorable still combines with the letter before."""
    return unicodedata.normalize("NFC", "".join(_fold(c) for c in text))


@functools.lru_cache(maxsize=1 << 16)
def _fold(c: str) -> str:
    if _DEFAULT_IGNORABLE.match(c):
        return ""
    return _DEFAULT_IGNORABLE.sub("", unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", c).casefold()))


class WordPiece:
    """Text -> WordPiece ids, then [CLS] ids [SEP] padded to a batch, like the training preprocessor.

    Args:
        vocabulary: the tokens, in id order.
        lowercase: fold case (per word, after splitting).
        strip_accents: drop nonspacing marks after NFD.
        split_on_cjk: make every CJK ideograph a word of its own.
        suffix_indicator: prefix of tokens that continue a word.
        oov_token: the token of words that cannot be spelled from the vocabulary.
    """

    def __init__(
        self,
        vocabulary: list[str],
        lowercase: bool = True,
        strip_accents: bool = False,
        split_on_cjk: bool = True,
        suffix_indicator: str = "##",
        oov_token: str = "[UNK]",
    ):
        self.ids = {token: i for i, token in enumerate(vocabulary)}
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.suffix_indicator = suffix_indicator
        self.oov_id = self._id(oov_token)
        self.cls_id, self.sep_id, self.pad_id = self._id("[CLS]"), self._id("[SEP]"), self._id("[PAD]")
        self.split_on_cjk = split_on_cjk
        self._splitter = _Splitter(split_on_cjk)
        self._spelled: dict[str, list[int]] = {}

    def _id(self, token: str) -> int:
        if token not in self.ids:
            raise ValueError(f"the vocabulary has no {token} token")
        return self.ids[token]

    @classmethod
    def from_preset(cls, folder: str | Path) -> "WordPiece":
        """The tokenizer a KerasHub BERT preset folder describes (tokenizer.json and its vocabulary)."""
        folder = Path(folder)
        config = read_json_object(folder / "tokenizer.json", ValueError).get("config", {})
        vocabulary = (folder / "assets" / "tokenizer" / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
        return cls(
            vocabulary,
            lowercase=bool(config.get("lowercase", False)),
            strip_accents=bool(config.get("strip_accents", False)),
            split_on_cjk=bool(config.get("split_on_cjk", True)),
            suffix_indicator=config.get("suffix_indicator", "##"),
            oov_token=config.get("oov_token", "[UNK]"),
        )

    def words(self, text: str) -> list[str]:
        """Split a text into the words WordPiece spells one by one."""
        text = text.partition("\0")[0]  # TensorFlow's string ops end a text at its first NUL
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        # Only the translation puts ASCII spaces between words: other spaces (NBSP...) are WORD characters.
        words = [word for word in text.translate(self._splitter).split(" ") if word]
        if not self.lowercase:
            return words
        return [word.lower() if word.isascii() else casefold(word) for word in words]  # the same for ASCII

    def spell(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece ids of one word; [UNK] if it cannot be spelled.
        The list is shared with later calls for the same word: do not change it."""
        ids = self._spelled.get(word)
        if ids is None:
            ids = self._spell(word)
            if len(self._spelled) < MAX_CACHED:
                self._spelled[word] = ids
        return ids

    def _spell(self, word: str) -> list[int]:
        if not word:
            return []
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            return [self.oov_id]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else self.suffix_indicator + word[start:end]
                if piece in self.ids:
                    ids.append(self.ids[piece])
                    start = end
                    break
            else:
                return [self.oov_id]
        return ids

    def tokenize(self, text: str) -> list[int]:
        """The WordPiece ids of a text, without [CLS]/[SEP]."""
        return [i for word in self.words(text) for i in self.spell(word)]

    def encode(self, texts: list[str], sequence_length: int) -> dict[str, np.ndarray]:
        """Model inputs for a batch: [CLS] ids [SEP], cut to `sequence_length`, padded with [PAD]."""
        return pack([self.tokenize(t) for t in texts], sequence_length, self.cls_id, self.sep_id, self.pad_id)
