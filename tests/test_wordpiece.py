"""The TensorFlow-free WordPiece tokenizer gives exactly the ids of the KerasHub preprocessor the
model was trained with (traced, as training runs it), on text chosen to break tokenizers."""

import unicodedata

import numpy as np
import pytest

from bertclf.inference.wordpiece import WordPiece

HOSTILE = [
    # accents and combining marks (Mn are stripped, Mc such as Devanagari vowel signs are not)
    "Café naïve résumé Ångström Øresund",
    "Tiếng Việt có dấu",
    "e\u0301 a\u0308 o\u0302\u0323 combining",
    "नमस्ते हिन्दी",
    "مرحبا بالعالم שָׁלוֹם",
    # Chinese, Japanese, Korean, an ideograph outside the BMP
    "中文分词测试",
    "日本語のテキスト、カタカナ。",
    "한국어 텍스트",
    "𠀀𠀁 extension B",
    # emoji: skin tones, ZWJ sequences, variation selectors, flags
    "👍🏽 🎉 👨\u200d👩\u200d👧 ❤\ufe0f 🇩🇪",
    # control, format and zero-width characters
    "a\u200bb x\u00ady",
    "\u2028line\u2029para",
    "tab\tnew\nline\rcr\x0bvt\x0cff",
    "\x00nul\x7fdel\x1besc",
    "text before a NUL\x00 and after it",
    "\ufeffbom \u3164filler \u034fcgj \u2060joiner",
    "\u202eright-to-left override\u202c",
    # URLs, e-mail and code
    "https://example.com/a/b?c=d&e=f#g",
    "def f(x): return x**2  # comment",
    "SELECT * FROM t WHERE a<>b AND c>=1;",
    "C++ std::vector<int> v{1,2,3}; e-mail: me@host.org",
    # whitespace runs, and texts that are empty once cleaned
    "a    b\t\t\tc\n\n\nd",
    "\u00a0nbsp\u00a0 \u3000ideographic\u3000space",
    "",
    "   \t\n ",
    "\u200b\u200d\ufeff",
    # case folding beyond lowercasing, and compatibility forms
    "ΣΊΣΥΦΟΣ Straße ǅemal İstanbul",
    "ﬁnance Ｆｕｌｌｗｉｄｔｈ！ ①② ㈱ ½ ℌ ǈ",
    # longer than max_seq_len, and words over 100 bytes
    "word " * 300,
    "a" * 150 + " " + "é" * 60 + " " + "ab" * 40,
]


def random_texts(n, seed=0):
    """Texts of code points drawn from many blocks, including unassigned ones and surrogate-free planes."""
    rng = np.random.default_rng(seed)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF)]
    blocks += [(0x900, 0x97F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2100, 0x22FF), (0x3000, 0x30FF)]
    blocks += [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFB00, 0xFB4F), (0xFE00, 0xFFEF)]
    blocks += [(0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F)]
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(int(rng.integers(0, 60))):
            lo, hi = blocks[int(rng.integers(len(blocks)))]
            chars.append(chr(int(rng.integers(lo, hi + 1))) if rng.random() < 0.7 else " ")
        texts.append("".join(chars))
    return texts


def vocabulary(texts, seed=0):
    """A vocabulary that spells many of the corpus's words and not others: special tokens, single
    characters as they appear and case-folded, most of them also as continuations, and some words."""
    rng = np.random.default_rng(seed)
    # (Not control characters: they split words, and a NUL would end a C string in the TF trie.)
    chars = sorted(c for c in {c for text in texts for c in text + text.lower()} if unicodedata.category(c) != "Cc")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    tokens += [f"##{c}" for c in chars if rng.random() < 0.85]
    tokens += ["cafe", "café", "straße", "strasse", "##ss", "finance", "https", "example", "##ample", "com", "word"]
    tokens += ["select", "vector", "##tor", "istanbul", "##ing", "te", "##xt", "日本", "ab", "##ab"]
    return list(dict.fromkeys(tokens))


CONFIGS = {
    "uncased, accents kept (KerasHub's BERT uncased presets)": {"lowercase": True, "strip_accents": False},
    "uncased, accents stripped": {"lowercase": True, "strip_accents": True},
    "cased": {"lowercase": False, "strip_accents": False},
}


@pytest.mark.parametrize("settings", CONFIGS.values(), ids=CONFIGS.keys())
def test_ids_equal_the_keras_hub_preprocessor(settings):
    import keras_hub
    import tensorflow as tf

    from bertclf.training.pipeline import traced_preprocessor

    texts = HOSTILE + random_texts(2000, seed=1)
    vocab = vocabulary(texts)
    sequence_length = 64
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, **settings)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    expected = traced_preprocessor(preprocessor)(tf.constant(texts))
    ours = WordPiece(vocab, **settings).encode(texts, sequence_length)
    for key in ("token_ids", "segment_ids", "padding_mask"):
        want = np.asarray(expected[key])
        differ = [i for i in range(len(texts)) if not np.array_equal(want[i], ours[key][i])]
        assert not differ, (
            f"{key} differ for {[texts[i] for i in differ[:5]]}: {want[differ[0]]} vs {ours[key][differ[0]]}"
        )
    unknown = int((ours["token_ids"] == vocab.index("[UNK]")).sum())
    assert 0 < unknown < ours["padding_mask"].sum() / 3, "the corpus tests both spelled and unknown words"


def test_a_trained_model_folder_gives_the_ids_it_was_trained_with(tiny_run):
    from bertclf.inference.predictor import Predictor
    from bertclf.training.pipeline import encode

    _, folder, _ = tiny_run
    predictor = Predictor(folder, engine="tensorflow")  # KerasHub's preprocessor, as training tokenized
    texts = ["Apple, CAT and a drill!", "tiger", "", "zebra " * 50, "中文 émoji 👍"]
    expected = encode(predictor.preprocessor, texts)
    sequence_length = predictor.preprocessor.sequence_length
    ours = WordPiece.from_preset(folder).encode(texts, sequence_length)
    assert np.array_equal(
        ours["token_ids"][:, : expected.features["token_ids"].shape[1]], expected.features["token_ids"]
    )


def test_what_a_tokenizer_remembers_is_bounded_and_changes_no_id(monkeypatch):
    """Characters' kinds and words' ids are cached; a client sending endless new words and
    characters fills the caches to their bound, and the ids stay those of a fresh tokenizer."""
    from bertclf.inference import wordpiece

    texts = random_texts(300, seed=7)
    vocab = vocabulary(texts)
    expected = [WordPiece(vocab).tokenize(t) for t in texts]
    monkeypatch.setattr(wordpiece, "MAX_CACHED", 50)
    small = WordPiece(vocab)
    assert [small.tokenize(t) for t in texts] == expected
    assert [small.tokenize(t) for t in texts] == expected, "the same from the caches"
    assert len(small._spelled) == 50 and len(small._splitter) == 50
