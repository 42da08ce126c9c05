"""Checkpoint folders KerasHub loads directly: Hugging Face format (config.json + model.safetensors
+ tokenizer files) and KerasHub presets. Recognised by their files and checked before loading."""

from pathlib import Path

from bertclf.files import read_json_object
from bertclf.pretrained.checkpoint import Checkpoint, CheckpointError
from bertclf.safety import check_preset_is_data

# Hugging Face `model_type` values KerasHub can convert, mapped to our family name.
HF_FAMILIES = {"bert": "BERT", "albert": "ALBERT", "distilbert": "DistilBERT"}
# The tokenizer file KerasHub's converter reads for each model_type.
HF_VOCAB_FILES = {"bert": "vocab.txt", "albert": "spiece.model", "distilbert": "vocab.txt"}
# The config key holding the depth, and transformers' own default when a config leaves it out.
HF_LAYERS = {"bert": ("num_hidden_layers", 12), "albert": ("num_hidden_layers", 12), "distilbert": ("n_layers", 6)}
# KerasHub backbone class names, mapped to our family name.
KERAS_HUB_FAMILIES = {"BertBackbone": "BERT", "AlbertBackbone": "ALBERT", "DistilBertBackbone": "DistilBERT"}


def _keras_hub_preset(folder: Path, config: dict) -> Checkpoint:
    check_preset_is_data(folder)
    family = KERAS_HUB_FAMILIES.get(config.get("class_name", ""))
    if family is None:
        raise CheckpointError(
            f"{folder}: backbone {config.get('class_name')!r} is not one we fine-tune "
            f"(supported: {', '.join(KERAS_HUB_FAMILIES)})"
        )
    settings = config.get("config")
    if not isinstance(settings, dict):
        raise CheckpointError(f'{folder / "config.json"}: no backbone settings under "config"')
    try:
        return Checkpoint(
            folder.name,
            folder.resolve(),
            family,
            int(settings.get("max_sequence_length", 512)),
            int(settings["num_layers"]),
        )
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{folder / 'config.json'}: num_layers and max_sequence_length must be numbers") from None


def _hugging_face(folder: Path, config: dict) -> Checkpoint:
    config_path = folder / "config.json"
    model_type = config.get("model_type")
    family = HF_FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None or not isinstance(model_type, str):
        raise CheckpointError(
            f"{config_path}: model_type {model_type!r} is not supported (supported: {', '.join(HF_FAMILIES)})"
        )
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        found = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".h5", ".ckpt", ".pt", ".pth")]
        hint = (
            f" It has {', '.join(found)}: pickle-based or code-carrying formats we never load. "
            "Convert it once with transformers: `AutoModel.from_pretrained(folder).save_pretrained("
            "folder, safe_serialization=True)`."
            if found
            else ""
        )
        raise CheckpointError(f"{folder} has no model.safetensors.{hint}")
    vocab = HF_VOCAB_FILES[model_type]
    if not (folder / vocab).is_file():
        raise CheckpointError(f"{folder} has no {vocab}: the {family} tokenizer needs it beside config.json.")
    if not config.get("architectures"):
        raise CheckpointError(
            f'{config_path} has no "architectures" entry; save the model with transformers\' '
            "save_pretrained, which writes it."
        )
    key, default = HF_LAYERS[model_type]
    try:
        return Checkpoint(
            folder.name,
            folder.resolve(),
            family,
            int(config.get("max_position_embeddings", 512)),
            int(config.get(key, default)),
        )
    except (TypeError, ValueError):
        raise CheckpointError(f"{config_path}: {key} and max_position_embeddings must be numbers") from None


def inspect_folder(folder: str | Path) -> Checkpoint:
    """Recognise a Hugging Face or KerasHub checkpoint folder by its files and check it can be
    loaded safely."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json: not a Hugging Face or KerasHub checkpoint folder.")
    config = read_json_object(config_path, CheckpointError)
    if "registered_name" in config:
        return _keras_hub_preset(folder, config)
    return _hugging_face(folder, config)
