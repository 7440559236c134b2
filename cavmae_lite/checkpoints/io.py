"""Checkpoint files: atomic save, weights-only load, reading a state dict from any of the forms we meet, and telling
which layout (ours, the official CAV-MAE's, ImageNet MAE's) and which model a state dict is for.

Every reader of weights in the package goes through :func:`read_state_dict` and :func:`detect_layout`.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class CheckpointError(ValueError):
    """A checkpoint file could not be read, or its weights do not fit the model."""


def strip_module_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove the leading ``module.`` that ``DataParallel`` / DDP adds to every key."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


# ---------------------------------------------------------------------------------------------------------
# File I/O
# ---------------------------------------------------------------------------------------------------------


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask); mkstemp's own is 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write) -> Path:
    """``write(file)`` into a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (see :func:`atomic_write`)."""
    return atomic_write(Path(path), lambda f: torch.save(obj, f))


def is_safetensors(path: str | Path) -> bool:
    """True when the file starts like a safetensors file: an 8-byte header length, then a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return struct.unpack("<Q", head[:8])[0] + 8 <= Path(path).stat().st_size


def _not_torch(path: Path, head: bytes) -> CheckpointError:
    if is_safetensors(path):
        why = "it is a safetensors file: read it with read_state_dict or load_safetensors"
    elif head.lstrip()[:1] in (b"{", b"["):
        why = "it is JSON text (a config or a model card?), not weights"
    else:
        why = f"it starts with bytes {head[:8]!r}, neither a zip archive nor a pickle stream (another kind of " \
              "file, or a corrupt one)"
    return CheckpointError(f"{path} is not a torch checkpoint: {why}")


def _check_zip(path: Path) -> bool:
    """False for a zip whose central directory cannot be read (cut short); CheckpointError for a zip that opens
    but holds no ``data.pkl``: another archive (e.g. a NumPy .npz), not a torch file."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise CheckpointError(f"{path} is not a torch checkpoint: a zip archive without data.pkl (holding "
                              f"{names[:3]}; a NumPy .npz or another archive?)")
    return True


def _unpickling_error(path: Path, e: pickle.UnpicklingError) -> CheckpointError:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    glob = next((line for line in lines if "GLOBAL" in line or "Unsupported global" in line), None)
    if glob is not None:
        return CheckpointError(
            f"refusing to load {path}: it holds Python objects beyond tensors and plain containers, which "
            f"weights-only loading does not execute ({glob})")
    why = next((line for line in lines if "Unsupported operand" in line), lines[0] if lines else "")
    return CheckpointError(f"{path} is a pickle that is not a torch checkpoint, or a corrupt or truncated one ({why})")


# A torch checkpoint is a zip archive (torch >= 1.6) or a legacy pickle stream (protocol 2+ starts with 0x80).
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with clear errors for missing, empty, corrupt, foreign and pickle-carrying
    files (all :class:`CheckpointError`, but FileNotFoundError for a missing file)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file: read it with read_state_dict")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head.startswith((_ZIP, _PICKLE)):
        raise _not_torch(path, head)
    whole = _check_zip(path) if head.startswith(_ZIP) else True
    try:
        with warnings.catch_warnings():  # torch's "Detected pickle protocol ..., please file an issue": not for users
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(path, e) from e
    except Exception as e:  # a corrupt file can surface as almost any error (RuntimeError, KeyError, ...)
        why = (str(e).splitlines() or [type(e).__name__])[0] if whole else \
            "the zip archive's directory at its end is missing: was the download or the save cut short?"
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({why})") from e


def save_safetensors(tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Tensors -> a ``.safetensors`` file, written to a temporary file and renamed (never half-written).

    ``metadata``: strings stored in the header (e.g. ``{"model_config": json.dumps(...)}``; read back as ``extra``
    by :func:`read_state_dict`)."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write(Path(path), lambda f: f.write(data))


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """A ``.safetensors`` file -> tensors, with a clear error for a missing, empty or corrupt file."""
    return _open_safetensors(Path(path), map_location)[0]


def _open_safetensors(path: Path, map_location: str | torch.device) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {path} is empty (0 bytes)")
    try:
        with safe_open(path, framework="pt", device=str(map_location)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from e


# ---------------------------------------------------------------------------------------------------------
# Reading a state dict, whatever holds it
# ---------------------------------------------------------------------------------------------------------

CHECKPOINT_NAME = "checkpoint.pt"  # the file a pretraining run directory holds (cavmae_lite.train writes it)
WEIGHTS_NAME = "model.safetensors"  # the weights of a save_pretrained folder (beside config.json)
CONFIG_NAME = "config.json"  # the config of a save_pretrained folder


@dataclass
class StateDict:
    """What :func:`read_state_dict` found: ``tensors`` (names -> tensors, ``module.`` stripped), ``extra`` (the
    checkpoint's other entries, e.g. ``model_config``; a save_pretrained folder's config.json; a safetensors
    file's metadata; empty for a bare state dict) and ``source`` (the file, for messages)."""

    tensors: dict[str, Tensor]
    extra: dict[str, Any]
    source: str


def _unwrap(obj: Any, source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    extra: dict[str, Any] = {}
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            extra = {k: v for k, v in obj.items() if k != key}
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} does not hold a state dict (a mapping from names to tensors)")
    return strip_module_prefix(obj), extra


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file (a save_pretrained config.json), CheckpointError when it is not one."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return obj


def _read_safetensors(path: Path, map_location: str | torch.device) -> StateDict:
    tensors, metadata = _open_safetensors(path, map_location)
    extra: dict[str, Any] = {k: v for k, v in metadata.items() if k != "model_config"}
    if "model_config" in metadata:  # what save_safetensors callers store (the zoo's weights)
        extra["model_config"] = json.loads(metadata["model_config"])
    config = path.parent / CONFIG_NAME
    if path.name == WEIGHTS_NAME and config.is_file():  # a save_pretrained folder
        extra.update(read_json(config))
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors")
    return StateDict(strip_module_prefix(tensors), extra, str(path))


def read_state_dict(source: str | Path | dict | StateDict, map_location: str | torch.device = "cpu") -> StateDict:
    """The one reader of weights: a state dict, a checkpoint file (``.pt`` / ``.pth``, weights-only), a
    ``.safetensors`` file (recognised by its content), a pretraining run directory (its ``checkpoint.pt``) or a
    ``save_pretrained`` folder (its ``model.safetensors`` and ``config.json``). A :class:`StateDict` passes through.

    ``{"model": sd}`` and ``{"state_dict": sd}`` wrappers are opened and DataParallel's ``module.`` is stripped.
    """
    if isinstance(source, StateDict):
        return source
    if isinstance(source, dict):
        tensors, extra = _unwrap(source, "state dict")
        return StateDict(tensors, extra, "state dict")
    path = Path(source)
    if path.is_dir():
        found = [path / n for n in (CHECKPOINT_NAME, WEIGHTS_NAME) if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{path} is a folder without {CHECKPOINT_NAME} (a pretraining run) or "
                                    f"{WEIGHTS_NAME} (a save_pretrained folder)")
        path = found[0]
    if path.is_file() and (path.suffix == ".safetensors" or is_safetensors(path)):
        return _read_safetensors(path, map_location)
    tensors, extra = _unwrap(load_checkpoint(path, map_location=map_location), str(path))
    return StateDict(tensors, extra, str(path))


def detect_layout(sd: dict[str, Tensor]) -> str:
    """'ours', 'official' (CAV-MAE, ``module.`` stripped) or 'mae' (facebookresearch/mae); CheckpointError else."""
    if any(k.startswith(("encoder.audio_", "encoder.video_", "encoder.joint_blocks.")) for k in sd):
        return "ours"
    if any(k.startswith(("blocks_a.", "patch_embed_a.", "blocks_u.")) for k in sd):
        return "official"
    if "patch_embed.proj.weight" in sd and any(k.startswith("blocks.") for k in sd):
        return "mae"
    raise CheckpointError(f"not a CAV-MAE (ours / official) or ImageNet MAE state dict; keys start {sorted(sd)[:6]}")


def detect_model(sd: dict[str, Tensor]) -> str:
    """'CAVMAEClassifier' (a classification head: fine-tuned) or 'CAVMAE' (pretraining), for our and the official
    layout (:func:`detect_layout`)."""
    return "CAVMAEClassifier" if "head.fc.weight" in sd or "mlp_head.1.weight" in sd else "CAVMAE"


def load_strict(model: nn.Module, state_dict: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Load with every key and shape checked; one error lists missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape
    )
    if missing or unexpected or misshaped:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}:\n  missing ({len(missing)}): {missing[:20]}\n"
            f"  unexpected ({len(unexpected)}): {unexpected[:20]}\n  mis-shaped ({len(misshaped)}): {misshaped[:20]}"
        )
    model.load_state_dict(state_dict, strict=True)
