"""Google's TensorFlow 1 checkpoint format (BERT and ALBERT): find the files in a folder, read the
variables, and convert them into a KerasHub preset (BertBackbone / AlbertBackbone + tokenizer).

KerasHub has no importer for these checkpoints, so the weights are mapped here, one by one, from
the variables `tf.train.load_checkpoint` reads (a checkpoint is a table of named arrays: reading
it runs no code). Every backbone weight must come from the checkpoint and every checkpoint
variable must land somewhere, except the pre-training heads (`cls/*`), `global_step` and
optimizer slots: a layer is never silently left random.
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertclf.files import read_json_object, staged_folder
from bertclf.pretrained.checkpoint import CheckpointError

log = logging.getLogger(__name__)


class GoogleCheckpointError(CheckpointError):
    """A Google checkpoint cannot be fetched, read or converted; the message says what to do."""


# === Recognising a checkpoint folder ===
@dataclass(frozen=True)
class GoogleFiles:
    """The files of an unpacked Google checkpoint."""

    family: str
    config: Path
    vocab: Path  # vocab.txt (BERT) or the SentencePiece model (ALBERT)
    checkpoint: str  # the prefix tf.train.load_checkpoint takes (file name without .index)


def find_files(folder) -> GoogleFiles | None:
    """The Google checkpoint in `folder` (or in its one subfolder, as the archives unpack), or None."""
    folder = Path(folder)
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    for where in candidates:
        for family, config_name, vocab_glob, preferred in (
            ("BERT", "bert_config.json", "vocab.txt", "bert_model.ckpt"),
            ("ALBERT", "albert_config.json", "*.model", "model.ckpt-best"),
        ):
            config = where / config_name
            if not config.is_file():
                continue
            vocabs = sorted(where.glob(vocab_glob))
            indexes = sorted(where.glob("*.index"))
            prefixes = [p.with_suffix("") for p in indexes]
            chosen = next((p for p in prefixes if p.name == preferred), prefixes[0] if prefixes else None)
            missing = [
                what for what, ok in ((vocab_glob, vocabs), (f"{preferred}.index and .data-*", chosen)) if not ok
            ]
            if missing:
                raise GoogleCheckpointError(
                    f"{where} has {config_name} but no {' or '.join(missing)}: a Google {family} checkpoint needs "
                    f"{config_name}, {'vocab.txt' if family == 'BERT' else '30k-clean.model'} and "
                    f"{preferred}.index + {preferred}.data-00000-of-00001 together."
                )
            return GoogleFiles(family, config, vocabs[0], str(chosen))
    return None


def read_config(path: Path) -> dict:
    """bert_config.json / albert_config.json, checked for what the conversion needs."""
    config = read_json_object(path, GoogleCheckpointError)
    needed = [
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
    ]
    missing = [key for key in needed if key not in config]
    if missing:
        raise GoogleCheckpointError(f"{path}: missing {', '.join(missing)}")
    if config.get("hidden_act", "gelu") != "gelu":
        raise GoogleCheckpointError(f"{path}: hidden_act {config['hidden_act']!r}; only gelu models convert")
    return config


# === Reading and mapping the variables ===
# Not part of the backbone: the pre-training heads, the step counter, optimizer slots.
IGNORED = re.compile(r"^(cls/|global_step$|bad_steps$|good_steps$|loss_scale$)|/(adam_[mv]|Momentum|Adagrad)$")


def read_variables(prefix: str) -> dict:
    """Every variable of a TF1 checkpoint except the IGNORED ones, as numpy arrays."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise GoogleCheckpointError(
            f"{prefix}: cannot read the checkpoint ({err.__class__.__name__}: "
            f"{str(err).splitlines()[0]}); is the .data file complete?"
        ) from None
    variables = {}
    for name in reader.get_variable_to_shape_map():
        clean = name[len("module/") :] if name.startswith("module/") else name  # TF-Hub exports add it
        if not IGNORED.search(clean):
            variables[clean] = reader.get_tensor(name)
    return variables


def _encoder_layer(prefix, attention, after_attention, ffn_in, ffn_out, after_ffn):
    """Keras paths of one TransformerEncoder -> (Google variable, how to reshape it)."""
    return {
        **{
            f"{prefix}/self_attention_layer/{k}/kernel": (f"{attention}/self/{k}/kernel", "qkv_kernel")
            for k in ("query", "key", "value")
        },
        **{
            f"{prefix}/self_attention_layer/{k}/bias": (f"{attention}/self/{k}/bias", "qkv_bias")
            for k in ("query", "key", "value")
        },
        f"{prefix}/self_attention_layer/attention_output/kernel": (f"{attention}/output/dense/kernel", "out_kernel"),
        f"{prefix}/self_attention_layer/attention_output/bias": (f"{attention}/output/dense/bias", None),
        f"{prefix}/self_attention_layer_norm/gamma": (f"{after_attention}/gamma", None),
        f"{prefix}/self_attention_layer_norm/beta": (f"{after_attention}/beta", None),
        f"{prefix}/feedforward_intermediate_dense/kernel": (f"{ffn_in}/kernel", None),
        f"{prefix}/feedforward_intermediate_dense/bias": (f"{ffn_in}/bias", None),
        f"{prefix}/feedforward_output_dense/kernel": (f"{ffn_out}/kernel", None),
        f"{prefix}/feedforward_output_dense/bias": (f"{ffn_out}/bias", None),
        f"{prefix}/feedforward_layer_norm/gamma": (f"{after_ffn}/gamma", None),
        f"{prefix}/feedforward_layer_norm/beta": (f"{after_ffn}/beta", None),
    }


def weight_map(family: str, config: dict) -> dict:
    """Keras weight path -> (Google variable name, how to reshape) for the whole backbone."""
    mapping = {
        "token_embedding/embeddings": ("bert/embeddings/word_embeddings", None),
        "position_embedding/embeddings": ("bert/embeddings/position_embeddings", None),
        "segment_embedding/embeddings": ("bert/embeddings/token_type_embeddings", None),
        "embeddings_layer_norm/gamma": ("bert/embeddings/LayerNorm/gamma", None),
        "embeddings_layer_norm/beta": ("bert/embeddings/LayerNorm/beta", None),
        "pooled_dense/kernel": ("bert/pooler/dense/kernel", None),
        "pooled_dense/bias": ("bert/pooler/dense/bias", None),
    }
    if family == "BERT":
        for i in range(config["num_hidden_layers"]):
            g = f"bert/encoder/layer_{i}"
            mapping.update(
                _encoder_layer(
                    f"transformer_layer_{i}",
                    f"{g}/attention",
                    f"{g}/attention/output/LayerNorm",
                    f"{g}/intermediate/dense",
                    f"{g}/output/dense",
                    f"{g}/output/LayerNorm",
                )
            )
    else:
        mapping["embedding_projection/kernel"] = ("bert/encoder/embedding_hidden_mapping_in/kernel", None)
        mapping["embedding_projection/bias"] = ("bert/encoder/embedding_hidden_mapping_in/bias", None)
        for group in range(config.get("num_hidden_groups", 1)):
            for inner in range(config.get("inner_group_num", 1)):
                g = f"bert/encoder/transformer/group_{group}/inner_group_{inner}"
                mapping.update(
                    _encoder_layer(
                        f"group_{group}_inner_layer_{inner}",
                        f"{g}/attention_1",
                        f"{g}/LayerNorm",
                        f"{g}/ffn_1/intermediate/dense",
                        f"{g}/ffn_1/intermediate/output/dense",
                        f"{g}/LayerNorm_1",
                    )
                )
    return mapping


def _reshape(value, how, heads, hidden):
    head_dim = hidden // heads
    if how == "qkv_kernel":  # [hidden, hidden] -> [hidden, heads, head_dim]
        return value.reshape(hidden, heads, head_dim)
    if how == "qkv_bias":  # [hidden] -> [heads, head_dim]
        return value.reshape(heads, head_dim)
    if how == "out_kernel":  # [hidden, hidden] -> [heads, head_dim, hidden]
        return value.reshape(heads, head_dim, hidden)
    return value


def build_backbone(family: str, config: dict, variables: dict):
    """A KerasHub backbone with every weight taken from `variables` (checked both ways)."""
    import keras_hub

    common = dict(
        vocabulary_size=config["vocab_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        hidden_dim=config["hidden_size"],
        intermediate_dim=config["intermediate_size"],
        dropout=config.get("hidden_dropout_prob", 0.1),
        max_sequence_length=config["max_position_embeddings"],
        num_segments=config.get("type_vocab_size", 2),
    )
    if family == "BERT":
        backbone = keras_hub.models.BertBackbone(**common)
    else:
        for key, supported in (
            ("net_structure_type", 0),
            ("gap_size", 0),
            ("num_memory_blocks", 0),
            ("down_scale_factor", 1),
        ):
            if config.get(key, supported) != supported:
                raise GoogleCheckpointError(f"ALBERT {key}={config[key]} is not supported (only {supported})")
        backbone = keras_hub.models.AlbertBackbone(
            **common,
            embedding_dim=config["embedding_size"],
            num_groups=config.get("num_hidden_groups", 1),
            num_inner_repetitions=config.get("inner_group_num", 1),
        )
    mapping = weight_map(family, config)
    weights = {w.path: w for w in backbone.weights}
    unmapped = sorted(set(weights) - set(mapping))
    if unmapped:  # a KerasHub change we do not know about: never leave those weights random
        raise GoogleCheckpointError(f"no checkpoint variable for backbone weights {', '.join(unmapped[:5])}")
    sources = {source for source, _ in mapping.values()}
    missing = sorted(sources - set(variables))
    if missing:
        raise GoogleCheckpointError(
            f"the checkpoint lacks {len(missing)} backbone variable(s), e.g. {', '.join(missing[:3])}: "
            f"it is incomplete or not a Google {family} checkpoint of this configuration"
        )
    unexpected = sorted(set(variables) - sources)
    if unexpected:
        raise GoogleCheckpointError(
            f"the checkpoint has variable(s) that map to no {family} backbone weight, e.g. "
            f"{', '.join(unexpected[:3])}: a different architecture, or a config that does not match it"
        )
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    for path, (source, how) in mapping.items():
        value = _reshape(np.asarray(variables[source]), how, heads, hidden)
        if tuple(value.shape) != tuple(weights[path].shape):
            raise GoogleCheckpointError(
                f"{source} has shape {tuple(variables[source].shape)}, the backbone expects "
                f"{tuple(weights[path].shape)} for {path}: the config does not match the checkpoint"
            )
        weights[path].assign(value)
    return backbone


# === Tokenizers ===
def vocabulary_is_lowercase(vocab: Path) -> bool:
    """True when no ordinary token in vocab.txt has an upper-case letter (an uncased model)."""
    for line in Path(vocab).read_text(encoding="utf-8").splitlines():
        token = line.strip()
        if token and not (token.startswith("[") and token.endswith("]")) and token != token.lower():
            return False
    return True


def lowercasing_sentencepiece(proto: bytes) -> bytes:
    """The SentencePiece model with case folding added to its own normalizer (NFKC -> NFKC + case
    folding), so every tokenization of it lowercases, in training and in serving alike.

    Google's ALBERT lower-cases text before SentencePiece (its vocabulary is lower-case), but
    KerasHub's AlbertTokenizer does not; without this, "Hello" falls apart into unknown pieces.
    SentencePiece ships the folding rule only compiled into its trainer, so we take the compiled
    table from a throwaway model trained with that rule on three words.
    """
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf class
    model.ParseFromString(proto)
    if model.normalizer_spec.name.endswith("_cf"):
        return proto
    folding = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c"] * 3),
        model_writer=folding,
        vocab_size=8,
        normalization_rule_name="nmt_nfkc_cf",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    donor = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf class
    donor.ParseFromString(folding.getvalue())
    model.normalizer_spec.name = donor.normalizer_spec.name
    model.normalizer_spec.precompiled_charsmap = donor.normalizer_spec.precompiled_charsmap
    return model.SerializeToString()


def build_tokenizer(files: GoogleFiles, lowercase: bool | None):
    """The KerasHub tokenizer for the checkpoint, and whether it lower-cases.

    BERT: WordPiece over vocab.txt, lower-casing as the name says, else as the vocabulary shows.
    ALBERT: the SentencePiece model, lower-casing unless told otherwise (Google's are uncased).
    """
    import keras_hub

    if files.family == "BERT":
        if lowercase is None:
            lowercase = vocabulary_is_lowercase(files.vocab)
        return keras_hub.models.BertTokenizer(vocabulary=str(files.vocab), lowercase=lowercase), lowercase
    proto = files.vocab.read_bytes()
    lowercase = lowercase is not False
    if lowercase:
        proto = lowercasing_sentencepiece(proto)
    return keras_hub.models.AlbertTokenizer(proto=proto), lowercase


def casing_from_name(name: str) -> bool | None:
    """lowercase=True for '...uncased...', False for '...cased...', None when the name says nothing."""
    name = name.lower()
    if "uncased" in name:
        return True
    if "cased" in name:
        return False
    return None


def convert(files: GoogleFiles, dest: Path, lowercase: bool | None = None) -> Path:
    """Write the checkpoint as a KerasHub preset folder `dest` (appears whole or not at all)."""
    config = read_config(files.config)
    log.info(
        "converting the %s checkpoint %s (%d layers, hidden %d) to a KerasHub preset",
        files.family,
        files.checkpoint,
        config["num_hidden_layers"],
        config["hidden_size"],
    )
    backbone = build_backbone(files.family, config, read_variables(files.checkpoint))
    tokenizer, lowercase = build_tokenizer(files, lowercase)
    with staged_folder(dest) as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
        (staging / "source.json").write_text(
            json.dumps(
                {
                    "format": "google-tf1",
                    "family": files.family,
                    "checkpoint": str(files.checkpoint),
                    "lowercase": lowercase,
                    "max_position_embeddings": config["max_position_embeddings"],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return dest
