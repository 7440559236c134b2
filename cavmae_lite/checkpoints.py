"""Checkpoints: official <-> ours key maps, loading official weights, and safe save / load.

Official checkpoints (spec §9) are plain state dicts saved from ``DataParallel``, so every key starts with
``module.``. Our modules use descriptive names (``encoder.audio_blocks.3.norm1.audio.weight`` for the official
``blocks_a.3.norm1_a.weight``); the table below maps one to the other in both directions.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import CAVMAEConfig
from .tokenizers import resize_audio_pos

# (official prefix, our prefix); a prefix without a trailing dot is a whole key.
_PREFIXES = [
    ("patch_embed_a.", "encoder.audio_embed."),
    ("patch_embed_v.", "encoder.video_embed."),
    ("pos_embed_a", "encoder.audio_pos"),
    ("pos_embed_v", "encoder.video_pos"),
    ("modality_a", "encoder.audio_modality"),
    ("modality_v", "encoder.video_modality"),
    ("blocks_a.", "encoder.audio_blocks."),
    ("blocks_v.", "encoder.video_blocks."),
    ("blocks_u.", "encoder.joint_blocks."),
    ("norm_a.", "encoder.norm_audio."),
    ("norm_v.", "encoder.norm_video."),
    ("norm.", "encoder.norm_joint."),
    ("mask_token", "decoder.mask_token"),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_pos_embed_a", "decoder.audio_pos"),
    ("decoder_pos_embed_v", "decoder.video_pos"),
    ("decoder_modality_a", "decoder.audio_modality"),
    ("decoder_modality_v", "decoder.video_modality"),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred_a.", "decoder.head_audio."),
    ("decoder_pred_v.", "decoder.head_video."),
    ("mlp_head.0.", "head.norm."),
    ("mlp_head.1.", "head.fc."),
]
_NORM_TAG = {"": "joint", "_a": "audio", "_v": "video"}
_TAG_NORM = {v: k for k, v in _NORM_TAG.items()}


class CheckpointError(ValueError):
    """A checkpoint file could not be read, or its weights do not fit the model."""


def _map_prefix(key: str, src: int) -> str:
    for pair in _PREFIXES:
        a, b = pair[src], pair[1 - src]
        if key == a or (a.endswith(".") and key.startswith(a)):
            return b + key[len(a):]
    raise KeyError(key)


def official_to_ours_key(key: str) -> str:
    """``blocks_a.0.norm1_a.weight`` -> ``encoder.audio_blocks.0.norm1.audio.weight``."""
    key = _map_prefix(key, 0)
    return re.sub(r"\.norm([12])(_a|_v)?\.", lambda m: f".norm{m[1]}.{_NORM_TAG[m[2] or '']}.", key)


def ours_to_official_key(key: str) -> str:
    """Inverse of :func:`official_to_ours_key`."""
    key = re.sub(r"\.norm([12])\.(joint|audio|video)\.", lambda m: f".norm{m[1]}{_TAG_NORM[m[2]]}.", key)
    return _map_prefix(key, 1)


def strip_module_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove the leading ``module.`` that ``DataParallel`` / DDP adds to every key."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def convert_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official CAV-MAE / CAV-MAE-FT state dict (with or without ``module.``) -> our names."""
    out, unknown = {}, []
    for k, v in strip_module_prefix(state_dict).items():
        try:
            out[official_to_ours_key(k)] = v
        except KeyError:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f"{len(unknown)} keys are not CAV-MAE weights, e.g. {unknown[:5]}")
    return out


def to_official_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Our CAVMAE / CAVMAEClassifier -> a state dict the official ``CAVMAE`` / ``CAVMAEFT`` loads."""
    return {ours_to_official_key(k): v for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------
# File I/O
# ---------------------------------------------------------------------------------------------------------


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with clear errors for missing, corrupt and pickle-carrying files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects beyond tensors and plain containers, which "
            f"weights_only loading does not execute ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:  # a corrupt file can surface as almost any error (KeyError, IndexError, ...)
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {e}") from e


def _as_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} does not hold a state dict (a mapping from names to tensors)")
    return obj


# ---------------------------------------------------------------------------------------------------------
# Official weights -> our models
# ---------------------------------------------------------------------------------------------------------


def _count_blocks(sd: dict[str, Tensor], prefix: str) -> int:
    return len({k.split(".")[1] for k in sd if k.startswith(prefix)})


def infer_config(official: dict[str, Tensor], **overrides: Any) -> tuple[CAVMAEConfig, int | None]:
    """Sizes an official state dict (no ``module.``) determines, plus ``overrides`` for the rest.

    Returns (config, num_classes or None). ``audio_length`` and ``norm_pix_loss``/``num_heads``/... may be
    overridden; an override that contradicts a shape raises a ``CheckpointError``.
    """
    try:
        w_v = official["patch_embed_v.proj.weight"]  # (D, C, p, p)
        D, C, p = w_v.shape[0], w_v.shape[1], w_v.shape[-1]
        La, Lv = official["pos_embed_a"].shape[1], official["pos_embed_v"].shape[1]
        hidden = official["blocks_a.0.mlp.fc1.weight"].shape[0] if "blocks_a.0.mlp.fc1.weight" in official else \
            official["blocks_u.0.mlp.fc1.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"not a CAV-MAE state dict: missing {e}") from e
    mel = overrides.get("num_mel_bins", 128)
    rows = mel // p
    grid_v = round(Lv**0.5)
    if grid_v * grid_v != Lv or La % rows:
        raise CheckpointError(f"cannot infer grids from {La} audio / {Lv} video tokens with {mel} mel bins")
    inferred: dict[str, Any] = dict(
        embed_dim=D, in_chans=C, patch_size=p, img_size=grid_v * p, audio_length=La // rows * p,
        num_mel_bins=mel, mlp_ratio=hidden / D,
        modality_specific_depth=_count_blocks(official, "blocks_a."),
        joint_depth=_count_blocks(official, "blocks_u."),
    )
    if "decoder_embed.weight" in official:
        inferred["decoder_embed_dim"] = official["decoder_embed.weight"].shape[0]
        inferred["decoder_depth"] = _count_blocks(official, "decoder_blocks.")
    resizable = {"audio_length"}
    for k, v in overrides.items():
        if k in inferred and k not in resizable and inferred[k] != v:
            raise CheckpointError(f"override {k}={v!r} contradicts the checkpoint, whose weights give {k}={inferred[k]!r}")
    num_classes = official["mlp_head.1.weight"].shape[0] if "mlp_head.1.weight" in official else None
    fields = {**inferred, **{k: v for k, v in overrides.items() if k != "num_classes"}}
    return CAVMAEConfig(**fields), num_classes


def _resize_audio_tables(sd: dict[str, Tensor], config: CAVMAEConfig, mode: str) -> dict[str, Tensor]:
    rows, cols = config.audio_grid
    for key in ("encoder.audio_pos", "decoder.audio_pos"):
        if key in sd and sd[key].shape[1] != rows * cols:
            sd[key] = resize_audio_pos(sd[key], rows, cols, mode)
    return sd


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


def nonorm_hint(name: str | Path) -> str | None:
    """A warning when a file name says "nonorm" (the released ``cav-mae-base-nonorm.pth``), else None."""
    if "nonorm" not in Path(name).name.lower().replace("-", "").replace("_", ""):
        return None
    return (f"{Path(name).name}: the name suggests a model pretrained without norm_pix_loss (the released "
            "CAV-MAE-Base-NoNorm, for inpainting), which the weights cannot tell; loading it as a norm_pix_loss "
            "model un-normalises its predictions wrongly. Pass norm_pix_loss=False (reconstruct: "
            "--no-norm-pix-loss), or norm_pix_loss=True to silence this")


def load_official(cls: type, path_or_state_dict: str | Path | dict, pos_resize: str = "trim", **overrides: Any):
    """Build ``cls`` (CAVMAE or CAVMAEClassifier) from official weights; see ``CAVMAE.from_official``.

    ``pos_resize`` ("trim" or "interpolate") adapts the audio positional tables when ``audio_length`` is
    overridden to a clip length other than the checkpoint's (official issues #8 / #27).

    ``norm_pix_loss`` cannot be read from the weights: it defaults to True (every released model but
    ``CAV-MAE-Base-NoNorm``); pass ``norm_pix_loss=False`` for that one, so that the config records it and
    reconstructions are taken as input units. A file whose name says "nonorm" loaded without the argument warns.
    """
    from .model import CAVMAEClassifier

    if isinstance(path_or_state_dict, dict):
        source, raw = "state dict", path_or_state_dict
    else:
        source, raw = str(path_or_state_dict), load_checkpoint(path_or_state_dict)
        hint = nonorm_hint(path_or_state_dict)
        if hint and "norm_pix_loss" not in overrides:
            warnings.warn(hint, stacklevel=3)
    official = strip_module_prefix(_as_state_dict(raw, source))
    is_classifier = issubclass(cls, CAVMAEClassifier)
    # a classifier has no decoder: its sizes must not constrain (or fail) the config
    sized = {k: v for k, v in official.items() if not (is_classifier and k.startswith(("decoder_", "mask_token")))}
    config, num_classes = infer_config(sized, **overrides)
    ours = convert_official_state_dict(official)
    if is_classifier:
        if num_classes is None:  # a pretraining checkpoint: drop the decoder, start a fresh head
            num_classes = overrides.get("num_classes")
            if num_classes is None:
                raise CheckpointError(f"{source} is a pretraining checkpoint with no head: pass num_classes=...")
            dropped = [k for k in ours if k.startswith("decoder.")]
            ours = {k: v for k, v in ours.items() if not k.startswith("decoder.")}
            warnings.warn(
                f"{source}: pretraining checkpoint loaded into CAVMAEClassifier; dropped {len(dropped)} decoder "
                f"tensors and initialised a fresh {num_classes}-class head", stacklevel=3)
            model = cls(config, num_classes=num_classes)
            ours.update({k: v for k, v in model.state_dict().items() if k.startswith("head.")})
        else:
            if overrides.get("num_classes", num_classes) != num_classes:
                raise CheckpointError(f"num_classes={overrides['num_classes']} but the checkpoint's head has {num_classes}")
            model = cls(config, num_classes=num_classes)
    else:
        if num_classes is not None:
            raise CheckpointError(f"{source} is a fine-tuned (classifier) checkpoint; load it with CAVMAEClassifier")
        model = cls(config)
    load_strict(model, _resize_audio_tables(ours, config, pos_resize), source)
    return model
