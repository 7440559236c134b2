"""Loading a trained model: a run directory, one of our checkpoints, or an official CAV-MAE pretraining checkpoint.

    model = load_pretrained("runs/tiny")                  # RUN_DIR/checkpoint.pt, written by cavmae_lite.train
    model = load_pretrained("cav-mae-scale++.pth")        # official weights, sizes read from the tensors
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoints import CheckpointError, load_checkpoint, load_strict, strip_module_prefix
from .config import CAVMAEConfig
from .mae_init import detect_layout
from .model import CAVMAE

CHECKPOINT_NAME = "checkpoint.pt"  # the file a run directory holds (cavmae_lite.train writes it)


def _is_official(sd: dict[str, Any]) -> bool:
    """An official CAV-MAE state dict (``module.`` or not), by the layout test ``pretrain --init`` uses."""
    try:
        return detect_layout(strip_module_prefix(sd)) == "official"
    except CheckpointError:
        return False  # neither layout: load_strict below says which keys are missing


def load_pretrained(path: str | Path, config: CAVMAEConfig | None = None, map_location: str = "cpu") -> CAVMAE:
    """A CAVMAE from a run directory, one of our checkpoints, or an official CAV-MAE pretraining checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CHECKPOINT_NAME} in run directory {path.parent}")
    obj = load_checkpoint(path, map_location=map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dictionary")
    sd = obj.get("model", obj)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'model' is not a state dict")
    if _is_official(sd):
        return CAVMAE.from_official(sd)
    if config is None:
        if "model_config" not in obj:
            raise CheckpointError(f"{path} holds a bare state dict without its config: pass config=CAVMAEConfig...")
        config = CAVMAEConfig.from_dict(obj["model_config"])
    model = CAVMAE(config)
    load_strict(model, strip_module_prefix(sd), str(path))
    return model.eval()


__all__ = ["CHECKPOINT_NAME", "load_pretrained"]
