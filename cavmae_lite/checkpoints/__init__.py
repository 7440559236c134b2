"""Weights in and out: files (io), the official CAV-MAE layout (official), ImageNet MAE (mae) and loading trained
models (pretrained). Everything that reads weights goes through ``read_state_dict`` and ``detect_layout``."""

from .io import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    StateDict,
    atomic_write,
    detect_layout,
    detect_model,
    is_safetensors,
    load_checkpoint,
    load_safetensors,
    load_strict,
    read_state_dict,
    save_checkpoint,
    save_safetensors,
    strip_module_prefix,
)
from .mae import MAE_DROPPED, adapt_mae_state_dict
from .official import (
    convert_official_state_dict,
    infer_config,
    load_official,
    nonorm_hint,
    official_to_ours_key,
    ours_to_official_key,
    to_official_state_dict,
)
from .pretrained import (
    MODEL_TYPES,
    config_from_extra,
    from_pretrained,
    init_from,
    load_pretrained,
    save_pretrained,
)

__all__ = [
    "CHECKPOINT_NAME", "CONFIG_NAME", "MAE_DROPPED", "MODEL_TYPES", "WEIGHTS_NAME", "CheckpointError", "StateDict",
    "adapt_mae_state_dict", "atomic_write", "config_from_extra", "convert_official_state_dict", "detect_layout",
    "detect_model", "from_pretrained", "infer_config", "init_from", "is_safetensors", "load_checkpoint",
    "load_official", "load_pretrained", "load_safetensors", "load_strict", "nonorm_hint", "official_to_ours_key",
    "ours_to_official_key", "read_state_dict", "save_checkpoint", "save_pretrained", "save_safetensors",
    "strip_module_prefix", "to_official_state_dict",
]
