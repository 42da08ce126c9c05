"""Google's original TensorFlow 1 BERT and ALBERT checkpoints: the published names, their
archives, and the conversion into KerasHub presets (BertBackbone / AlbertBackbone + tokenizer).

KerasHub has no importer for these checkpoints, so the weights are mapped here, one by one, from
the variables `tf.train.load_checkpoint` reads (a checkpoint is a table of named arrays: reading
it runs no code). Every backbone weight must come from the checkpoint and every checkpoint
variable must land somewhere, except the pre-training heads (`cls/*`), `global_step` and
optimizer slots: a layer is never silently left random.
"""

import json
import logging
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertclf.checkpoints import CheckpointError, staged_folder

log = logging.getLogger(__name__)

CONVERTED = "keras"  # the converted preset, inside the checkpoint's cache folder


class GoogleCheckpointError(CheckpointError):
    """A Google checkpoint cannot be fetched, read or converted; the message says what to do."""


@dataclass(frozen=True)
class GoogleCheckpoint:
    """One of the checkpoints Google published, by the name the seed README uses."""

    name: str
    url: str
    family: str  # BERT or ALBERT
    cased: bool
    size: str  # download size, for `bertclf models`
    description: str

    @property
    def archive_name(self):
        return self.url.rsplit("/", 1)[-1]

    @property
    def learn_rate(self):
        """Recommended max_learn_rate: ALBERT's shared layers want a lower rate (its paper
        fine-tunes at 1e-5 .. 3e-5), and so do the 24-layer BERTs (BERT paper: 2e-5 .. 5e-5)."""
        if self.family == "ALBERT":
            return 2e-5
        return 3e-5 if "L-24" in self.name else 5e-5


_BERT = "https://storage.googleapis.com/bert_models/"
_ALBERT = "https://storage.googleapis.com/albert_models/"
GOOGLE_CHECKPOINTS = {
    c.name.lower(): c
    for c in [
        GoogleCheckpoint("uncased_L-12_H-768_A-12", _BERT + "2018_10_18/uncased_L-12_H-768_A-12.zip", "BERT", False,
                         "408 MB", "BERT-Base, uncased: 12 layers, hidden 768, 110M parameters"),
        GoogleCheckpoint("uncased_L-24_H-1024_A-16", _BERT + "2018_10_18/uncased_L-24_H-1024_A-16.zip", "BERT", False,
                         "1.2 GB", "BERT-Large, uncased: 24 layers, hidden 1024, 340M parameters"),
        GoogleCheckpoint("cased_L-12_H-768_A-12", _BERT + "2018_10_18/cased_L-12_H-768_A-12.zip", "BERT", True,
                         "404 MB", "BERT-Base, cased: 12 layers, hidden 768, 110M parameters"),
        GoogleCheckpoint("cased_L-24_H-1024_A-16", _BERT + "2018_10_18/cased_L-24_H-1024_A-16.zip", "BERT", True,
                         "1.2 GB", "BERT-Large, cased: 24 layers, hidden 1024, 340M parameters"),
        GoogleCheckpoint("multi_cased_L-12_H-768_A-12", _BERT + "2018_11_23/multi_cased_L-12_H-768_A-12.zip",
                         "BERT", True, "662 MB", "BERT-Base, multilingual cased: 104 languages, 110M parameters"),
        GoogleCheckpoint("wwm_uncased_L-24_H-1024_A-16", _BERT + "2019_05_30/wwm_uncased_L-24_H-1024_A-16.zip",
                         "BERT", False, "1.2 GB", "BERT-Large, uncased, whole-word masking: 340M parameters"),
        GoogleCheckpoint("wwm_cased_L-24_H-1024_A-16", _BERT + "2019_05_30/wwm_cased_L-24_H-1024_A-16.zip",
                         "BERT", True, "1.2 GB", "BERT-Large, cased, whole-word masking: 340M parameters"),
        GoogleCheckpoint("albert_base_v2", _ALBERT + "albert_base_v2.tar.gz", "ALBERT", False,
                         "43 MB", "ALBERT-Base v2: 12 shared layers, hidden 768, 12M parameters"),
        GoogleCheckpoint("albert_large_v2", _ALBERT + "albert_large_v2.tar.gz", "ALBERT", False,
                         "63 MB", "ALBERT-Large v2: 24 shared layers, hidden 1024, 18M parameters"),
        GoogleCheckpoint("albert_xlarge_v2", _ALBERT + "albert_xlarge_v2.tar.gz", "ALBERT", False,
                         "208 MB", "ALBERT-xLarge v2: 24 shared layers, hidden 2048, 60M parameters"),
        GoogleCheckpoint("albert_xxlarge_v2", _ALBERT + "albert_xxlarge_v2.tar.gz", "ALBERT", False,
                         "800 MB", "ALBERT-xxLarge v2: 12 shared layers, hidden 4096, 235M parameters"),
    ]
}


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
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
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
            missing = [what for what, ok in ((vocab_glob, vocabs), (f"{preferred}.index and .data-*", chosen)) if not ok]
            if missing:
                raise GoogleCheckpointError(
                    f"{where} has {config_name} but no {' or '.join(missing)}: a Google {family} checkpoint needs "
                    f"{config_name}, {'vocab.txt' if family == 'BERT' else '30k-clean.model'} and "
                    f"{preferred}.index + {preferred}.data-00000-of-00001 together."
                )
            return GoogleFiles(family, config, vocabs[0], str(chosen))
    return None


def read_config(path: Path) -> dict:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GoogleCheckpointError(f"{path}: not a readable JSON file ({err})") from None
    needed = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings"]
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
        raise GoogleCheckpointError(f"{prefix}: cannot read the checkpoint ({err.__class__.__name__}: "
                                    f"{str(err).splitlines()[0]}); is the .data file complete?") from None
    variables = {}
    for name in reader.get_variable_to_shape_map():
        clean = name[len("module/"):] if name.startswith("module/") else name  # TF-Hub exports add it
        if not IGNORED.search(clean):
            variables[clean] = reader.get_tensor(name)
    return variables


def _encoder_layer(prefix, attention, after_attention, ffn_in, ffn_out, after_ffn):
    """Keras paths of one TransformerEncoder -> (Google variable, how to reshape it)."""
    return {
        **{f"{prefix}/self_attention_layer/{k}/kernel": (f"{attention}/self/{k}/kernel", "qkv_kernel")
           for k in ("query", "key", "value")},
        **{f"{prefix}/self_attention_layer/{k}/bias": (f"{attention}/self/{k}/bias", "qkv_bias")
           for k in ("query", "key", "value")},
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
            mapping.update(_encoder_layer(f"transformer_layer_{i}", f"{g}/attention", f"{g}/attention/output/LayerNorm",
                                          f"{g}/intermediate/dense", f"{g}/output/dense", f"{g}/output/LayerNorm"))
    else:
        mapping["embedding_projection/kernel"] = ("bert/encoder/embedding_hidden_mapping_in/kernel", None)
        mapping["embedding_projection/bias"] = ("bert/encoder/embedding_hidden_mapping_in/bias", None)
        for group in range(config.get("num_hidden_groups", 1)):
            for inner in range(config.get("inner_group_num", 1)):
                g = f"bert/encoder/transformer/group_{group}/inner_group_{inner}"
                mapping.update(_encoder_layer(
                    f"group_{group}_inner_layer_{inner}", f"{g}/attention_1", f"{g}/LayerNorm",
                    f"{g}/ffn_1/intermediate/dense", f"{g}/ffn_1/intermediate/output/dense", f"{g}/LayerNorm_1"))
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
        vocabulary_size=config["vocab_size"], num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"], hidden_dim=config["hidden_size"],
        intermediate_dim=config["intermediate_size"], dropout=config.get("hidden_dropout_prob", 0.1),
        max_sequence_length=config["max_position_embeddings"], num_segments=config.get("type_vocab_size", 2),
    )
    if family == "BERT":
        backbone = keras_hub.models.BertBackbone(**common)
    else:
        for key, supported in (("net_structure_type", 0), ("gap_size", 0), ("num_memory_blocks", 0),
                               ("down_scale_factor", 1)):
            if config.get(key, supported) != supported:
                raise GoogleCheckpointError(f"ALBERT {key}={config[key]} is not supported (only {supported})")
        backbone = keras_hub.models.AlbertBackbone(
            **common, embedding_dim=config["embedding_size"], num_groups=config.get("num_hidden_groups", 1),
            num_inner_repetitions=config.get("inner_group_num", 1))
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
            f"it is incomplete or not a Google {family} checkpoint of this configuration")
    unexpected = sorted(set(variables) - sources)
    if unexpected:
        raise GoogleCheckpointError(
            f"the checkpoint has variable(s) that map to no {family} backbone weight, e.g. "
            f"{', '.join(unexpected[:3])}: a different architecture, or a config that does not match it")
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    for path, (source, how) in mapping.items():
        value = _reshape(np.asarray(variables[source]), how, heads, hidden)
        if tuple(value.shape) != tuple(weights[path].shape):
            raise GoogleCheckpointError(
                f"{source} has shape {tuple(variables[source].shape)}, the backbone expects "
                f"{tuple(weights[path].shape)} for {path}: the config does not match the checkpoint")
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

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(proto)
    if model.normalizer_spec.name.endswith("_cf"):
        return proto
    folding = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c"] * 3), model_writer=folding, vocab_size=8,
                                   normalization_rule_name="nmt_nfkc_cf", hard_vocab_limit=False, minloglevel=2)
    donor = sentencepiece_model_pb2.ModelProto()
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
    log.info("converting the %s checkpoint %s (%d layers, hidden %d) to a KerasHub preset", files.family,
             files.checkpoint, config["num_hidden_layers"], config["hidden_size"])
    backbone = build_backbone(files.family, config, read_variables(files.checkpoint))
    tokenizer, lowercase = build_tokenizer(files, lowercase)
    with staged_folder(dest) as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
        (staging / "source.json").write_text(json.dumps({
            "format": "google-tf1", "family": files.family, "checkpoint": str(files.checkpoint),
            "lowercase": lowercase, "max_position_embeddings": config["max_position_embeddings"],
        }, indent=2) + "\n", encoding="utf-8")
    return dest


# === Archives ===
WANTED = re.compile(r"(bert_config\.json|albert_config\.json|vocab\.txt|[\w.-]*\.model|"
                    r"[\w.-]*ckpt[\w.-]*\.(index|data-\d{5}-of-\d{5}))$")


def _archive_files(path: Path):
    """(base name, open file) for every regular file of a .zip or .tar.gz, read in archive order.
    Reading a member to its end checks its CRC (zip) or the stream's (gzip)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as f:
                        yield info.filename.rsplit("/", 1)[-1], f
    else:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile():  # links, devices and folders are never read
                    with archive.extractfile(member) as f:
                        yield member.name.rsplit("/", 1)[-1], f


def check_archive(path: Path):
    """Read every member of a zip or tar.gz through its checksum; raise on a truncated or corrupt file."""
    try:
        for _, f in _archive_files(path):
            while f.read(1 << 20):
                pass
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise GoogleCheckpointError(f"{path.name} is truncated or corrupt ({err})") from None


def extract(path: Path, dest: Path) -> Path:
    """Unpack only the checkpoint files (config, vocabulary, weights) into `dest`, flat.

    Member paths from the archive never choose where a file goes: each wanted file is written
    under its base name, and links or odd names are skipped.
    """
    with staged_folder(dest) as staging:
        for base, src in _archive_files(path):
            if WANTED.fullmatch(base):
                with open(staging / base, "wb") as out:
                    shutil.copyfileobj(src, out)
    return dest


def manual_instructions(spec: GoogleCheckpoint, pretrained: Path) -> str:
    files = ("bert_config.json, vocab.txt, bert_model.ckpt.index and bert_model.ckpt.data-00000-of-00001"
             if spec.family == "BERT" else
             "albert_config.json, 30k-clean.model, model.ckpt-best.index and model.ckpt-best.data-00000-of-00001")
    return (f"To use it without a download, save {spec.url} as {pretrained / spec.archive_name}, "
            f"or unpack it so that {pretrained / spec.name / 'tf1'}/ holds {files}.")


def fetch(spec: GoogleCheckpoint, models_dir="models") -> Path:
    """Download (once), verify, unpack and convert a named checkpoint; returns the preset folder.

    Cache: models/pretrained/<archive> (the download), models/pretrained/<name>/tf1/ (its files),
    models/pretrained/<name>/keras/ (the converted preset, reused by every later run).
    """
    from bertclf.download import DownloadError, download

    pretrained = Path(models_dir) / "pretrained"
    home = pretrained / spec.name
    preset = home / CONVERTED
    if (preset / "source.json").is_file():
        return preset
    home.mkdir(parents=True, exist_ok=True)
    tf1 = home / "tf1"
    files = find_files(tf1) if tf1.is_dir() else None
    if files is None:
        archive = pretrained / spec.archive_name
        if not archive.is_file():
            log.info("downloading %s (%s) from %s", spec.name, spec.size, spec.url)
            try:
                download(spec.url, archive, manual=manual_instructions(spec, pretrained))
            except DownloadError as err:
                raise GoogleCheckpointError(str(err)) from None
        try:
            check_archive(archive)
        except GoogleCheckpointError as err:
            archive.unlink()
            raise GoogleCheckpointError(f"{err}; deleted it, run again to download it afresh. "
                                        f"{manual_instructions(spec, pretrained)}") from None
        files = find_files(extract(archive, tf1))
        if files is None:
            raise GoogleCheckpointError(f"{archive.name} holds no {spec.family} checkpoint files. "
                                        f"{manual_instructions(spec, pretrained)}")
        archive.unlink()  # unpacked and verified: the archive is only a second copy
    return convert(files, preset, lowercase=not spec.cased)


def convert_folder(folder: Path, files: GoogleFiles, models_dir="models") -> Path:
    """Convert a user's unpacked Google checkpoint once; later runs reuse the cached preset."""
    import hashlib

    digest = hashlib.sha256()
    for path in (files.config, files.vocab, Path(files.checkpoint + ".index")):
        digest.update(path.read_bytes())
    preset = Path(models_dir) / "pretrained" / "converted" / f"{Path(folder).resolve().name}-{digest.hexdigest()[:12]}"
    if (preset / "source.json").is_file():
        return preset
    return convert(files, preset, lowercase=casing_from_name(Path(folder).resolve().name))
