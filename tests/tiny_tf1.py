"""Tiny checkpoints in Google's exact TF1 format (BERT and ALBERT), written by the tests, and
Google's network written out in numpy from the raw variables, as the reference a conversion must match."""

import io
import json

import numpy as np
import tensorflow as tf

from conftest import VOCAB, make_texts

BERT_CONFIG = dict(
    vocab_size=len(VOCAB),
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=32,
    type_vocab_size=2,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    initializer_range=0.02,
)


def save_tf1_checkpoint(prefix, variables):
    """Write a name-based TF1 checkpoint (what Google's Saver wrote): prefix.index + prefix.data-*."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )


def _layer_variables(rng, g, attention, ln_attention, ffn_in, ffn_out, ln_ffn, hidden, inter):
    def w(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    out = {}
    for k in ("query", "key", "value"):
        out[f"{g}/{attention}/self/{k}/kernel"] = w(hidden, hidden)
        out[f"{g}/{attention}/self/{k}/bias"] = w(hidden)
    out[f"{g}/{attention}/output/dense/kernel"] = w(hidden, hidden)
    out[f"{g}/{attention}/output/dense/bias"] = w(hidden)
    for name, size in ((ln_attention, hidden), (ln_ffn, hidden)):
        out[f"{g}/{name}/gamma"] = 1 + w(size)
        out[f"{g}/{name}/beta"] = w(size)
    out[f"{g}/{ffn_in}/kernel"], out[f"{g}/{ffn_in}/bias"] = w(hidden, inter), w(inter)
    out[f"{g}/{ffn_out}/kernel"], out[f"{g}/{ffn_out}/bias"] = w(inter, hidden), w(hidden)
    return out


def google_variables(family, config, seed=0):
    """Random variables with Google's names and shapes, pre-training heads and step included."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    hidden, inter = config["hidden_size"], config["intermediate_size"]
    emb = config.get("embedding_size", hidden)
    v = {
        "bert/embeddings/word_embeddings": w(config["vocab_size"], emb),
        "bert/embeddings/position_embeddings": w(config["max_position_embeddings"], emb),
        "bert/embeddings/token_type_embeddings": w(config["type_vocab_size"], emb),
        "bert/embeddings/LayerNorm/gamma": 1 + w(emb),
        "bert/embeddings/LayerNorm/beta": w(emb),
        "bert/pooler/dense/kernel": w(hidden, hidden),
        "bert/pooler/dense/bias": w(hidden),
        # Pre-training heads and the step counter: present in Google's files, unused for fine-tuning.
        "cls/predictions/output_bias": w(config["vocab_size"]),
        "cls/predictions/transform/dense/kernel": w(hidden, hidden),
        "cls/seq_relationship/output_weights": w(2, hidden),
        "global_step": np.array(1000, np.int64),
    }
    if family == "BERT":
        for i in range(config["num_hidden_layers"]):
            v.update(
                _layer_variables(
                    rng,
                    f"bert/encoder/layer_{i}",
                    "attention",
                    "attention/output/LayerNorm",
                    "intermediate/dense",
                    "output/dense",
                    "output/LayerNorm",
                    hidden,
                    inter,
                )
            )
    else:
        v["bert/encoder/embedding_hidden_mapping_in/kernel"] = w(emb, hidden)
        v["bert/encoder/embedding_hidden_mapping_in/bias"] = w(hidden)
        v.update(
            _layer_variables(
                rng,
                "bert/encoder/transformer/group_0/inner_group_0",
                "attention_1",
                "LayerNorm",
                "ffn_1/intermediate/dense",
                "ffn_1/intermediate/output/dense",
                "LayerNorm_1",
                hidden,
                inter,
            )
        )
    return v


def write_bert(folder, vocab=VOCAB, variables=None):
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(BERT_CONFIG, vocab_size=len(vocab))
    (folder / "bert_config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    save_tf1_checkpoint(folder / "bert_model.ckpt", variables or google_variables("BERT", config))
    return folder


def sentencepiece_proto(texts, vocab_size, **options) -> bytes:
    """A unigram SentencePiece model with ALBERT's special pieces, trained on `texts`."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        pad_piece="<pad>",
        unk_piece="<unk>",
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        hard_vocab_limit=False,
        **options,
    )
    return model.getvalue()


def train_sentencepiece(path):
    """A tiny SentencePiece model with ALBERT's special pieces, trained on the test sentences."""
    import sentencepiece as spm

    texts, _ = make_texts(20)
    proto = sentencepiece_proto(texts, vocab_size=40)
    path.write_bytes(proto)
    return spm.SentencePieceProcessor(model_proto=proto).get_piece_size()


def write_albert(folder, variables=None):
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = train_sentencepiece(folder / "30k-clean.model")
    config = dict(
        BERT_CONFIG,
        vocab_size=vocab_size,
        embedding_size=4,
        num_hidden_groups=1,
        inner_group_num=1,
        net_structure_type=0,
        gap_size=0,
        num_memory_blocks=0,
        down_scale_factor=1,
    )
    (folder / "albert_config.json").write_text(json.dumps(config))
    save_tf1_checkpoint(folder / "model.ckpt-best", variables or google_variables("ALBERT", config))
    return folder, config


# === The reference: Google's network written out in numpy from the raw variables ===
def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, v, name):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * v[f"{name}/gamma"] + v[f"{name}/beta"]


def reference_forward(family, config, v, ids, segments, mask):
    batch, length = ids.shape
    heads = config["num_attention_heads"]
    x = (
        v["bert/embeddings/word_embeddings"][ids]
        + v["bert/embeddings/position_embeddings"][:length]
        + v["bert/embeddings/token_type_embeddings"][segments]
    )
    x = layer_norm(x, v, "bert/embeddings/LayerNorm")
    if family == "ALBERT":
        x = (
            x @ v["bert/encoder/embedding_hidden_mapping_in/kernel"]
            + v["bert/encoder/embedding_hidden_mapping_in/bias"]
        )
    hidden = x.shape[-1]
    for i in range(config["num_hidden_layers"]):
        if family == "BERT":
            g, att, ln1, f_in, f_out, ln2 = (
                f"bert/encoder/layer_{i}",
                "attention",
                "attention/output/LayerNorm",
                "intermediate/dense",
                "output/dense",
                "output/LayerNorm",
            )
        else:  # every layer is the one shared layer
            g, att, ln1, f_in, f_out, ln2 = (
                "bert/encoder/transformer/group_0/inner_group_0",
                "attention_1",
                "LayerNorm",
                "ffn_1/intermediate/dense",
                "ffn_1/intermediate/output/dense",
                "LayerNorm_1",
            )

        def split(t):
            return t.reshape(batch, length, heads, hidden // heads).transpose(0, 2, 1, 3)

        q, k, val = (
            split(x @ v[f"{g}/{att}/self/{n}/kernel"] + v[f"{g}/{att}/self/{n}/bias"])
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hidden // heads) + (1 - mask[:, None, None, :]) * -1e9
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ val).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        attended = context @ v[f"{g}/{att}/output/dense/kernel"] + v[f"{g}/{att}/output/dense/bias"]
        x = layer_norm(x + attended, v, f"{g}/{ln1}")
        ffn = (
            gelu(x @ v[f"{g}/{f_in}/kernel"] + v[f"{g}/{f_in}/bias"]) @ v[f"{g}/{f_out}/kernel"]
            + v[f"{g}/{f_out}/bias"]
        )
        x = layer_norm(x + ffn, v, f"{g}/{ln2}")
    pooled = np.tanh(x[:, 0] @ v["bert/pooler/dense/kernel"] + v["bert/pooler/dense/bias"])
    return x, pooled
