"""Why the model said that: each word's contribution to a label, by occlusion through the served graph.

For a text of W words the model reads W more variants, each with one word deleted; a word's weight
is how much the label's probability drops without it (negative: the word argued against the label).
Every variant of every text goes through the predictor in one call, so they are cut into
length-sorted batches like any other texts, on ONNX Runtime or OpenVINO, without TensorFlow.

Why occlusion rather than integrated gradients: it needs nothing but the serving graph every model
folder already has (gradients would need a second exported graph per model, and the int8 and bf16
engines have none), it explains exactly the probabilities /predict serves, in their precision, and
its cost is known up front: W + 1 texts per text. Deleting the word (rather than replacing it with
[MASK] or [UNK]) works the same for WordPiece and SentencePiece models.

Only the words the model reads are occluded: past the sequence length a word changes nothing, and
its weight is 0 (`read: false`). At most `max_words` words per text are varied (the rest weigh 0;
`read` still says whether the model reads them), which bounds the cost of a long text.
"""

import re
from dataclasses import dataclass

import numpy as np

from bertclf.errors import ConfigError

WORD = re.compile(r"\S+")
MAX_WORDS = 128  # words varied per text: a text costs at most 129 forward passes' worth of rows
# POST /explain: texts + variants one request may ask for, per text it may hold (max_items), so a
# request of max_items texts costs at most 16x a /predict request (e.g. 16 texts of up to 255 words).
ROWS_PER_ITEM = 16


@dataclass
class Explanation:
    """One text's explanation: the label explained, its probability, and each word's weight."""

    label: str
    probability: float
    words: list[dict]  # {"word", "start", "end", "weight", "read"} in text order

    def top(self, n: int = 3) -> list[dict]:
        """The n words that raised the label's probability most."""
        return sorted(self.words, key=lambda w: -w["weight"])[:n]

    def as_dict(self) -> dict:
        return {"label": self.label, "probability": self.probability, "words": self.words}


def spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each whitespace-separated word of `text`."""
    return [(m.start(), m.end()) for m in WORD.finditer(text)]


def without(text: str, cut: list[tuple[int, int]], index: int) -> str:
    """`text` with word `index` deleted (and one space of the two around it)."""
    start, end = cut[index]
    if end < len(text) and text[end].isspace():
        end += 1
    elif start > 0 and text[start - 1].isspace():
        start -= 1
    return text[:start] + text[end:]


def words_read(predictor, texts: list[str], cuts: list[list[tuple[int, int]]]) -> list[int]:
    """How many of each text's words the model reads before its sequence length cuts the text (all
    of them for a model that reads long texts as windows). One tokenizer call for every word."""
    if getattr(predictor, "long_text", "truncate") == "window":
        return [len(cut) for cut in cuts]
    words = [text[start:end] for text, cut in zip(texts, cuts, strict=True) for start, end in cut]
    counts = np.asarray(predictor.token_counts([*words, ""]), dtype=np.int64)
    specials = int(counts[-1])  # [CLS] and [SEP]
    budget = predictor.sequence_length - specials
    seen, offset = [], 0
    for cut in cuts:
        tokens = np.cumsum(counts[offset : offset + len(cut)] - specials)
        seen.append(int(np.searchsorted(tokens, budget, side="right")))
        offset += len(cut)
    return seen


def check_label(label: str | None, classes: list[str]) -> None:
    """ConfigError unless `label` is None or one of `classes`."""
    if label is not None and label not in classes:
        raise ConfigError(f"label {label!r} is not one of the model's labels ({', '.join(classes)})")


@dataclass
class Plan:
    """What explaining some texts takes: each text's word spans, how many words the model reads and
    how many are varied, and the variants (one word deleted each) to score after the texts."""

    texts: list[str]
    cuts: list[list[tuple[int, int]]]
    seen: list[int]
    varied: list[int]
    variants: list[str]

    @property
    def rows(self) -> list[str]:
        """Every text to score: the texts, then their variants."""
        return [*self.texts, *self.variants]


def plan(predictor, texts: list[str], max_words: int = MAX_WORDS) -> Plan:
    """The variants explaining `texts` needs (see Plan)."""
    cuts = [spans(text) for text in texts]
    seen = words_read(predictor, texts, cuts)
    varied = [min(n, max_words) for n in seen]
    variants = [without(text, cut, i) for text, cut, n in zip(texts, cuts, varied, strict=True) for i in range(n)]
    return Plan(list(texts), cuts, seen, varied, variants)


def weigh(planned: Plan, rows: np.ndarray | list, classes: list[str], label: str | None = None) -> list[Explanation]:
    """The explanations from the probabilities of `planned.rows` (in that order).

    Raises:
        ConfigError: `label` is not one of `classes`.
    """
    check_label(label, classes)
    rows = np.asarray(rows)
    whole, occluded = rows[: len(planned.texts)], rows[len(planned.texts) :]
    explanations, offset = [], 0
    for text, cut, n_seen, n_varied, row in zip(
        planned.texts, planned.cuts, planned.seen, planned.varied, whole, strict=True
    ):
        k = classes.index(label) if label is not None else int(np.argmax(row))
        drops = row[k] - occluded[offset : offset + n_varied, k]
        offset += n_varied
        words = [
            {
                "word": text[start:end],
                "start": start,
                "end": end,
                "weight": round(float(drops[i]), 6) if i < n_varied else 0.0,
                "read": i < n_seen,
            }
            for i, (start, end) in enumerate(cut)
        ]
        explanations.append(Explanation(classes[k], round(float(row[k]), 6), words))
    return explanations


def explain(predictor, texts: list[str], label: str | None = None, max_words: int = MAX_WORDS) -> list[Explanation]:
    """Each text's words weighted by how much they raise `label`'s probability (default: the label
    the model gives the text, its most probable class even where it abstains), in one call of the
    predictor.

    Raises:
        ConfigError: `label` is not one of the model's classes.
    """
    classes = list(predictor.classes)
    check_label(label, classes)  # before any work
    planned = plan(predictor, texts, max_words)
    return weigh(planned, predictor.predict_proba(planned.rows), classes, label)
